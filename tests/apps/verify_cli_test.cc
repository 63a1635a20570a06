// `grpo verify` scores JSONL files offline: one output line per input line in input order (also
// with several threads), an error line naming the line number for each bad input line, a summary
// on stderr, exit 0 when the run completed and 2 for bad arguments or an unreadable input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "run_grpo.h"

namespace grpo {
namespace {
using nlohmann::json;
using testing::run_grpo;

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "/verify_" + std::to_string(::getpid()) + "_" + name;
}

std::string write_file(const std::string& name, const std::string& text) {
  std::string path = temp_path(name);
  std::ofstream(path) << text;
  return path;
}

// One JSONL line.
std::string line(const json& j) { return j.dump() + "\n"; }

std::string log_path() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return temp_path(std::string(info->name()) + ".log");
}

std::vector<json> read_jsonl(const std::string& path) {
  std::vector<json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line));
  return out;
}

// Runs verify with --output; returns the output records, and the log (stdout+stderr) in *log.
std::vector<json> verify(const std::vector<std::string>& args, const std::string& input,
                         std::string* log, int expected_exit = 0) {
  const std::string out = temp_path("out.jsonl");
  std::remove(out.c_str());
  std::vector<std::string> full = {"verify", "--input", input, "--output", out};
  full.insert(full.end(), args.begin(), args.end());
  auto r = run_grpo(full, log_path());
  *log = r.output;
  EXPECT_EQ(r.exit_code, expected_exit) << r.output;
  return read_jsonl(out);
}

void expect_summary(const std::string& log, int samples, int correct, int errors) {
  std::regex re("verify: kind [a-z0-9]+, " + std::to_string(samples) + " samples, " +
                std::to_string(correct) + " correct \\([0-9.]+%\\), " + std::to_string(errors) +
                " errors, [0-9.]+ s, [0-9.]+ samples/s\n");
  EXPECT_TRUE(std::regex_search(log, re)) << log;
}

TEST(VerifyCliTest, MathKeepsInputOrderAndReportsBadLines) {
  const std::string input = write_file(
      "math.jsonl", R"({"response": "so \\boxed{\\frac{1}{2}}", "gold": "0.5", "id": "a"})"
                    "\n"
                    R"({"response": "the answer is 3", "gold": "4"})"
                    "\n"
                    "{not json\n"
                    "\n"
                    "[1, 2]\n"
                    R"({"gold": "1"})"
                    "\n"
                    R"({"response": 7, "gold": "7"})"
                    "\n"
                    R"({"response": "\\boxed{7}", "gold": {"x": 1}})"
                    "\n"
                    R"({"response": "\\boxed{7}"})"
                    "\n"
                    R"({"response": "<think>r</think><answer>\\boxed{7}</answer>", "gold": 7})"
                    "\n");
  std::string log;
  auto out = verify({"--kind", "math", "--format-weight", "0.1"}, input, &log);
  ASSERT_EQ(out.size(), 9u) << log;  // the blank line 4 is skipped
  const std::vector<int> lines = {1, 2, 3, 5, 6, 7, 8, 9, 10};
  for (std::size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i]["line"], lines[i]);
  EXPECT_EQ(out[0]["id"], "a");
  EXPECT_EQ(out[0]["correct"], true);
  EXPECT_EQ(out[0]["reward"], 1.0);
  EXPECT_EQ(out[0]["answer"], "\\frac{1}{2}");
  EXPECT_FALSE(out[0].contains("error"));
  for (const char* term : {"accuracy", "format", "language", "length"}) {
    EXPECT_TRUE(out[0]["breakdown"].contains(term)) << out[0];
  }
  EXPECT_EQ(out[1]["correct"], false);
  EXPECT_EQ(out[1]["reward"], 0.0);
  EXPECT_FALSE(out[1].contains("error"));
  auto error_of = [&](std::size_t i) { return out[i].value("error", std::string()); };
  EXPECT_EQ(error_of(2).rfind("line 3: invalid JSON: ", 0), 0u) << error_of(2);
  EXPECT_EQ(error_of(3), "line 5: expected a JSON object, got array");
  EXPECT_EQ(error_of(4), "line 6: missing field 'response'");
  EXPECT_EQ(error_of(5), "line 7: field 'response' must be a string, got number");
  EXPECT_EQ(error_of(6), "line 8: field 'gold' must be a string, got object");
  EXPECT_EQ(error_of(7), "line 9: missing field 'gold'");
  for (std::size_t i = 2; i <= 7; ++i) {
    EXPECT_EQ(out[i]["reward"], 0.0);
    EXPECT_EQ(out[i]["correct"], false);
  }
  EXPECT_EQ(out[8]["correct"], true) << out[8];  // a JSON number as gold
  EXPECT_DOUBLE_EQ(out[8]["reward"].get<double>(), 1.1);
  EXPECT_EQ(out[8]["breakdown"]["format"], 1.0);
  // Only the summary reaches stdout+stderr when the records go to --output.
  expect_summary(log, 9, 2, 6);
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
}

