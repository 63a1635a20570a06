// Program-level tests of `grpo generate`, `grpo tokenize`, `grpo bench generate` and the code kind
// of `grpo verify`, run as real child processes. Tests that need ../shared/data (models and
// tokenizers) are in RuntimeCliDataTest (label `data`) and skip with a message when it is absent.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/apps/run_grpo.h"
#include "tests/test_data.h"

namespace grpo::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("grpo_runtime_cli_" + std::to_string(::getpid()) + "_" + name)).string();
}

RunResult run(const std::vector<std::string>& args) { return run_grpo(args, temp_path("log.txt")); }

// The last line of the output that parses as a JSON object.
json last_json(const std::string& output) {
  std::istringstream in(output);
  std::string line;
  json found;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '{') continue;
    json j = json::parse(line, nullptr, false);
    if (!j.is_discarded()) found = j;
  }
  return found;
}

// Built twice: runtime_cli_test (label unit) and, with GRPO_DATA_TESTS, runtime_cli_data_test
// (label data).
#ifndef GRPO_DATA_TESTS

TEST(RuntimeCliTest, BenchGenerateReportsEngineAndBaselinePerBatch) {
  auto r = run({"bench", "generate", "--batches", "1,4", "--new-tokens", "6", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json j = last_json(r.output);
  ASSERT_TRUE(j.contains("results")) << r.output;
  ASSERT_EQ(j["results"].size(), 2u);
  EXPECT_EQ(j["results"][0]["batch"], 1);
  EXPECT_EQ(j["results"][1]["batch"], 4);
  for (const auto& row : j["results"]) {
    EXPECT_GT(row["engine_tokens_per_s"].get<double>(), 0.0);
    EXPECT_GT(row["baseline_tokens_per_s"].get<double>(), 0.0);
  }
}

TEST(RuntimeCliTest, BadArgumentsExitTwoWithAReason) {
  auto r = run({"generate", "--model", temp_path("no_such_model"), "--prompt-ids", "1", "--max-tokens", "4"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("no_such_model"), std::string::npos) << r.output;
  r = run({"tokenize", "--tokenizer", temp_path("no_such_tokenizer"), "--text", "hi"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("no_such_tokenizer"), std::string::npos) << r.output;
  r = run({"bench", "generate", "--batches", "1,x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("--batches"), std::string::npos) << r.output;
  r = run({"bench", "generate", "--new-tokens", "0"});
  EXPECT_EQ(r.exit_code, 2);
}

TEST(RuntimeCliTest, VerifyCodeRunsCompletionsInTheSandbox) {
  const std::string input = temp_path("code.jsonl"), output = temp_path("code_out.jsonl");
  json gold = {{"prompt", "def add(a, b):\n"},
               {"test", "def check(f):\n    assert f(2, 3) == 5\n    assert f(-1, 1) == 0\n"},
               {"entry_point", "add"}};
  {
    std::ofstream f(input);
    f << json{{"response", "    return a + b\n"}, {"gold", gold}}.dump() << "\n";
    f << json{{"response", "    return a - b\n"}, {"gold", gold}}.dump() << "\n";
    f << json{{"response", "    while True:\n        pass\n"}, {"gold", gold}}.dump() << "\n";
    f << json{{"response", "    return a + b\n"}, {"gold", {{"test", "x"}}}}.dump() << "\n";  // no entry_point
  }
  auto r = run({"verify", "--kind", "code", "--input", input, "--output", output, "--timeout", "2",
                "--cpu-seconds", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(output);
  std::vector<json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_TRUE(lines[0]["correct"].get<bool>());
  EXPECT_EQ(lines[0]["reward"].get<double>(), 1.0);
  EXPECT_FALSE(lines[1]["correct"].get<bool>());
  EXPECT_EQ(lines[1]["detail"], "fail");
  EXPECT_FALSE(lines[2]["correct"].get<bool>());
  EXPECT_EQ(lines[2]["detail"], "timeout");
  EXPECT_EQ(lines[2]["reward"].get<double>(), 0.0);
  ASSERT_TRUE(lines[3].contains("error"));
  EXPECT_NE(lines[3]["error"].get<std::string>().find("entry_point"), std::string::npos) << lines[3];
  fs::remove(input);
  fs::remove(output);
}

#else

TEST(RuntimeCliDataTest, GenerateReproducesStories260kGreedyText) {
  GRPO_REQUIRE_DATA("models/stories260K/model.safetensors");
  const std::string dir = (grpo::testing::test_data_dir() / "models/stories260K").string();
  auto r = run({"generate", "--model", dir, "--prompt-ids", "1", "--max-tokens", "200", "--temperature", "0",
                "--ignore-eos", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json j = last_json(r.output);
  ASSERT_TRUE(j.contains("ids") && j.contains("text")) << r.output;
  EXPECT_EQ(j["ids"].size(), 200u);
  EXPECT_EQ(j["text"].get<std::string>(), read_file(dir + "/expected_greedy_text.txt"));
  // A text prompt, sampled, seeded: the same seed gives the same text.
  std::vector<std::string> args = {"generate", "--model", dir, "--prompt", "Once upon a time", "--max-tokens", "30",
                                   "--temperature", "0.8", "--top-p", "0.9", "--seed", "5", "--json"};
  auto a = run(args), b = run(args);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(last_json(a.output)["ids"], last_json(b.output)["ids"]);
  EXPECT_EQ(last_json(a.output)["prompt_ids"], (json{1, 403, 407, 261, 378}));
}

TEST(RuntimeCliDataTest, TokenizeEncodesAndDecodes) {
  GRPO_REQUIRE_DATA("tokenizers/qwen2");
  const std::string qwen = (grpo::testing::test_data_dir() / "tokenizers/qwen2").string();
  auto r = run({"tokenize", "--tokenizer", qwen, "--text", "<|im_start|>hello<|im_end|>", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(last_json(r.output)["ids"], (json{151644, 14990, 151645}));
  r = run({"tokenize", "--tokenizer", qwen, "--decode", "151644,14990,151645", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(last_json(r.output)["text"], "<|im_start|>hello<|im_end|>");
  r = run({"tokenize", "--tokenizer", qwen, "--decode", "1,x"});
  EXPECT_EQ(r.exit_code, 2);
}

#endif  // GRPO_DATA_TESTS

}  // namespace
}  // namespace grpo::testing
