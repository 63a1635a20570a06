// Data tests of math answer extraction and equivalence against real datasets (label `data`).
//
// Reads ../shared/data (or $GRPO_TEST_DATA): MATH-500 and GSM8K test splits and the answer
// equivalence cases collected from peer checkers. Each test skips when its file is absent, and
// prints the rates it measured.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/math_verify.h"
#include "tests/test_data.h"

namespace grpo::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The string after "####" with thousands commas removed (independent of the code under test).
std::string gsm8k_number(const std::string& answer) {
  std::string tail = answer.substr(answer.rfind("####") + 4);
  std::string out;
  for (char c : tail)
    if (c != ',' && c != ' ' && c != '\n') out += c;
  return out;
}

TEST(MathDataTest, Math500SolutionsMatchOwnAnswerAndRejectNext) {
  GRPO_LOAD_JSONL_OR_SKIP(records, "datasets/math500_test.jsonl");
  const std::size_t n = records.size();
  std::size_t own = 0, next = 0, auto_own = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    const std::string solution = records[i]["solution"];
    const std::string answer = records[i]["answer"];
    const std::string next_answer = records[(i + 1) % n]["answer"];
    auto boxed = extract_answer_math(solution, AnswerFormat::kBoxed);
    ASSERT_TRUE(boxed.has_value()) << "record " << i << " has no \\boxed answer";
    if (math_equal(*boxed, answer)) {
      ++own;
    } else {
      std::printf("  MATH-500 record %zu: boxed '%s' not equal to answer '%s'\n", i, boxed->c_str(),
                  answer.c_str());
    }
    if (math_equal(*boxed, next_answer)) {
      ++next;
      std::printf("  MATH-500 record %zu: '%s' accepted for next answer '%s'\n", i, boxed->c_str(),
                  next_answer.c_str());
    }
    // The whole solution as a response (kAuto extraction inside math_equal).
    if (math_equal(solution, answer)) ++auto_own;
  }
  double secs = seconds_since(t0);
  std::printf(
      "MATH-500: own answer %zu/%zu (%.1f%%), next answer %zu/%zu (%.1f%%), "
      "whole solution as response %zu/%zu; %.0f comparisons/s\n",
      own, n, 100.0 * own / n, next, n, 100.0 * next / n, auto_own, n,
      3.0 * n / std::max(secs, 1e-9));
  EXPECT_GE(own * 100, n * 99);
  EXPECT_LE(next * 100, n * 1);
  EXPECT_GE(auto_own * 100, n * 99);
}

TEST(MathDataTest, Gsm8kAnswersMatchOwnNumberAndRejectNext) {
  GRPO_LOAD_JSONL_OR_SKIP(records, "datasets/gsm8k_test.jsonl");
  const std::size_t n = records.size();
  std::size_t own = 0, next_accepted = 0, next_compared = 0, next_identical = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    const std::string answer = records[i]["answer"];
    const std::string next_answer = records[(i + 1) % n]["answer"];
    const std::string gold = answer.substr(answer.rfind("####") + 4);
    const std::string next_gold = next_answer.substr(next_answer.rfind("####") + 4);
    auto extracted = extract_answer_math(answer, AnswerFormat::kGsm8k);
    ASSERT_TRUE(extracted.has_value()) << "record " << i;
    // The worked solution as a response, against the final number as gold.
    if (math_equal(answer, gold)) {
      ++own;
    } else {
      std::printf("  GSM8K record %zu: not equal to its own number '%s'\n", i, gold.c_str());
    }
    if (gsm8k_number(answer) == gsm8k_number(next_answer)) {
      ++next_identical;  // both problems have the same answer; accepting it is right
      continue;
    }
    ++next_compared;
    if (math_equal(answer, next_gold)) {
      ++next_accepted;
      std::printf("  GSM8K record %zu: accepted next number '%s'\n", i, next_gold.c_str());
    }
  }
  double secs = seconds_since(t0);
  std::printf(
      "GSM8K: own number %zu/%zu, next number accepted %zu/%zu (%zu neighbours share "
      "the same number and are not counted); %.0f comparisons/s\n",
      own, n, next_accepted, next_compared, next_identical,
      (n + next_compared) / std::max(secs, 1e-9));
  EXPECT_EQ(own, n);
  EXPECT_EQ(next_accepted, 0u);
}

TEST(MathDataTest, EquivalenceCasesAgreeWithExpected) {
  GRPO_LOAD_JSONL_OR_SKIP(cases, "verifier_cases/math_equivalence.jsonl");
  std::size_t considered = 0, agree = 0, excluded = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const json& c = cases[i];
    if (!c["note"].is_null()) {
      ++excluded;
      continue;
    }
    const std::string pred = c["pred"];
    const std::string gold = c["gold"];
    const bool expected = c["expected"];
    const bool got = math_equal(pred, gold);
    ++considered;
    if (got == expected) {
      ++agree;
    } else {
      std::string g = gold.size() > 80 ? gold.substr(0, 77) + "..." : gold;
      std::string p = pred.size() > 80 ? "..." + pred.substr(pred.size() - 77) : pred;
      std::printf("  case %zu (%s): expected %s, got %s: gold '%s' pred '%s'\n", i,
                  c["source"].get<std::string>().c_str(), expected ? "true" : "false",
                  got ? "true" : "false", g.c_str(), p.c_str());
    }
  }
  double secs = seconds_since(t0);
  std::printf(
      "verifier cases: agreement %zu/%zu (%.1f%%), %zu cases with a note excluded; "
      "%.0f samples/s\n",
      agree, considered, 100.0 * agree / std::max<std::size_t>(considered, 1), excluded,
      considered / std::max(secs, 1e-9));
  ASSERT_GT(considered, 0u);
  EXPECT_GE(agree * 100, considered * 95);
}

}  // namespace
}  // namespace grpo::runtime
