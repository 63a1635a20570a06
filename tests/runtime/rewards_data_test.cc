// Data tests of the rule-based rewards against real datasets (label `data`).
//
// Reads ../shared/data (or $GRPO_TEST_DATA). Countdown: for every task of countdown_test.jsonl an
// independent brute-force solver (its own exact fractions) looks for an expression; the scorer
// must accept every one found, and reject the same expression with a number reused, a number
// dropped, or a changed target, as well as expressions for the unsolvable tasks. MATH-500 and
// GSM8K equivalence is covered by math_data_test.cc; here they only measure the throughput of
// the combined scorer (response = worked solution, gold = final answer). Each test skips when its
// file is absent and prints what it measured.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "runtime/rewards.h"
#include "tests/test_data.h"

namespace grpo::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// --- An independent Countdown solver: exact fractions of small integers, pairwise combination.

struct Frac {
  long long n, d;  // d > 0, reduced
};

Frac make(long long n, long long d) {
  if (d < 0) n = -n, d = -d;
  long long g = std::gcd(n < 0 ? -n : n, d);
  return g > 1 ? Frac{n / g, d / g} : Frac{n, d};
}

struct Term {
  Frac value;
  std::string text;
};

std::optional<std::string> solve(std::vector<Term> terms, long long target) {
  if (terms.size() == 1) {
    if (terms[0].value.d == 1 && terms[0].value.n == target) return terms[0].text;
    return std::nullopt;
  }
  for (std::size_t i = 0; i < terms.size(); ++i) {
    for (std::size_t j = 0; j < terms.size(); ++j) {
      if (i == j) continue;
      std::vector<Term> rest;
      for (std::size_t k = 0; k < terms.size(); ++k)
        if (k != i && k != j) rest.push_back(terms[k]);
      const Frac a = terms[i].value, b = terms[j].value;
      const std::string x = terms[i].text, y = terms[j].text;
      std::vector<Term> options;
      if (i < j) {  // + and * are commutative
        options.push_back({make(a.n * b.d + b.n * a.d, a.d * b.d), "(" + x + " + " + y + ")"});
        options.push_back({make(a.n * b.n, a.d * b.d), "(" + x + " * " + y + ")"});
      }
      options.push_back({make(a.n * b.d - b.n * a.d, a.d * b.d), "(" + x + " - " + y + ")"});
      if (b.n != 0) options.push_back({make(a.n * b.d, a.d * b.n), "(" + x + " / " + y + ")"});
      for (const Term& t : options) {
        rest.push_back(t);
        if (auto found = solve(rest, target)) return found;
        rest.pop_back();
      }
    }
  }
  return std::nullopt;
}

// Replaces the last occurrence of the literal `from` (a whole number token) with `to`.
std::string replace_last_literal(const std::string& expr, long long from, long long to) {
  const std::string f = std::to_string(from);
  for (std::size_t p = expr.rfind(f); p != std::string::npos;
       p = p == 0 ? std::string::npos : expr.rfind(f, p - 1)) {
    bool left_ok = p == 0 || !std::isdigit(static_cast<unsigned char>(expr[p - 1]));
    bool right_ok = p + f.size() >= expr.size() ||
                    !std::isdigit(static_cast<unsigned char>(expr[p + f.size()]));
    if (left_ok && right_ok)
      return expr.substr(0, p) + std::to_string(to) + expr.substr(p + f.size());
  }
  return expr;
}