TEST(VerifyCliTest, ManyThreadsKeepInputOrder) {
  std::string text;
  const int n = 3000;  // several chunks
  for (int i = 0; i < n; ++i) {
    // Every third line is wrong, every 97th is broken.
    if (i % 97 == 96) {
      text += "{\"response\": \n";
      continue;
    }
    text += "{\"id\": " + std::to_string(i) + ", \"response\": \"#### " + std::to_string(i) +
            "\", \"gold\": \"" + std::to_string(i % 3 == 2 ? i + 1 : i) + "\"}\n";
  }
  const std::string input = write_file("many.jsonl", text);
  std::string log;
  auto out = verify({"--kind", "gsm8k", "--threads", "4"}, input, &log);
  ASSERT_EQ(out.size(), static_cast<std::size_t>(n));
  int correct = 0, errors = 0;
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(out[i]["line"], i + 1);
    if (i % 97 == 96) {
      ++errors;
      EXPECT_TRUE(out[i].contains("error"));
      continue;
    }
    EXPECT_EQ(out[i]["id"], i);
    EXPECT_EQ(out[i]["correct"], i % 3 != 2) << out[i];
    correct += i % 3 != 2;
  }
  expect_summary(log, n, correct, errors);
}

TEST(VerifyCliTest, Gsm8kAcceptsAnswerTextOrNumber) {
  const std::string input =
      write_file("gsm8k.jsonl",
                 line({{"response", "She earns 18 dollars.\n#### 18"},
                       {"gold", "Janet sells 9 eggs at $2.\n#### 18"}}) +
                     line({{"response", "The answer is 1,234."}, {"gold", "1234"}}) +
                     line({{"response", "The answer is 1234."}, {"gold", 1234}}) +
                     line({{"response", "The answer is 17."}, {"gold", "#### 18"}}) +
                     line({{"response", "The answer is 17."}, {"gold", "nothing after\n####"}}));
  std::string log;
  auto out = verify({"--kind", "gsm8k"}, input, &log);
  ASSERT_EQ(out.size(), 5u) << log;
  EXPECT_EQ(out[0]["correct"], true) << out[0];
  EXPECT_EQ(out[1]["correct"], true) << out[1];
  EXPECT_EQ(out[2]["correct"], true) << out[2];
  EXPECT_EQ(out[3]["correct"], false);
  EXPECT_FALSE(out[3].contains("error"));
  EXPECT_EQ(out[4]["error"], "line 5: gold answer has nothing after '####'");
  expect_summary(log, 5, 3, 1);
}

