// Storage acknowledgement end to end: a verifier killed (SIGKILL) under `grpo up` with scored
// groups still in its queue loses no group. To be sure the queue holds groups when it dies, the
// verifier is first stopped (SIGSTOP) until the coordinator reports finished leases awaiting storage;
// the groups routed to it pile up in its socket meanwhile and die with it. `grpo up` restarts it, the
// coordinator sees the new epoch and re-issues those leases, and the run goes on. A pause then lets
// everything in flight drain: the buffer's count of scored groups must equal the coordinator's count
// of completed leases (as in cluster_scale_test). After a resume the run completes all its steps.
// Real processes, real sockets, real RocksDB.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cluster_util.h"
#include "run_grpo.h"

namespace grpo {
namespace {
namespace fs = std::filesystem;
using testing::app_binary;
using testing::Ctl;
using testing::grpoctl;
using testing::ctl_field;
using testing::find_service;
using testing::lines_of;
using testing::read_file;
using testing::run_grpo;
using testing::source_dir;

TEST(ClusterVerifierKillTest, AVerifierKilledWithGroupsInItsQueueLosesNoGroup) {
  const std::string dir = ::testing::TempDir() + "grpo_cluster_vkill_" + std::to_string(::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string admin = "ipc://" + dir + "/sock.admin";
  // Enough steps that the pause below comes well before the end even on a fast machine (the run
  // does tens of steps a second there once it is going).
  const int steps = 60;
  const std::vector<std::string> args = {
      "up", "--config", source_dir() + "/configs/cluster-local.toml", "run.dir=" + dir,
      "run.endpoint_prefix=ipc://" + dir + "/sock", "model.dim=32", "model.layers=1", "model.ffn_hidden=64",
      "sft.steps=3", "sft.batch_size=8", "grpo.steps=" + std::to_string(steps), "grpo.group_size=4",
      "grpo.groups_per_step=2", "generator.batch_groups=1", "task.eval_prompts=8", "task.eval_samples=1",
      "checkpoint.every=1000"};
  enum Phase { kWarmUp, kStopped, kKilled, kPaused, kResumed } phase = kWarmUp;
  const auto start = std::chrono::steady_clock::now();
  auto last_poll = start, phase_start = start;
  pid_t victim = -1;
  int steps_at_kill = 0;
  uint64_t awaiting_at_kill = 0, stored = 0, completed = 0, stable_polls = 0;
  std::string failure;
  auto r = run_grpo(args, dir + ".log", [&](pid_t up) {
    const auto now = std::chrono::steady_clock::now();
    if (now - start > std::chrono::minutes(3)) {
      failure = "timed out in phase " + std::to_string(phase);
      if (victim > 0) kill(victim, SIGCONT);
      kill(up, SIGINT);  // learner 0 checkpoints, then `up` stops everything
      return false;
    }
    // Called every 100 ms; the cheap checks (files) run each time, grpoctl at most every 300 ms.
    const bool may_ask = now - last_poll >= std::chrono::milliseconds(300);
    const int done_steps = lines_of(dir + "/metrics.jsonl");
    switch (phase) {
      case kWarmUp:
        if (done_steps >= 3) {
          victim = find_service(up, "verifier", "0");
          if (victim > 0 && kill(victim, SIGSTOP) == 0) {
            phase = kStopped;
            phase_start = now;
          }
        }
        break;
      case kStopped: {
        if (!may_ask) break;
        last_poll = now;
        // The generators keep finishing groups; those routed to verifier 0 cannot be stored.
        const uint64_t awaiting = ctl_field(grpoctl(admin, "status --json"), "leases_awaiting_storage", 0);
        if ((now - phase_start > std::chrono::seconds(3) && awaiting > 0) || now - phase_start > std::chrono::seconds(15)) {
          kill(victim, SIGKILL);
          awaiting_at_kill = awaiting;
          steps_at_kill = done_steps;
          phase = kKilled;
          phase_start = now;
        }
        break;
      }
      case kKilled:
        // The restarted verifier's first heartbeat shows a new epoch: its leases are re-issued, and
        // the run moves on.
        if (read_file(dir + "/logs/coordinator-0.log").find("verifier 0 restarted; ") != std::string::npos &&
            done_steps >= steps_at_kill + 2) {
          Ctl p = grpoctl(admin, "pause");
          if (p.exit_code != 0) failure += "pause: " + p.out;
          phase = kPaused;
          phase_start = now;
        }
        break;
      case kPaused: {
        if (!may_ask) break;
        last_poll = now;
        // In flight (leases with generators, awaiting storage, re-issued) drains to nothing; then the
        // counts must agree and hold still.
        Ctl c = grpoctl(admin, "status --json");
        if (c.json.is_object() && c.json.value("run_state", "") != "paused")
          failure += "run state is not paused (the run ended first?): " + c.out;
        if (ctl_field(c, "leases_in_flight", 1) == 0) {
          const uint64_t s = ctl_field(c, "groups_stored", 0), l = ctl_field(c, "leases_completed", 0);
          stable_polls = (s == stored && l == completed) ? stable_polls + 1 : 0;
          stored = s;
          completed = l;
        }
        const bool timed_out = now - phase_start > std::chrono::seconds(40);
        if (timed_out) failure += "nothing in flight never held still while paused: " + c.out;
        if (stable_polls >= 3 || timed_out) {
          Ctl resumed = grpoctl(admin, "resume");
          if (resumed.exit_code != 0) failure += "resume: " + resumed.out;
          phase = kResumed;
        }
        break;
      }
      case kResumed:
        break;  // the run finishes by itself
    }
    return true;
  });
  const std::string coordinator_log = read_file(dir + "/logs/coordinator-0.log");
  EXPECT_TRUE(failure.empty()) << failure << "\n" << r.output << "\ncoordinator:\n" << coordinator_log;
  EXPECT_EQ(phase, kResumed);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_GT(awaiting_at_kill, 0u) << "verifier 0 was killed with nothing awaiting storage";
  char last_step[32];
  std::snprintf(last_step, sizeof(last_step), "step %4d/%d", steps, steps);  // the learner's progress line
  for (const std::string& needle : {std::string("verifier 0 exited with status 137; restarting it"), std::string(last_step),
                                   std::string("pass@1")})
    EXPECT_NE(r.output.find(needle), std::string::npos) << "missing '" << needle << "' in\n" << r.output;
  EXPECT_EQ(lines_of(dir + "/metrics.jsonl"), steps);
  EXPECT_NE(coordinator_log.find("verifier 0 restarted; "), std::string::npos) << coordinator_log;
  EXPECT_EQ(coordinator_log.find("never issued"), std::string::npos) << coordinator_log;
  // No group lost: every completed lease is a scored group in the buffer.
  EXPECT_GT(completed, 0u);
  EXPECT_EQ(stored, completed) << "buffer stored " << stored << " groups for " << completed << " completed leases";
  std::printf("verifier 0 killed at step %d with %llu lease(s) awaiting storage; paused: buffer %llu scored groups, "
              "coordinator %llu completed leases\n",
              steps_at_kill, static_cast<unsigned long long>(awaiting_at_kill), static_cast<unsigned long long>(stored),
              static_cast<unsigned long long>(completed));
  if (!HasFailure()) {
    fs::remove_all(dir);
    fs::remove(dir + ".log");
  }
}

}  // namespace
}  // namespace grpo
