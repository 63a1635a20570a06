// ScoringService: a small thread pool that scores reward samples under a per-sample wall-clock
// deadline, with retries of infrastructure faults and quarantine of samples that keep hanging or
// crashing. The verifier role owns one; it is pure C++ (no LibTorch) and knows nothing about the
// reward kinds: a sample is a job, a function that returns a ScoreAttempt.
//
// Rules (per sample):
//   - An attempt runs on a pool thread. One that is still running timeout_seconds after it
//     started yields kTimeout with an all-zero breakdown. It is never retried (a program that
//     hangs once hangs again).
//   - An attempt that throws yields kCrashed with an all-zero breakdown (the exception text in
//     `error`). Never retried.
//   - An attempt that reports an infrastructure fault (ScoreAttempt::infra_error, e.g. the code
//     sandbox could not start: CodeVerdict::kError) is run again, up to max_retries more times;
//     after the last one the sample is kInfraError with an all-zero breakdown. A wrong answer
//     (reward 0, no infra_error) is an answer: kScored, never retried. So is a sample the reward
//     refuses (breakdown.error set, e.g. an empty gold): kScored, total 0, `error` says why.
//   - A sample key (sample_key(response, gold)) that ended kTimeout or kCrashed quarantine_after
//     times is quarantined: from then on a submission of that key is kQuarantined at once, with an
//     all-zero breakdown, and its job is not run. Keys are optional (pass none to opt out).
//
// Hung threads: C++ cannot stop a thread. A worker whose attempt passed its deadline is
// *abandoned*: the service stops waiting for it and starts a replacement thread at once, so it
// keeps serving `threads` samples at a time. The abandoned (detached) thread finishes its job
// whenever the job returns, drops the result, and exits; stuck_threads() counts those still
// running. Consequently a job must own what it touches (capture by value or shared_ptr): it may
// outlive the score_group() call that submitted it and even the service itself. Jobs that can hang
// for ever leak one thread each; quarantine bounds that to quarantine_after per distinct sample.
// A job that holds a process-wide lock when it hangs (math_equal's GiNaC mutex) still blocks the
// jobs that need that lock; they time out in turn.
//
// Caller blocking: score_group() returns when every sample has an outcome. No sample holds it
// past (1 + max_retries) * timeout_seconds after its attempts start running, plus scheduling
// slack; with more samples than threads, samples also wait for a free thread.
//
// Thread safety: every public method may be called from any thread, score_group() from several
// at once (their samples share the pool). Destroy the service only when no call is in flight;
// the destructor joins idle workers and leaves abandoned ones running detached.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/rewards.h"

namespace grpo::runtime {

struct ScoringOptions {
  int threads = 1;               // pool threads (samples scored at once), >= 1
  double timeout_seconds = 10;   // wall-clock deadline of one attempt, > 0
  int max_retries = 2;           // re-runs of an attempt that reported an infrastructure fault
  int quarantine_after = 2;      // timeouts + crashes of one sample key before quarantine, >= 1
};

// OK, or InvalidArgument naming the first field out of range.
Status validate_scoring_options(const ScoringOptions& options);

// What one run of a job returns.
struct ScoreAttempt {
  RewardBreakdown breakdown;
  // The scorer's infrastructure failed (not the sample's fault): retry. `error` says why.
  bool infra_error = false;
  std::string error;
};

using ScoreJob = std::function<ScoreAttempt()>;

struct SampleOutcome {
  enum class Status { kScored, kTimeout, kCrashed, kInfraError, kQuarantined };
  RewardBreakdown breakdown;  // all zero unless kScored
  Status status = Status::kScored;
  int attempts = 0;           // runs started (0 for kQuarantined)
  std::string error;          // why, for every status but a clean kScored
};

// "scored", "timeout", "crashed", "infra_error", "quarantined".
const char* sample_status_name(SampleOutcome::Status status);

// A stable 64-bit key of a sample (FNV-1a of response, a separator, and gold).
uint64_t sample_key(const std::string& response, const std::string& gold);

struct ScoringCounters {
  uint64_t scored = 0;       // samples that ended kScored
  uint64_t timeouts = 0;     // samples that ended kTimeout
  uint64_t crashes = 0;      // samples that ended kCrashed
  uint64_t infra_errors = 0; // samples that ended kInfraError (retries exhausted)
  uint64_t retries = 0;      // attempts re-run after an infrastructure fault
  uint64_t quarantined = 0;  // submissions answered kQuarantined without running
  uint64_t quarantined_keys = 0;  // distinct keys in quarantine now
  uint64_t stuck_threads = 0;     // abandoned threads whose job has not returned yet
};

class ScoringService {
 public:
  // Options out of range are clamped into range (validate_scoring_options() reports them).
  explicit ScoringService(const ScoringOptions& options);
  ~ScoringService();
  ScoringService(const ScoringService&) = delete;
  ScoringService& operator=(const ScoringService&) = delete;

  // Scores jobs[i] into outcome i. `keys` is empty (no quarantine) or one key per job.
  // Never throws on account of a job.
  std::vector<SampleOutcome> score_group(const std::vector<ScoreJob>& jobs,
                                         const std::vector<uint64_t>& keys = {});

  ScoringCounters counters() const;
  const ScoringOptions& options() const { return options_; }
  bool is_quarantined(uint64_t key) const;

  struct Shared;  // pool state shared with the (possibly detached) worker threads

 private:
  ScoringOptions options_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace grpo::runtime