TEST(VerifyCliTest, CountdownScoresExpressionsAndNamesGoldErrors) {
  auto record = [](const std::string& response, const json& gold) {
    return line({{"response", response}, {"gold", gold}});
  };
  const json task56 = {{"target", 56}, {"nums", {40, 74, 58}}};
  const std::string input = write_file(
      "countdown.jsonl",
      record("<think>74-58=16</think>\n<answer>40 + (74 - 58)</answer>", task56) +
          record("<answer>40 + 40 - 24</answer>", task56) +
          record("<answer>6/(1-3/4)</answer>", {{"target", 24}, {"nums", {1, 3, 4, 6}}}) +
          record("<answer>3/(5-5)</answer>", {{"target", 1}, {"nums", {3, 5, 5}}}) +
          record("1", {{"nums", {1}}}) + record("1", {{"target", 1}, {"nums", "1"}}) +
          record("1", {{"target", 1}, {"nums", {1, "2"}}}) + record("1", "56") +
          record("1", {{"target", 1}, {"nums", json::array()}}));
  std::string log;
  auto out = verify({"--kind", "countdown", "--format-weight", "0.1"}, input, &log);
  ASSERT_EQ(out.size(), 9u) << log;
  EXPECT_EQ(out[0]["correct"], true) << out[0];
  EXPECT_DOUBLE_EQ(out[0]["reward"].get<double>(), 1.1);
  EXPECT_EQ(out[1]["correct"], false);
  EXPECT_EQ(out[1]["detail"], "numbers used [24, 40, 40] are not the given [40, 58, 74]");
  EXPECT_EQ(out[2]["correct"], true) << out[2];
  EXPECT_EQ(out[3]["correct"], false);
  EXPECT_EQ(out[3]["detail"], "division by zero");
  EXPECT_EQ(out[4]["error"], "line 5: missing field 'gold.target'");
  EXPECT_EQ(out[5]["error"], "line 6: field 'gold.nums' must be an array of integers, got string");
  EXPECT_EQ(out[6]["error"], "line 7: field 'gold.nums[1]' must be an integer, got \"2\"");
  EXPECT_EQ(out[7]["error"].get<std::string>().rfind("line 8: field 'gold' must be an object", 0),
            0u);
  EXPECT_EQ(out[8]["error"], "line 9: countdown task has no numbers");
  expect_summary(log, 9, 2, 5);
}

TEST(VerifyCliTest, WritesToStdoutWithoutOutputOption) {
  const std::string input = write_file("stdout.jsonl", R"({"response": "\\boxed{2}", "gold": "2"})"
                                                       "\n");
  auto r = run_grpo({"verify", "--kind", "math", "--input", input}, log_path());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const std::string first = r.output.substr(0, r.output.find('\n'));
  json j = json::parse(first);
  EXPECT_EQ(j["correct"], true);
  expect_summary(r.output, 1, 1, 0);
}

TEST(VerifyCliTest, EmptyInputCompletes) {
  std::string log;
  auto out = verify({"--kind", "math"}, write_file("empty.jsonl", ""), &log);
  EXPECT_TRUE(out.empty());
  expect_summary(log, 0, 0, 0);
}

TEST(VerifyCliTest, BadArgumentsExitTwo) {
  const std::string ok = write_file("ok.jsonl", R"({"response": "1", "gold": "1"})"
                                                "\n");
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"verify", "--kind", "math"}, "--input is required"},
      {{"verify", "--input", ok}, "--kind is required"},
      {{"verify", "--kind", "poetry", "--input", ok}, "unknown reward kind 'poetry'"},
      {{"verify", "--kind", "math", "--input", "/nonexistent/in.jsonl"},
       "cannot open input file '/nonexistent/in.jsonl'"},
      {{"verify", "--kind", "math", "--input", ::testing::TempDir()}, "it is a directory"},
      {{"verify", "--kind", "math", "--input", ok, "--output", "/nonexistent/dir/out.jsonl"},
       "cannot write output file"},
      {{"verify", "--kind", "math", "--input", ok, "--threads", "0"}, "--threads must be in"},
      {{"verify", "--kind", "math", "--input", ok, "--threads", "many"}, "threads"},
      {{"verify", "--kind", "math", "--input", ok, "--bogus"}, "bogus"},
      {{"verify", "--kind", "math", "--input", ok, "--language", "xx"}, "unsupported language"},
      {{"verify", "--kind", "math", "--input", ok, "--answer-format", "guess"},
       "unknown answer format"},
      {{"verify", "--kind", "code", "--input", ok, "--timeout", "0"}, "wall_seconds"},
  };
  for (const Case& c : cases) {
    auto r = run_grpo(c.args, log_path());
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace grpo
