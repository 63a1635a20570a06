#include "runtime/scoring_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

namespace grpo::runtime {
namespace {

using Status = SampleOutcome::Status;
using Clock = std::chrono::steady_clock;

ScoreAttempt scored(double total, bool correct = true) {
  ScoreAttempt a;
  a.breakdown.total = total;
  a.breakdown.accuracy = correct ? 1.0 : 0.0;
  a.breakdown.correct = correct;
  return a;
}

ScoreAttempt infra(const std::string& why = "sandbox could not start") {
  ScoreAttempt a;
  a.infra_error = true;
  a.error = why;
  return a;
}

ScoringOptions opts(int threads, double timeout, int retries = 2, int quarantine = 2) {
  ScoringOptions o;
  o.threads = threads;
  o.timeout_seconds = timeout;
  o.max_retries = retries;
  o.quarantine_after = quarantine;
  return o;
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

TEST(ScoringServiceTest, ScoresEveryJobInOrder) {
  ScoringService svc(opts(3, 5));
  std::vector<ScoreJob> jobs;
  for (int i = 0; i < 10; ++i) jobs.push_back([i] { return scored(i); });
  auto out = svc.score_group(jobs);
  ASSERT_EQ(out.size(), 10u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(out[i].status, Status::kScored);
    EXPECT_EQ(out[i].breakdown.total, i);
    EXPECT_EQ(out[i].attempts, 1);
    EXPECT_TRUE(out[i].error.empty());
  }
  EXPECT_EQ(svc.counters().scored, 10u);
  EXPECT_TRUE(svc.score_group({}).empty());
}

TEST(ScoringServiceTest, SlowJobTimesOutAndTheServiceKeepsServing) {
  ScoringService svc(opts(1, 0.2));
  auto release = std::make_shared<std::atomic<bool>>(false);
  std::vector<ScoreJob> jobs = {[release] {
    // Sleeps far past the deadline (released at the end of the test so the thread exits).
    for (int i = 0; i < 300 && !*release; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return scored(1);
  }};
  auto t0 = Clock::now();
  auto out = svc.score_group(jobs);
  double took = seconds_since(t0);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].status, Status::kTimeout);
  EXPECT_EQ(out[0].breakdown.total, 0);
  EXPECT_FALSE(out[0].error.empty());
  EXPECT_GE(took, 0.2);
  EXPECT_LT(took, 0.2 + 0.5);
  EXPECT_EQ(svc.counters().timeouts, 1u);
  EXPECT_EQ(svc.counters().stuck_threads, 1u);
  // The single pool thread is stuck, yet a replacement serves the next group at once.
  t0 = Clock::now();
  auto next = svc.score_group({[] { return scored(0.5); }, [] { return scored(0.25); }});
  EXPECT_LT(seconds_since(t0), 0.2);
  ASSERT_EQ(next.size(), 2u);
  EXPECT_EQ(next[0].status, Status::kScored);
  EXPECT_EQ(next[0].breakdown.total, 0.5);
  EXPECT_EQ(next[1].breakdown.total, 0.25);
  *release = true;
  for (int i = 0; i < 200 && svc.counters().stuck_threads > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(svc.counters().stuck_threads, 0u);
}

TEST(ScoringServiceTest, TimeoutOfOneSampleDoesNotHoldBackTheOthers) {
  ScoringService svc(opts(2, 0.2));
  auto release = std::make_shared<std::atomic<bool>>(false);
  std::vector<ScoreJob> jobs;
  jobs.push_back([release] {
    while (!*release) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return scored(1);
  });
  for (int i = 0; i < 6; ++i) jobs.push_back([] { return scored(1); });
  auto t0 = Clock::now();
  auto out = svc.score_group(jobs);
  EXPECT_LT(seconds_since(t0), 0.2 + 0.5);
  EXPECT_EQ(out[0].status, Status::kTimeout);
  for (std::size_t i = 1; i < out.size(); ++i) EXPECT_EQ(out[i].status, Status::kScored) << i;
  *release = true;
}

TEST(ScoringServiceTest, ThrowingJobIsCrashedAndScoresZero) {
  ScoringService svc(opts(2, 5));
  auto out = svc.score_group({[]() -> ScoreAttempt { throw std::runtime_error("boom"); },
                              []() -> ScoreAttempt { throw 42; },
                              [] { return scored(1); }});
  EXPECT_EQ(out[0].status, Status::kCrashed);
  EXPECT_NE(out[0].error.find("boom"), std::string::npos);
  EXPECT_EQ(out[0].breakdown.total, 0);
  EXPECT_EQ(out[0].attempts, 1);
  EXPECT_EQ(out[1].status, Status::kCrashed);
  EXPECT_EQ(out[2].status, Status::kScored);
  EXPECT_EQ(svc.counters().crashes, 2u);
}

TEST(ScoringServiceTest, InfraFaultIsRetriedExactlyMaxRetriesTimes) {
  ScoringService svc(opts(1, 5, /*retries=*/3));
  auto calls = std::make_shared<std::atomic<int>>(0);
  auto out = svc.score_group({[calls] {
    ++*calls;
    return infra("bwrap: Can't fork");
  }});
  EXPECT_EQ(out[0].status, Status::kInfraError);
  EXPECT_EQ(out[0].attempts, 4);
  EXPECT_EQ(calls->load(), 4);
  EXPECT_EQ(out[0].error, "bwrap: Can't fork");
  EXPECT_EQ(out[0].breakdown.total, 0);
  EXPECT_EQ(svc.counters().retries, 3u);
  EXPECT_EQ(svc.counters().infra_errors, 1u);
}

TEST(ScoringServiceTest, InfraFaultOnceThenSuccessIsScoredOnTheSecondAttempt) {
  ScoringService svc(opts(1, 5, 2));
  auto calls = std::make_shared<std::atomic<int>>(0);
  auto out = svc.score_group({[calls] { return ++*calls == 1 ? infra() : scored(1.1); }});
  EXPECT_EQ(out[0].status, Status::kScored);
  EXPECT_EQ(out[0].attempts, 2);
  EXPECT_EQ(out[0].breakdown.total, 1.1);
  EXPECT_EQ(calls->load(), 2);
  EXPECT_EQ(svc.counters().retries, 1u);
}

TEST(ScoringServiceTest, NoRetriesMeansOneAttempt) {
  ScoringService svc(opts(1, 5, 0));
  auto out = svc.score_group({[] { return infra(); }});
  EXPECT_EQ(out[0].status, Status::kInfraError);
  EXPECT_EQ(out[0].attempts, 1);
}

TEST(ScoringServiceTest, WrongAnswerAndRefusedSampleAreNeverRetried) {
  ScoringService svc(opts(1, 5, 5));
  auto calls = std::make_shared<std::atomic<int>>(0);
  auto out = svc.score_group({[calls] {
                                ++*calls;
                                return scored(0, /*correct=*/false);
                              },
                              [calls] {
                                ++*calls;
                                ScoreAttempt a;
                                a.breakdown.error = "empty gold answer";
                                return a;
                              }});
  EXPECT_EQ(calls->load(), 2);
  EXPECT_EQ(out[0].status, Status::kScored);
  EXPECT_EQ(out[0].attempts, 1);
  EXPECT_FALSE(out[0].breakdown.correct);
  EXPECT_TRUE(out[0].error.empty());
  EXPECT_EQ(out[1].status, Status::kScored);
  EXPECT_EQ(out[1].attempts, 1);
  EXPECT_EQ(out[1].error, "empty gold answer");
  EXPECT_EQ(svc.counters().retries, 0u);
}

TEST(ScoringServiceTest, RepeatedTimeoutsQuarantineTheKey) {
  ScoringService svc(opts(1, 0.05, 2, /*quarantine=*/2));
  auto calls = std::make_shared<std::atomic<int>>(0);
  auto release = std::make_shared<std::atomic<bool>>(false);
  ScoreJob hang = [calls, release] {
    ++*calls;
    while (!*release) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return scored(1);
  };
  const uint64_t key = sample_key("response", "gold");
  EXPECT_NE(key, sample_key("respons", "egold"));
  EXPECT_EQ(svc.score_group({hang}, {key})[0].status, Status::kTimeout);
  EXPECT_FALSE(svc.is_quarantined(key));
  EXPECT_EQ(svc.score_group({hang}, {key})[0].status, Status::kTimeout);
  EXPECT_TRUE(svc.is_quarantined(key));
  EXPECT_EQ(calls->load(), 2);
  auto t0 = Clock::now();
  auto out = svc.score_group({hang, [] { return scored(1); }}, {key, key + 1});
  EXPECT_LT(seconds_since(t0), 0.05);
  EXPECT_EQ(out[0].status, Status::kQuarantined);
  EXPECT_EQ(out[0].attempts, 0);
  EXPECT_EQ(out[0].breakdown.total, 0);
  EXPECT_EQ(out[1].status, Status::kScored);
  EXPECT_EQ(calls->load(), 2);  // the quarantined job did not run
  auto c = svc.counters();
  EXPECT_EQ(c.quarantined, 1u);
  EXPECT_EQ(c.quarantined_keys, 1u);
  EXPECT_EQ(c.timeouts, 2u);
  // Without keys nothing is quarantined.
  EXPECT_EQ(svc.score_group({[] { return scored(1); }})[0].status, Status::kScored);
  *release = true;
}

TEST(ScoringServiceTest, RepeatedCrashesQuarantineTheKeyButWrongAnswersDoNot) {
  ScoringService svc(opts(1, 5, 2, /*quarantine=*/3));
  const uint64_t bad = 7, wrong = 8;
  ScoreJob crash = []() -> ScoreAttempt { throw std::runtime_error("x"); };
  ScoreJob zero = [] { return scored(0, false); };
  for (int i = 0; i < 3; ++i) {
    auto out = svc.score_group({crash, zero}, {bad, wrong});
    EXPECT_EQ(out[0].status, Status::kCrashed);
    EXPECT_EQ(out[1].status, Status::kScored);
  }
  auto out = svc.score_group({crash, zero}, {bad, wrong});
  EXPECT_EQ(out[0].status, Status::kQuarantined);
  EXPECT_EQ(out[1].status, Status::kScored);
  EXPECT_FALSE(svc.is_quarantined(wrong));
}

TEST(ScoringServiceTest, ManyConcurrentGroups) {
  ScoringService svc(opts(4, 5));
  constexpr int kCallers = 8, kGroups = 20, kSize = 8;
  std::atomic<int> bad{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&svc, &bad, c] {
      for (int g = 0; g < kGroups; ++g) {
        std::vector<ScoreJob> jobs;
        std::vector<uint64_t> keys;
        for (int i = 0; i < kSize; ++i) {
          const double v = c * 10000 + g * 100 + i;
          if (i == 3) {
            jobs.push_back([]() -> ScoreAttempt { throw std::runtime_error("x"); });
          } else {
            jobs.push_back([v] { return scored(v); });
          }
          keys.push_back(static_cast<uint64_t>(v) + 1000000);  // distinct: no quarantine
        }
        auto out = svc.score_group(jobs, keys);
        for (int i = 0; i < kSize; ++i) {
          const double v = c * 10000 + g * 100 + i;
          if (i == 3) {
            if (out[i].status != Status::kCrashed) ++bad;
          } else if (out[i].status != Status::kScored || out[i].breakdown.total != v) {
            ++bad;
          }
        }
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(bad.load(), 0);
  auto c = svc.counters();
  EXPECT_EQ(c.scored, static_cast<uint64_t>(kCallers * kGroups * (kSize - 1)));
  EXPECT_EQ(c.crashes, static_cast<uint64_t>(kCallers * kGroups));
  EXPECT_EQ(c.quarantined, 0u);
}

TEST(ScoringServiceTest, OptionsAreValidated) {
  EXPECT_TRUE(validate_scoring_options(ScoringOptions()).ok());
  EXPECT_FALSE(validate_scoring_options(opts(0, 1)).ok());
  EXPECT_FALSE(validate_scoring_options(opts(1, 0)).ok());
  EXPECT_FALSE(validate_scoring_options(opts(1, 1, -1)).ok());
  EXPECT_FALSE(validate_scoring_options(opts(1, 1, 1, 0)).ok());
  // Out-of-range options are clamped, not fatal.
  ScoringService svc(opts(0, -1, -3, 0));
  EXPECT_EQ(svc.options().threads, 1);
  EXPECT_GT(svc.options().timeout_seconds, 0);
  EXPECT_EQ(svc.score_group({[] { return scored(1); }})[0].status, Status::kScored);
}

}  // namespace
}  // namespace grpo::runtime
