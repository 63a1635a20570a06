#include "runtime/scoring_service.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "base/log.h"

namespace grpo::runtime {
namespace {

using Clock = std::chrono::steady_clock;

// Distinct keys with strikes below the quarantine threshold that are remembered; past this the
// table is cleared (strikes are forgotten, quarantined keys are kept).
constexpr std::size_t kMaxStrikeKeys = 1 << 16;

struct Task {
  enum class State { kQueued, kRunning, kDone, kAbandoned };
  ScoreJob job;
  State state = State::kQueued;  // guarded by Shared::mu
  Clock::time_point started;
  ScoreAttempt result;
  bool threw = false;
  std::string what;
  std::shared_ptr<std::condition_variable> waiter;  // notified on start and on completion
};

}  // namespace

struct ScoringService::Shared {
  std::mutex mu;
  std::condition_variable work_cv;  // workers: a task was queued, or stop
  std::condition_variable exit_cv;  // destructor: a live worker exited
  std::deque<std::shared_ptr<Task>> queue;
  bool stop = false;
  int live_workers = 0;  // started, not abandoned, not exited
  ScoringCounters counters;
  std::unordered_map<uint64_t, int> strikes;
  std::unordered_set<uint64_t> quarantine;
};

namespace {

void worker_main(std::shared_ptr<ScoringService::Shared> sh) {
  std::unique_lock<std::mutex> lk(sh->mu);
  for (;;) {
    sh->work_cv.wait(lk, [&] { return sh->stop || !sh->queue.empty(); });
    if (sh->stop) break;
    std::shared_ptr<Task> task = std::move(sh->queue.front());
    sh->queue.pop_front();
    if (task->state != Task::State::kQueued) continue;  // given up on while queued
    task->state = Task::State::kRunning;
    task->started = Clock::now();
    task->waiter->notify_all();
    lk.unlock();
    ScoreAttempt result;
    bool threw = false;
    std::string what;
    try {
      result = task->job();
    } catch (const std::exception& e) {
      threw = true;
      what = e.what();
    } catch (...) {
      threw = true;
      what = "unknown exception";
    }
    lk.lock();
    if (task->state == Task::State::kAbandoned) {
      // The caller gave up on this attempt and a replacement thread took this one's place.
      --sh->counters.stuck_threads;
      return;
    }
    task->state = Task::State::kDone;
    task->result = std::move(result);
    task->threw = threw;
    task->what = std::move(what);
    task->waiter->notify_all();
  }
  --sh->live_workers;
  sh->exit_cv.notify_all();
}

// Starts one worker; call with sh->mu held. False when no thread could be created.
bool spawn_worker(const std::shared_ptr<ScoringService::Shared>& sh) {
  ++sh->live_workers;
  try {
    std::thread(worker_main, sh).detach();
    return true;
  } catch (const std::system_error& e) {
    --sh->live_workers;
    GRPO_LOG(kError) << "scoring service: cannot start a thread: " << e.what();
    return false;
  }
}

ScoringOptions clamp_options(ScoringOptions o) {
  o.threads = std::clamp(o.threads, 1, 1024);
  if (!(o.timeout_seconds > 0) || !std::isfinite(o.timeout_seconds)) o.timeout_seconds = 10;
  o.timeout_seconds = std::clamp(o.timeout_seconds, 0.001, 86400.0);
  o.max_retries = std::clamp(o.max_retries, 0, 100);
  o.quarantine_after = std::max(o.quarantine_after, 1);
  return o;
}

}  // namespace

Status validate_scoring_options(const ScoringOptions& o) {
  if (o.threads < 1 || o.threads > 1024) return invalid_argument("threads: must be in 1..1024");
  if (!(o.timeout_seconds > 0) || !std::isfinite(o.timeout_seconds) || o.timeout_seconds > 86400)
    return invalid_argument("timeout_seconds: must be in (0, 86400]");
  if (o.max_retries < 0 || o.max_retries > 100) return invalid_argument("max_retries: must be in 0..100");
  if (o.quarantine_after < 1) return invalid_argument("quarantine_after: must be >= 1");
  return ok_status();
}

const char* sample_status_name(SampleOutcome::Status status) {
  switch (status) {
    case SampleOutcome::Status::kScored: return "scored";
    case SampleOutcome::Status::kTimeout: return "timeout";
    case SampleOutcome::Status::kCrashed: return "crashed";
    case SampleOutcome::Status::kInfraError: return "infra_error";
    case SampleOutcome::Status::kQuarantined: return "quarantined";
  }
  return "unknown";
}

uint64_t sample_key(const std::string& response, const std::string& gold) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](unsigned char c) {
    h ^= c;
    h *= 1099511628211ull;
  };
  for (unsigned char c : response) mix(c);
  mix(0xff);  // not valid UTF-8: separates response from gold unambiguously enough
  mix(0x00);
  for (unsigned char c : gold) mix(c);
  return h;
}

ScoringService::ScoringService(const ScoringOptions& options)
    : options_(clamp_options(options)), shared_(std::make_shared<Shared>()) {
  std::lock_guard<std::mutex> lk(shared_->mu);
  for (int i = 0; i < options_.threads; ++i) spawn_worker(shared_);
}