TEST(RewardsDataTest, CountdownSolutionsAcceptedAndCorruptionsRejected) {
  GRPO_LOAD_JSONL_OR_SKIP(records, "datasets/countdown_test.jsonl");
  std::size_t solvable = 0, accepted = 0, unsolvable = 0, wrong_accepted = 0, wrong_checked = 0;
  RewardConfig config;
  config.format_weight = 0.1;
  auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < records.size(); ++i) {
    CountdownTask task;
    task.target = records[i]["target"].get<long long>();
    for (const auto& n : records[i]["nums"]) task.nums.push_back(n.get<long long>());
    ASSERT_TRUE(validate_countdown_task(task).ok()) << "record " << i;
    std::vector<Term> terms;
    for (long long n : task.nums) terms.push_back({{n, 1}, std::to_string(n)});
    auto reject = [&](const std::string& response, const char* what) {
      ++wrong_checked;
      CountdownResult c = check_countdown(response, task);
      if (c.correct) {
        ++wrong_accepted;
        ADD_FAILURE() << "record " << i << ": " << what << " accepted: " << response;
      }
    };
    auto expr = solve(terms, task.target);
    if (!expr) {
      ++unsolvable;
      // Nothing can be right; try the plain sum and a left-to-right chain of operators.
      std::string sum, chain;
      for (std::size_t k = 0; k < task.nums.size(); ++k) {
        sum += (k ? " + " : "") + std::to_string(task.nums[k]);
        chain += (k ? (k % 2 ? " * " : " - ") : "") + std::to_string(task.nums[k]);
      }
      reject("<answer>" + sum + "</answer>", "sum for an unsolvable task");
      reject("<answer>" + chain + "</answer>", "chain for an unsolvable task");
      continue;
    }
    ++solvable;
    const std::string response = "<think>Let me search.</think>\n<answer>" + *expr + " = " +
                                 std::to_string(task.target) + "</answer>";
    RewardSample sample;
    sample.response = response;
    sample.countdown = task;
    RewardBreakdown b = score(RewardKind::kCountdown, sample, config);
    if (b.correct && b.format == 1.0 && b.total == 1.1) {
      ++accepted;
    } else {
      ADD_FAILURE() << "record " << i << ": solver's expression rejected: " << *expr << " ("
                    << b.detail << b.error << ")";
    }
    // Corruptions: a number reused in place of another, a number dropped, another target.
    const long long first = task.nums[0], last = task.nums.back();
    if (first != last) {
      reject("<answer>" + replace_last_literal(*expr, last, first) + "</answer>", "reused number");
    }
    reject("<answer>" + replace_last_literal(*expr, last, 0) + "</answer>", "zeroed number");
    CountdownTask other = task;
    other.target += 1;
    ++wrong_checked;
    if (check_countdown("<answer>" + *expr + "</answer>", other).correct) {
      ++wrong_accepted;
      ADD_FAILURE() << "record " << i << ": accepted for target + 1: " << *expr;
    }
    CountdownTask fewer = task;
    fewer.nums.pop_back();
    ++wrong_checked;
    if (check_countdown("<answer>" + *expr + "</answer>", fewer).correct) {
      ++wrong_accepted;
      ADD_FAILURE() << "record " << i << ": accepted with a number missing from the task";
    }
  }
  const double secs = seconds_since(t0);
  std::printf(
      "Countdown test split: %zu tasks, %zu solvable (solver's expression accepted %zu), %zu "
      "unsolvable; wrong expressions accepted %zu/%zu; %.1f s (solver included)\n",
      records.size(), solvable, accepted, unsolvable, wrong_accepted, wrong_checked, secs);
  EXPECT_EQ(accepted, solvable);
  EXPECT_EQ(wrong_accepted, 0u);
  EXPECT_GT(solvable * 10, records.size() * 9);  // the set was generated to be solvable
}

TEST(RewardsDataTest, MathScorerThroughputOnMath500) {
  GRPO_LOAD_JSONL_OR_SKIP(records, "datasets/math500_test.jsonl");
  RewardConfig config;
  std::size_t correct = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (const json& r : records) {
    correct += score(RewardKind::kMath, r["solution"].get<std::string>(),
                     r["answer"].get<std::string>(), config)
                   .correct;
  }
  const double secs = seconds_since(t0);
  // Most extracted answers equal their gold verbatim, which math_equal() settles before parsing.
  // Against the next record's answer every comparison takes the full path (parse, GiNaC).
  std::size_t next_accepted = 0;
  t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < records.size(); ++i) {
    const json& next = records[(i + 1) % records.size()];
    next_accepted += score(RewardKind::kMath, records[i]["solution"].get<std::string>(),
                           next["answer"].get<std::string>(), config)
                         .correct;
  }
  const double next_secs = seconds_since(t0);
  std::printf(
      "MATH-500 via score(kMath): own answer %zu/%zu correct, %.2f s, %.1f samples/s; next "
      "record's answer %zu/%zu accepted, %.2f s, %.1f samples/s\n",
      correct, records.size(), secs, records.size() / std::max(secs, 1e-9), next_accepted,
      records.size(), next_secs, records.size() / std::max(next_secs, 1e-9));
  EXPECT_GE(correct * 100, records.size() * 99);
  EXPECT_LE(next_accepted * 100, records.size() * 1);
}

TEST(RewardsDataTest, Gsm8kScorerThroughput) {
  GRPO_LOAD_JSONL_OR_SKIP(records, "datasets/gsm8k_test.jsonl");
  RewardConfig config;
  std::size_t correct = 0, correct_full_gold = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (const json& r : records) {
    const std::string answer = r["answer"];
    std::string number = answer.substr(answer.rfind("####") + 4);
    correct += score(RewardKind::kGsm8k, answer, number, config).correct;
    correct_full_gold += score(RewardKind::kGsm8k, answer, answer, config).correct;
  }
  const double secs = seconds_since(t0);
  std::printf(
      "GSM8K via score(kGsm8k): %zu/%zu correct (bare gold), %zu/%zu (full gold text), "
      "%.2f s, %.1f samples/s\n",
      correct, records.size(), correct_full_gold, records.size(), secs,
      2.0 * records.size() / std::max(secs, 1e-9));
  EXPECT_EQ(correct, records.size());
  EXPECT_EQ(correct_full_gold, records.size());
}

}  // namespace
}  // namespace grpo::runtime
