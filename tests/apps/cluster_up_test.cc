// `grpo up`: every role of a run as its own process over ipc:// sockets, supervised; a service
// killed with SIGKILL is restarted, the leases it held are re-issued, and the run still completes.
// The coordinator killed mid-run restarts from its RocksDB state and the run goes on.
// Real processes, real sockets.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>

#include "cluster_util.h"
#include "run_grpo.h"

namespace grpo {
namespace {
namespace fs = std::filesystem;
using testing::find_service;
using testing::read_file;
using testing::lines_of;
using testing::run_grpo;
using testing::source_dir;

std::vector<std::string> up_args(const std::string& dir, int steps) {
  return {"up", "--config", source_dir() + "/configs/cluster-local.toml", "run.dir=" + dir,
          "run.endpoint_prefix=ipc://" + dir + "/sock", "model.dim=32", "model.layers=1",
          "model.ffn_hidden=64", "sft.steps=3", "sft.batch_size=8", "grpo.steps=" + std::to_string(steps),
          "grpo.group_size=4", "grpo.groups_per_step=2", "generator.batch_groups=1", "task.eval_prompts=8",
          "task.eval_samples=1", "checkpoint.every=5"};
}

TEST(ClusterUpTest, EightServicesTrainAndKilledGeneratorAndCoordinatorAreRestarted) {
  const std::string dir = ::testing::TempDir() + "grpo_cluster_up_" + std::to_string(::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  bool killed = false, coordinator_killed = false;
  auto r = run_grpo(up_args(dir, 30), dir + ".log", [&](pid_t up) {
    const int steps = fs::exists(dir + "/metrics.jsonl") ? lines_of(dir + "/metrics.jsonl") : 0;
    if (!killed && steps >= 3) {
      const pid_t gen = find_service(up, "generator", "0");
      if (gen > 0) {
        kill(gen, SIGKILL);
        killed = true;
      }
    }
    if (killed && !coordinator_killed && steps >= 12) {
      const pid_t coordinator = find_service(up, "coordinator", "0");
      if (coordinator > 0) {
        kill(coordinator, SIGKILL);
        coordinator_killed = true;
      }
    }
    return true;
  });
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(killed) << r.output;
  EXPECT_TRUE(coordinator_killed) << r.output;
  for (const char* needle : {"grpo up: 8 services", "step   30/30", "generator 0 exited with status 137; restarting it",
                             "coordinator 0 exited with status 137; restarting it", "pass@1"})
    EXPECT_NE(r.output.find(needle), std::string::npos) << "missing '" << needle << "' in\n" << r.output;
  EXPECT_EQ(lines_of(dir + "/metrics.jsonl"), 30);
  for (const char* log : {"coordinator-0", "buffer-0", "broadcaster-0", "verifier-0", "verifier-1", "generator-0",
                          "generator-1"}) {
    const std::string text = read_file(dir + "/logs/" + log + ".log");
    EXPECT_NE(text.find(": up ("), std::string::npos) << log << ":\n" << text;
  }
  EXPECT_TRUE(fs::exists(dir + "/checkpoints/step-00000030/model.safetensors"));
  // The restarted coordinator continued from its store: its second start reports leases already
  // issued and a prompt cursor past 0.
  const std::string coordinator_log = read_file(dir + "/logs/coordinator-0.log");
  const size_t second = coordinator_log.find("coordinator: up (epoch", coordinator_log.find("coordinator: up (epoch") + 1);
  ASSERT_NE(second, std::string::npos) << coordinator_log;
  const std::string restart_line = coordinator_log.substr(second, coordinator_log.find('\n', second) - second);
  EXPECT_EQ(restart_line.find("prompt cursor 0,"), std::string::npos) << restart_line;
  EXPECT_EQ(restart_line.find(" 0 leases issued"), std::string::npos) << restart_line;
  fs::remove_all(dir);
}

TEST(ClusterUpTest, InProcessEndpointsAreRefusedWithTheKey) {
  const std::string dir = ::testing::TempDir() + "grpo_cluster_inproc_" + std::to_string(::getpid());
  auto args = up_args(dir, 1);
  args.push_back("run.endpoint_prefix=inproc://grpo");
  auto r = run_grpo(args, dir + ".log");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("run.endpoint_prefix: 'inproc://grpo' is in-process only"), std::string::npos) << r.output;
  // Learners, like the buffer and coordinator, are exactly the config's; generators and verifiers
  // may be scaled while the run is live, up to the id range their ports allow.
  auto s = run_grpo({"serve", "--config", source_dir() + "/configs/cluster-local.toml", "--role", "learner", "--id",
                     "7", "run.dir=" + dir},
                    dir + ".log2");
  EXPECT_EQ(s.exit_code, 2) << s.output;
  EXPECT_NE(s.output.find("learner 7 does not exist: the config has 1"), std::string::npos) << s.output;
  auto g = run_grpo({"serve", "--config", source_dir() + "/configs/cluster-local.toml", "--role", "generator", "--id",
                     "400", "run.dir=" + dir},
                    dir + ".log4");
  EXPECT_EQ(g.exit_code, 2) << g.output;
  EXPECT_NE(g.output.find("generator 400 is out of range: ids go from 0 to 399"), std::string::npos) << g.output;
  auto t = run_grpo({"serve", "--config", source_dir() + "/configs/cluster-local.toml", "--role", "trainer",
                     "run.dir=" + dir},
                    dir + ".log3");
  EXPECT_EQ(t.exit_code, 2) << t.output;
  EXPECT_NE(t.output.find("unknown role 'trainer'"), std::string::npos) << t.output;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace grpo
