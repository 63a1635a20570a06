// Live scaling of a running cluster with grpoctl: `grpo up` runs the services as processes, the
// test scales generators 2 -> 4 -> 2 through the coordinator's admin socket, sees the change in
// `grpoctl members`, pauses the run and checks that no group was lost: once nothing is in flight,
// the buffer's count of scored groups equals the coordinator's count of completed leases.
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
using testing::lines_of;
using testing::read_file;
using testing::run_grpo;
using testing::source_dir;

std::string member_state(const nlohmann::json& reply, const std::string& role, int id, uint64_t* completed = nullptr) {
  if (!reply.contains("members")) return "";
  for (const auto& m : reply["members"]) {
    if (m.value("role", "") == role && m.value("id", -1) == id) {
      if (completed) *completed = m.value("leases_completed", uint64_t{0});
      return m.value("state", "");
    }
  }
  return "";
}

// Scales `role` from 2 to 4 and back to 2 during a run; ids 2 and 3 must come up (generators must
// also have completed leases), then retire and exit 0; after a pause, nothing may be in flight and
// the buffer's scored groups must equal the completed leases.
void scale_two_four_two(const std::string& role) {
  const std::string dir = ::testing::TempDir() + "grpo_cluster_scale_" + role + std::to_string(::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string admin = "ipc://" + dir + "/sock.admin";
  // Many steps: the test stops the run itself (SIGINT) once it has seen what it needs.
  std::vector<std::string> args = {"up", "--config", source_dir() + "/configs/cluster-local.toml", "run.dir=" + dir,
                                   "run.endpoint_prefix=ipc://" + dir + "/sock", "model.dim=32", "model.layers=1",
                                   "model.ffn_hidden=64", "sft.steps=3", "sft.batch_size=8", "grpo.steps=5000",
                                   "grpo.group_size=4", "grpo.groups_per_step=2", "generator.batch_groups=1",
                                   "task.eval_prompts=8", "task.eval_samples=1", "checkpoint.every=1000"};
  enum Phase { kWarmUp, kScaledUp, kScaledDown, kPaused, kStopping } phase = kWarmUp;
  const auto start = std::chrono::steady_clock::now();
  auto last_poll = start;
  auto phase_start = start;
  std::string failure;
  std::string members_at_four, members_at_two;
  uint64_t stored = 0, completed = 0, stable_polls = 0;
  auto r = run_grpo(args, dir + ".log", [&](pid_t up) {
    const auto now = std::chrono::steady_clock::now();
    if (phase == kStopping) return false;
    if (now - start > std::chrono::minutes(4)) {
      failure = "timed out in phase " + std::to_string(phase);
      kill(up, SIGINT);
      phase = kStopping;
      return false;
    }
    if (now - last_poll < std::chrono::milliseconds(700)) return true;
    last_poll = now;
    switch (phase) {
      case kWarmUp:
        if (fs::exists(dir + "/metrics.jsonl") && lines_of(dir + "/metrics.jsonl") >= 2) {
          Ctl c = grpoctl(admin, "scale " + role + " 4");
          if (c.exit_code != 0) failure += "scale 4: " + c.out;
          phase = kScaledUp;
          phase_start = now;
        }
        break;
      case kScaledUp: {
        Ctl c = grpoctl(admin, "members --json");
        uint64_t done2 = 0, done3 = 0;
        // Verifiers report no lease counts: they get a few seconds of routed groups instead.
        if (member_state(c.json, role, 2, &done2) == "up" && member_state(c.json, role, 3, &done3) == "up" &&
            (role == "generator" ? done2 > 0 && done3 > 0 : now - phase_start > std::chrono::seconds(4))) {
          members_at_four = grpoctl(admin, "members").out;
          Ctl d = grpoctl(admin, "scale " + role + " 2");
          if (d.exit_code != 0) failure += "scale 2: " + d.out;
          phase = kScaledDown;
          phase_start = now;
        }
        break;
      }
      case kScaledDown: {
        Ctl c = grpoctl(admin, "members --json");
        const std::string log = read_file(dir + ".log");
        if (member_state(c.json, role, 2) == "retired" && member_state(c.json, role, 3) == "retired" &&
            log.find(role + " 2 exited with status 0") != std::string::npos &&
            log.find(role + " 3 exited with status 0") != std::string::npos) {
          members_at_two = grpoctl(admin, "members").out;
          Ctl p = grpoctl(admin, "pause");
          if (p.exit_code != 0) failure += "pause: " + p.out;
          phase = kPaused;
          phase_start = now;
        }
        break;
      }
      case kPaused: {
        // Work in flight drains; the buffer reports its count every second.
        Ctl c = grpoctl(admin, "status --json");
        if (c.json.is_object() && c.json.value("leases_in_flight", uint64_t{1}) == 0) {
          const uint64_t s = c.json.value("groups_stored", uint64_t{0});
          const uint64_t l = c.json.value("leases_completed", uint64_t{0});
          stable_polls = (s == stored && l == completed) ? stable_polls + 1 : 0;
          stored = s;
          completed = l;
          if (c.json.value("run_state", "") != "paused") failure += "run state is not paused: " + c.out;
        }
        if (stable_polls >= 4 || now - phase_start > std::chrono::seconds(40)) {
          kill(up, SIGINT);  // learner 0 checkpoints, then `up` stops everything
          phase = kStopping;
          return false;
        }
        break;
      }
      case kStopping:
        break;
    }
    return true;
  });
  EXPECT_TRUE(failure.empty()) << failure << "\n" << r.output;
  EXPECT_EQ(phase, kStopping) << r.output;
  EXPECT_EQ(r.exit_code, 130) << r.output;  // stopped by SIGINT after a checkpoint
  const std::string padded = role + std::string(12 - role.size(), ' ');  // grpoctl's ROLE column
  for (int id : {2, 3})
    EXPECT_NE(r.output.find("scaled up: started " + role + " " + std::to_string(id)), std::string::npos) << r.output;
  EXPECT_NE(members_at_four.find(padded + "    3  up"), std::string::npos) << members_at_four;
  EXPECT_NE(members_at_two.find(padded + "    3  retired"), std::string::npos) << members_at_two;
  EXPECT_NE(members_at_two.find(padded + "    1  up"), std::string::npos) << members_at_two;
  // No group lost: every completed lease is a scored group in the buffer, and work was done.
  EXPECT_GT(completed, 0u);
  EXPECT_EQ(stored, completed) << "buffer stored " << stored << " groups for " << completed << " completed leases";
  std::printf("%ss paused after 2 -> 4 -> 2: buffer %llu scored groups, coordinator %llu completed leases\n%s%s",
              role.c_str(), static_cast<unsigned long long>(stored), static_cast<unsigned long long>(completed),
              members_at_four.c_str(), members_at_two.c_str());
  fs::remove_all(dir);
  fs::remove(dir + ".log");
}

TEST(ClusterScaleTest, GeneratorsScaleTwoToFourToTwoWithoutLosingAGroup) { scale_two_four_two("generator"); }

TEST(ClusterScaleTest, VerifiersScaleTwoToFourToTwoWithoutLosingAGroup) { scale_two_four_two("verifier"); }

TEST(ClusterScaleTest, GrpoctlSaysClearlyWhenNoCoordinatorListens) {
  const std::string dir = ::testing::TempDir() + "grpo_cluster_nobody_" + std::to_string(::getpid());
  Ctl c = grpoctl("ipc://" + dir + "/sock.admin", "status");
  EXPECT_EQ(c.exit_code, 1);
  EXPECT_NE(c.out.find("cannot reach the coordinator"), std::string::npos) << c.out;
  // A tcp endpoint nobody answers: the request times out with the same message.
  Ctl t = grpoctl("tcp://127.0.0.1:9", "members --json");
  EXPECT_EQ(t.exit_code, 1);
  EXPECT_NE(t.out.find("cannot reach the coordinator"), std::string::npos) << t.out;
  Ctl bad = grpoctl("ipc://" + dir + "/x", "scale learner 3");
  EXPECT_EQ(bad.exit_code, 2) << bad.out;
}

}  // namespace
}  // namespace grpo
