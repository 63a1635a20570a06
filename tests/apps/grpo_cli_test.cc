// `grpo train` rejects bad configurations before any training, with one line naming file, line, key.
#include <gtest/gtest.h>

#include <filesystem>

#include "run_grpo.h"

namespace grpo {
namespace {
using testing::run_grpo;

std::string write_config(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

void expect_rejected(const std::vector<std::string>& args, const std::string& expected) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string log = ::testing::TempDir() + "/grpo_cli_" + info->name() + ".log";
  auto r = run_grpo(args, log);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(r.output, "error: " + expected + "\n");
  EXPECT_EQ(count_lines(r.output), 1);
}

TEST(GrpoCliTest, MisspeltKeyFailsWithFileLineAndKey) {
  std::string cfg = write_config("misspelt.toml", "[run]\ndir = \"/tmp/x\"\n[generator]\nreplicaz = 2\n");
  expect_rejected({"train", "--config", cfg},
                  cfg + ":4: unknown key 'generator.replicaz' (did you mean 'generator.replicas'?)");
}

TEST(GrpoCliTest, NegativeReplicaCountFails) {
  std::string cfg = write_config("negative.toml", "[generator]\nreplicas = -1\n");
  expect_rejected({"train", "--config", cfg}, cfg + ":2: generator.replicas: must be >= 1, got -1");
  expect_rejected({"train", "--config", cfg, "generator.replicas=-3"},
                  cfg + ":2: generator.replicas: must be >= 1, got -1");
  std::string ok = write_config("ok.toml", "");
  expect_rejected({"train", "--config", ok, "verifier.replicas=-3"},
                  "command line: verifier.replicas: must be >= 1, got -3");
}

TEST(GrpoCliTest, MissingDatasetFileFails) {
  std::string cfg = write_config("missing.toml", "[task]\n\ntrain_file = \"/nonexistent/train.jsonl\"\n");
  expect_rejected({"train", "--config", cfg},
                  cfg + ":3: task.train_file: file '/nonexistent/train.jsonl' does not exist");
}

TEST(GrpoCliTest, MissingConfigFileFails) {
  expect_rejected({"train", "--config", "/nonexistent/c.toml"}, "/nonexistent/c.toml: cannot open config file");
}

TEST(GrpoCliTest, ShippedConfigIsValid) {
  std::string log = ::testing::TempDir() + "/grpo_cli_keys.log";
  auto r = run_grpo({"config-keys"}, log);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("generator.replicas"), std::string::npos);
  // Every key the schema knows appears in configs/local.toml, and the file parses: a run with
  // an impossible override fails on that override, not on the file.
  std::string src = std::getenv("GRPO_SOURCE_DIR") ? std::getenv("GRPO_SOURCE_DIR") : ".";
  expect_rejected({"train", "--config", src + "/configs/local.toml", "grpo.steps=-1"},
                  "command line: grpo.steps: must be >= 0, got -1");
}

}  // namespace
}  // namespace grpo
