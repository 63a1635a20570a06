#include "base/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace grpo {
namespace {

ConfigSchema test_schema() {
  ConfigSchema s;
  s.add({"generator.replicas", ConfigType::kInt, "1", 0, 64, "generators"});
  s.add({"grpo.lr", ConfigType::kDouble, "1e-5", 0, 1, "learning rate"});
  s.add({"run.deterministic", ConfigType::kBool, "false", 0, 0, "determinism"});
  s.add({"run.log_level", ConfigType::kString, "\"info\"", 0, 0, "level", {"debug", "info"}});
  s.add({"task.eval_file", ConfigType::kPath, "\"\"", 0, 0, "held-out prompts"});
  return s;
}

TEST(ConfigTest, DefaultsApplyWhenKeysAreAbsent) {
  auto cfg = Config::parse(test_schema(), "", "t.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->get_int("generator.replicas"), 1);
  EXPECT_DOUBLE_EQ(cfg->get_double("grpo.lr"), 1e-5);
  EXPECT_FALSE(cfg->get_bool("run.deterministic"));
  EXPECT_EQ(cfg->get_string("run.log_level"), "info");
  EXPECT_EQ(cfg->origin("grpo.lr"), "default");
}

TEST(ConfigTest, ReadsValuesAndRecordsTheirLine) {
  auto cfg = Config::parse(test_schema(), "[generator]\n\nreplicas = 4\n[grpo]\nlr = 0.5\n", "t.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->get_int("generator.replicas"), 4);
  EXPECT_DOUBLE_EQ(cfg->get_double("grpo.lr"), 0.5);
  EXPECT_EQ(cfg->origin("generator.replicas"), "t.toml:3");
}

TEST(ConfigTest, MisspeltKeyNamesFileLineAndSuggestion) {
  auto cfg = Config::parse(test_schema(), "[generator]\nreplicaz = 4\n", "conf.toml");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().message(),
            "conf.toml:2: unknown key 'generator.replicaz' (did you mean 'generator.replicas'?)");
}

TEST(ConfigTest, UnknownSectionFails) {
  auto cfg = Config::parse(test_schema(), "[generatr]\nreplicas = 4\n", "conf.toml");
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.status().message().find("conf.toml:1: unknown section 'generatr'"),
            std::string::npos)
      << cfg.status();
}

TEST(ConfigTest, NegativeReplicaCountIsOutOfRange) {
  auto cfg = Config::parse(test_schema(), "[generator]\nreplicas = -2\n", "conf.toml");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().message(), "conf.toml:2: generator.replicas: must be >= 0, got -2");
}

TEST(ConfigTest, WrongTypeFails) {
  auto cfg = Config::parse(test_schema(), "[generator]\nreplicas = \"two\"\n", "conf.toml");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().message(), "conf.toml:2: generator.replicas: expected an integer");
  auto cfg2 = Config::parse(test_schema(), "[grpo]\nlr = 1.5\n", "conf.toml");
  ASSERT_FALSE(cfg2.ok());
  EXPECT_EQ(cfg2.status().message(), "conf.toml:2: grpo.lr: must be <= 1, got 1.5");
}

TEST(ConfigTest, IntegerIsAcceptedForANumberButNotTheReverse) {
  auto cfg = Config::parse(test_schema(), "[grpo]\nlr = 0\n", "c.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_DOUBLE_EQ(cfg->get_double("grpo.lr"), 0.0);
  auto bad = Config::parse(test_schema(), "[generator]\nreplicas = 2.5\n", "c.toml");
  EXPECT_FALSE(bad.ok());
}

TEST(ConfigTest, StringChoicesAreEnforced) {
  auto cfg = Config::parse(test_schema(), "[run]\nlog_level = \"loud\"\n", "c.toml");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().message(), "c.toml:2: run.log_level: must be one of debug, info, got 'loud'");
}

TEST(ConfigTest, MissingPathFileFails) {
  auto cfg = Config::parse(test_schema(), "[task]\neval_file = \"/nonexistent/held.jsonl\"\n", "c.toml");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().message(),
            "c.toml:2: task.eval_file: file '/nonexistent/held.jsonl' does not exist");
}

TEST(ConfigTest, OverridesWinAndAreValidated) {
  auto cfg = Config::parse(test_schema(), "[generator]\nreplicas = 4\n", "c.toml",
                           {"generator.replicas=3", "run.log_level=debug"});
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->get_int("generator.replicas"), 3);
  EXPECT_EQ(cfg->get_string("run.log_level"), "debug");
  EXPECT_EQ(cfg->origin("generator.replicas"), "command line");

  auto bad = Config::parse(test_schema(), "", "c.toml", {"generator.replicas=-1"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "command line: generator.replicas: must be >= 0, got -1");
  auto unknown = Config::parse(test_schema(), "", "c.toml", {"genrator.replicas=1"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unknown key 'genrator.replicas'"), std::string::npos);
  auto malformed = Config::parse(test_schema(), "", "c.toml", {"generator.replicas"});
  EXPECT_FALSE(malformed.ok());
}

TEST(ConfigTest, TomlSyntaxErrorNamesLine) {
  auto cfg = Config::parse(test_schema(), "[generator]\nreplicas = = 3\n", "c.toml");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().message().rfind("c.toml:2:", 0), 0u) << cfg.status();
}

TEST(ConfigTest, LoadReadsAFileAndReportsAMissingOne) {
  std::string path = ::testing::TempDir() + "/grpo_config_test.toml";
  {
    std::ofstream out(path);
    out << "[generator]\nreplicas = 7\n";
  }
  auto cfg = Config::load(test_schema(), path);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->get_int("generator.replicas"), 7);
  EXPECT_EQ(cfg->origin("generator.replicas"), path + ":2");
  std::remove(path.c_str());
  auto missing = Config::load(test_schema(), path);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace grpo
