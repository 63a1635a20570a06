// Program-level tests of `grpo generate`, `grpo tokenize`, `grpo sft`, `grpo bench generate|learner`
// and the code kind of `grpo verify`, run as real child processes. Tests that need ../shared/data (models and
// tokenizers) are in RuntimeCliDataTest (label `data`) and skip with a message when it is absent.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/trainer.h"
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

TEST(RuntimeCliTest, BenchLearnerReportsStepSpeedsAndLogprobMemory) {
  auto r = run({"bench", "learner", "--steps", "1", "--sequences", "8", "--vocab", "5000", "--tokens", "256",
                "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json j = last_json(r.output);
  for (const char* key : {"tokens_per_s", "baseline_tokens_per_s", "fused_peak_bytes", "unfused_peak_bytes"})
    ASSERT_TRUE(j.contains(key)) << key << " missing in " << r.output;
  EXPECT_GT(j["tokens_per_s"].get<double>(), 0.0);
  EXPECT_GT(j["baseline_tokens_per_s"].get<double>(), 0.0);
  // The two implementations take the same step.
  EXPECT_LT(j["max_weight_diff"].get<double>(), 1e-4);
  // Unfused holds [tokens, vocab] logits and more; fused one [tokens, 4096] block at most.
  EXPECT_GE(j["unfused_peak_bytes"].get<int64_t>(), 256 * 5000 * 4);
  EXPECT_LT(j["fused_peak_bytes"].get<int64_t>(), j["unfused_peak_bytes"].get<int64_t>());
}

// A small random Hugging Face checkpoint written by the trainer itself.
std::string make_tiny_model(const std::string& dir) {
  runtime::ModelConfig c;
  c.vocab_size = 64;
  c.dim = 32;
  c.n_layers = 1;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.ffn_hidden = 64;
  c.max_seq_len = 24;
  auto t = runtime::Trainer::create(c, runtime::OptimizerOptions{}, 3);
  EXPECT_TRUE(t.ok());
  fs::create_directories(dir);
  EXPECT_TRUE((*t)->save_hf(dir).ok());
  return dir;
}

TEST(RuntimeCliTest, SftLearnsTheResponsesAndWritesAHuggingFaceCheckpoint) {
  const std::string model = make_tiny_model(temp_path("sft_model"));
  const std::string data = temp_path("sft.jsonl"), out = temp_path("sft_out");
  fs::remove_all(out);
  {
    std::ofstream f(data);
    for (int i = 0; i < 12; ++i) {
      // Rejected samples (reward 0) teach a different continuation; --min-reward keeps them out.
      const bool good = i % 3 != 0;
      f << json{{"prompt_ids", {1, 5 + i % 4, 9}}, {"response_ids", good ? json{20, 21, 22, 2} : json{40, 41, 2}},
                {"reward", good ? 1.0 : 0.0}}.dump()
        << "\n";
      if (i == 5) f << "\n";  // blank lines are skipped
    }
  }
  auto r = run({"sft", "--model", model, "--data", data, "--out", out, "--min-reward", "1", "--epochs", "40",
                "--batch-size", "4", "--lr", "0.01", "--threads", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json j = last_json(r.output);
  EXPECT_EQ(j["pairs"], 8);
  EXPECT_EQ(j["filtered"], 4);
  EXPECT_LT(j["last_loss"].get<double>(), 0.2 * j["first_loss"].get<double>()) << r.output;
  // The result is a loadable checkpoint that now continues the prompt with the kept response.
  ASSERT_TRUE(fs::exists(out + "/config.json") && fs::exists(out + "/model.safetensors"));
  auto g = run({"generate", "--model", out, "--prompt-ids", "1,6,9", "--max-tokens", "4", "--temperature", "0",
                "--json"});
  ASSERT_EQ(g.exit_code, 0) << g.output;
  EXPECT_EQ(last_json(g.output)["ids"], (json{20, 21, 22, 2})) << g.output;
  fs::remove_all(out);
  fs::remove_all(model);
  fs::remove(data);
}

TEST(RuntimeCliTest, SftRejectsBadDataNamingTheLineAndWritesNothing) {
  const std::string model = make_tiny_model(temp_path("sft_bad_model"));
  const std::string data = temp_path("sft_bad.jsonl"), out = temp_path("sft_bad_out");
  fs::remove_all(out);
  auto write = [&](const std::string& text) {
    std::ofstream f(data);
    f << text;
  };
  const std::string good = "{\"prompt_ids\": [1, 2], \"response_ids\": [3, 2]}\n";
  const std::pair<std::string, std::string> cases[] = {
      {good + "{\"prompt_ids\": [1, 2]}\n", ":2: give both"},
      {good + good + "not json\n", ":3: not a JSON object"},
      {"{\"prompt_ids\": [1, 2], \"response_ids\": [3, 999]}\n", ":1: token id 999 outside"},
      {"{\"prompt\": \"hi\", \"response\": \"there\"}\n", ":1: text data needs a tokenizer"},
      {"{\"prompt_ids\": [1], \"response_ids\": [3], \"reward\": \"high\"}\n", ":1: \"reward\" must be a number"},
  };
  for (const auto& [text, expect] : cases) {
    write(text);
    auto r = run({"sft", "--model", model, "--data", data, "--out", out});
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(data + expect), std::string::npos) << "expected '" << expect << "' in " << r.output;
    EXPECT_FALSE(fs::exists(out));
  }
  fs::remove_all(model);
  fs::remove(data);
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

TEST(RuntimeCliDataTest, SftOnTextPairsTeachesStories260kTheResponse) {
  GRPO_REQUIRE_DATA("models/stories260K/model.safetensors");
  const std::string dir = (grpo::testing::test_data_dir() / "models/stories260K").string();
  const std::string data = temp_path("sft_text.jsonl"), out = temp_path("sft_text_out");
  fs::remove_all(out);
  {
    std::ofstream f(data);
    for (int i = 0; i < 8; ++i)
      f << json{{"prompt", "Once upon a time"}, {"response", " there was a purple dragon."}}.dump() << "\n";
  }
  auto r = run({"sft", "--model", dir, "--data", data, "--out", out, "--epochs", "40", "--batch-size", "8",
                "--lr", "0.002", "--threads", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The tokenizer travels with the checkpoint, and EOS was appended to the response.
  auto g = run({"generate", "--model", out, "--prompt", "Once upon a time", "--max-tokens", "20",
                "--temperature", "0", "--json"});
  ASSERT_EQ(g.exit_code, 0) << g.output;
  json j = last_json(g.output);
  EXPECT_EQ(j["text"], " there was a purple dragon.") << g.output;
  EXPECT_EQ(j["finish_reason"], "eos") << g.output;
  fs::remove_all(out);
  fs::remove(data);
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