ScoringService::~ScoringService() {
  std::unique_lock<std::mutex> lk(shared_->mu);
  shared_->stop = true;
  shared_->work_cv.notify_all();
  shared_->exit_cv.wait(lk, [&] { return shared_->live_workers == 0; });
  // Abandoned workers still running keep `shared_` alive through their own reference.
}

ScoringCounters ScoringService::counters() const {
  std::lock_guard<std::mutex> lk(shared_->mu);
  ScoringCounters c = shared_->counters;
  c.quarantined_keys = shared_->quarantine.size();
  return c;
}

bool ScoringService::is_quarantined(uint64_t key) const {
  std::lock_guard<std::mutex> lk(shared_->mu);
  return shared_->quarantine.count(key) != 0;
}

std::vector<SampleOutcome> ScoringService::score_group(const std::vector<ScoreJob>& jobs,
                                                       const std::vector<uint64_t>& keys) {
  using S = SampleOutcome::Status;
  Shared& sh = *shared_;
  const std::size_t n = jobs.size();
  const bool use_keys = keys.size() == n;
  const auto timeout = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(options_.timeout_seconds));
  std::vector<SampleOutcome> out(n);
  std::vector<std::shared_ptr<Task>> tasks(n);
  std::vector<bool> done(n, false);
  auto waiter = std::make_shared<std::condition_variable>();

  std::unique_lock<std::mutex> lk(sh.mu);
  std::size_t pending = 0;
  auto enqueue = [&](std::size_t i) {
    auto t = std::make_shared<Task>();
    t->job = jobs[i];
    t->waiter = waiter;
    tasks[i] = t;
    sh.queue.push_back(std::move(t));
    ++out[i].attempts;
    sh.work_cv.notify_one();
  };
  // Ends sample i with a zero breakdown; timeouts and crashes are strikes against its key.
  auto fail = [&](std::size_t i, S status, std::string error) {
    out[i].status = status;
    out[i].breakdown = RewardBreakdown();
    out[i].error = std::move(error);
    done[i] = true;
    --pending;
    if (status == S::kTimeout) ++sh.counters.timeouts;
    if (status == S::kCrashed) ++sh.counters.crashes;
    if (status == S::kInfraError) ++sh.counters.infra_errors;
    if (use_keys && (status == S::kTimeout || status == S::kCrashed)) {
      if (sh.strikes.size() >= kMaxStrikeKeys) sh.strikes.clear();
      if (++sh.strikes[keys[i]] >= options_.quarantine_after) {
        sh.strikes.erase(keys[i]);
        sh.quarantine.insert(keys[i]);
      }
    }
  };

  for (std::size_t i = 0; i < n; ++i) {
    if (use_keys && sh.quarantine.count(keys[i])) {
      out[i].status = S::kQuarantined;
      out[i].error = "sample is quarantined (it timed out or crashed before)";
      done[i] = true;
      ++sh.counters.quarantined;
      continue;
    }
    ++pending;
    enqueue(i);
  }

  while (pending > 0) {
    const auto now = Clock::now();
    auto next = Clock::time_point::max();
    for (std::size_t i = 0; i < n; ++i) {
      if (done[i]) continue;
      Task& t = *tasks[i];
      if (t.state == Task::State::kDone) {
        if (t.threw) {
          fail(i, S::kCrashed, "scorer threw: " + t.what);
        } else if (t.result.infra_error) {
          if (out[i].attempts <= options_.max_retries) {
            ++sh.counters.retries;
            enqueue(i);
          } else {
            fail(i, S::kInfraError,
                 t.result.error.empty() ? std::string("infrastructure fault") : t.result.error);
          }
        } else {
          out[i].status = S::kScored;
          out[i].breakdown = std::move(t.result.breakdown);
          out[i].error = out[i].breakdown.error;
          done[i] = true;
          --pending;
          ++sh.counters.scored;
        }
      } else if (t.state == Task::State::kRunning) {
        const auto deadline = t.started + timeout;
        if (now >= deadline) {
          // Abandon the stuck thread (it exits when its job returns) and replace it.
          t.state = Task::State::kAbandoned;
          --sh.live_workers;
          ++sh.counters.stuck_threads;
          spawn_worker(shared_);
          char buf[96];
          std::snprintf(buf, sizeof(buf), "no result within %.3g s (scoring thread abandoned)",
                        options_.timeout_seconds);
          fail(i, S::kTimeout, buf);
        } else {
          next = std::min(next, deadline);
        }
      }
    }
    if (pending == 0) break;
    if (sh.live_workers == 0 && !spawn_worker(shared_)) {
      // No thread can run the queued attempts: give up on them rather than wait for ever.
      for (std::size_t i = 0; i < n; ++i) {
        if (done[i] || tasks[i]->state != Task::State::kQueued) continue;
        tasks[i]->state = Task::State::kAbandoned;
        fail(i, S::kInfraError, "no scoring thread could be started");
      }
      if (pending == 0) break;
    }
    if (next == Clock::time_point::max())
      waiter->wait(lk);
    else
      waiter->wait_until(lk, next);
  }
  return out;
}

}  // namespace grpo::runtime
