// Data tests of the code sandbox against HumanEval (label `data`).
//
// Reads ../shared/data (or $GRPO_TEST_DATA): every canonical solution must pass its own tests and
// fail the next problem's tests, and human-eval's example samples must score as upstream expects
// (three passes, a timeout, two failures) without touching anything outside their sandbox. Each
// test skips when its file is absent, and prints the throughput it measured.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "runtime/code_sandbox.h"
#include "tests/test_data.h"

namespace grpo::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::unique_ptr<SandboxPool> make_pool() {
  auto pool = SandboxPool::create();
  if (!pool.ok()) {
    ADD_FAILURE() << pool.status();
    return nullptr;
  }
  return std::move(pool).value();
}

// Scores jobs[i] for every i on `threads` threads (one per pool slot), returning the scores.
template <typename Job>
std::vector<CodeScore> score_all(SandboxPool& pool, std::size_t n, const Job& job) {
  std::vector<CodeScore> scores(n);
  std::atomic<std::size_t> next{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < pool.slots(); ++t) {
    threads.emplace_back([&] {
      for (std::size_t i = next++; i < n; i = next++) scores[i] = job(i);
    });
  }
  for (std::thread& th : threads) th.join();
  return scores;
}

std::string brief(const CodeScore& s) {
  return std::string(code_verdict_name(s.verdict)) + " (" + run_outcome_name(s.run.outcome) +
         ", exit " + std::to_string(s.run.exit_code) + ", " + s.run.error +
         "): " + s.run.output.substr(0, 600);
}

TEST(CodeSandboxDataTest, HumanEvalCanonicalSolutionsPassAndFailTheNextProblem) {
  GRPO_LOAD_JSONL_OR_SKIP(problems, "datasets/HumanEval.jsonl");
  auto pool = make_pool();
  ASSERT_TRUE(pool);
  const std::size_t n = problems.size();
  SandboxLimits limits;
  limits.wall_seconds = 20;  // a loaded two-core machine; the canonical solutions take ms

  auto t0 = std::chrono::steady_clock::now();
  std::vector<CodeScore> own = score_all(*pool, n, [&](std::size_t i) {
    const json& p = problems[i];
    return score_humaneval(*pool, p["prompt"], p["canonical_solution"], p["test"], p["entry_point"],
                           limits);
  });
  const double own_seconds = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  // Problem i's solution against problem i+1's tests and entry point.
  std::vector<CodeScore> next = score_all(*pool, n, [&](std::size_t i) {
    const json& p = problems[i];
    const json& q = problems[(i + 1) % n];
    return score_humaneval(*pool, p["prompt"], p["canonical_solution"], q["test"], q["entry_point"],
                           limits);
  });
  const double next_seconds = seconds_since(t0);

  std::size_t own_pass = 0, next_fail = 0, retries = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::string id = problems[i]["task_id"];
    if (own[i].verdict == CodeVerdict::kPass) {
      ++own_pass;
    } else {
      ADD_FAILURE() << id << " canonical solution: " << brief(own[i]);
    }
    if (next[i].verdict == CodeVerdict::kFail) {
      ++next_fail;
    } else {
      ADD_FAILURE() << id << " solution against the next problem's tests: " << brief(next[i]);
    }
    retries += static_cast<std::size_t>(own[i].attempts - 1 + next[i].attempts - 1);
  }
  EXPECT_EQ(n, 164u);
  EXPECT_EQ(own_pass, n);
  EXPECT_EQ(next_fail, n);
  EXPECT_EQ(retries, 0u) << "infrastructure retries";
  std::printf(
      "[ humaneval] canonical: %zu/%zu pass in %.2f s (%.1f programs/s on %d slots); "
      "against next tests: %zu/%zu fail in %.2f s (%.1f programs/s)\n",
      own_pass, n, own_seconds, n / own_seconds, pool->slots(), next_fail, n, next_seconds,
      n / next_seconds);
}

TEST(CodeSandboxDataTest, HumanEvalExampleSamplesScoreAsUpstream) {
  GRPO_LOAD_JSONL_OR_SKIP(problems, "verifier_cases/humaneval_example_problem.jsonl");
  GRPO_LOAD_JSONL_OR_SKIP(samples, "verifier_cases/humaneval_example_samples.jsonl");
  ASSERT_EQ(problems.size(), 1u);
  ASSERT_EQ(samples.size(), 6u);
  auto pool = make_pool();
  ASSERT_TRUE(pool);

  // Markers the `rm -rf tmp` sample must not reach: one in host /tmp, one in the build folder.
  const std::string name = "grpo-sandbox-data-test-" + std::to_string(::getpid()) + ".txt";
  const fs::path tmp_marker = fs::path("/tmp") / name;
  const fs::path bin_marker = fs::path(GRPO_TEST_BINARY_DIR) / name;
  for (const fs::path& path : {tmp_marker, bin_marker}) std::ofstream(path) << "keep";
  fs::create_directories(fs::path("/tmp") / (name + ".d") / "tmp");

  // human-eval's harness gives each sample 3 s; the time.sleep(10) sample must time out.
  SandboxLimits limits;
  limits.wall_seconds = 3;
  const json& problem = problems[0];
  // In file order: `rm -rf tmp` through subprocess (no shell, so FileNotFoundError: fail),
  // time.sleep(10) (timeout), input() (EOFError on the empty stdin: fail), then `return 1` in
  // three indentations (pass).
  const CodeVerdict expected[] = {CodeVerdict::kFail, CodeVerdict::kTimeout, CodeVerdict::kFail,
                                  CodeVerdict::kPass, CodeVerdict::kPass,    CodeVerdict::kPass};
  int pass = 0, fail = 0, timeout = 0;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    CodeScore s = score_humaneval(*pool, problem["prompt"], samples[i]["completion"],
                                  problem["test"], problem["entry_point"], limits);
    EXPECT_EQ(s.verdict, expected[i]) << "sample " << i << ": " << brief(s);
    pass += s.verdict == CodeVerdict::kPass;
    fail += s.verdict == CodeVerdict::kFail;
    timeout += s.verdict == CodeVerdict::kTimeout;
  }
  EXPECT_EQ(pass, 3);
  EXPECT_EQ(timeout, 1);
  EXPECT_EQ(fail, 2);

  // The destructive sample again, as a shell command this time: still nothing outside changes.
  CodeScore rm = score_humaneval(
      *pool, problem["prompt"],
      "    import subprocess\n    subprocess.run('cd / && rm -rf tmp', shell=True)\n    return 1",
      problem["test"], problem["entry_point"], limits);
  EXPECT_EQ(rm.verdict, CodeVerdict::kPass) << brief(rm);
  std::ifstream tmp_in(tmp_marker), bin_in(bin_marker);
  std::string tmp_text, bin_text;
  tmp_in >> tmp_text;
  bin_in >> bin_text;
  EXPECT_EQ(tmp_text, "keep");
  EXPECT_EQ(bin_text, "keep");
  EXPECT_TRUE(fs::exists(fs::path("/tmp") / (name + ".d") / "tmp"));
  fs::remove(tmp_marker);
  fs::remove(bin_marker);
  fs::remove_all(fs::path("/tmp") / (name + ".d"));
}

}  // namespace
}  // namespace grpo::runtime
