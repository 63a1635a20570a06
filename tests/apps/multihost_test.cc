// Multi-host: the services of one run on five "hosts", network namespaces joined by veth pairs into
// a bridge (iproute2), each role reached at its own address through run.hosts. Needs root; skipped
// with a message otherwise. Real processes, real tcp:// sockets across namespaces.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "run_grpo.h"

namespace grpo {
namespace {
namespace fs = std::filesystem;
using testing::app_binary;
using testing::grpo_binary;
using testing::read_file;
using testing::source_dir;

int sh(const std::string& cmd) {
  const int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// Forks `argv` with stdout and stderr in `log`; returns the child's pid.
pid_t spawn(const std::vector<std::string>& argv, const std::string& log) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "w", stdout);
    (void)f;
    dup2(fileno(stdout), STDERR_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  return pid;
}

// The namespaces, links and processes of the test; everything is undone on destruction, also when
// an assertion fails half-way.
struct Hosts {
  std::string tag;                 // "gm<pid>"
  std::vector<std::string> netns;  // switch first, then h1..h5
  std::map<pid_t, std::string> procs;
  ~Hosts() {
    for (const auto& [pid, name] : procs) kill(pid, SIGKILL);
    for (const auto& [pid, name] : procs) waitpid(pid, nullptr, 0);
    for (const auto& ns : netns) sh("ip netns del " + ns);
    for (int h = 1; h <= 5; ++h) sh("ip link del " + tag + "a" + std::to_string(h));
  }
};

std::string net_ns_of(pid_t pid) {
  std::error_code ec;
  return fs::read_symlink("/proc/" + std::to_string(pid) + "/ns/net", ec).string();
}

TEST(MultiHostTest, FiveHostsInNetworkNamespacesTrainOverTcp) {
  if (geteuid() != 0) GTEST_SKIP() << "multihost_test needs root (ip netns, veth pairs); skipped";
  const int pid = static_cast<int>(::getpid());
  Hosts hosts;
  hosts.tag = "gm" + std::to_string(pid);
  const std::string sw = hosts.tag + "s";
  if (sh("ip netns add " + sw) != 0)
    GTEST_SKIP() << "`ip netns add` failed (no iproute2 or no CAP_SYS_ADMIN here); skipped";
  hosts.netns.push_back(sw);
  // 10.A.B.0/24, chosen from the pid so that concurrent runs do not share a subnet.
  const std::string net = "10." + std::to_string(200 + pid % 50) + "." + std::to_string((pid / 50) % 250) + ".";
  auto addr = [&](int h) { return net + std::to_string(h); };
  ASSERT_EQ(sh("ip -n " + sw + " link add br0 type bridge && ip -n " + sw + " link set br0 up && ip -n " + sw +
               " link set lo up"),
            0);
  for (int h = 1; h <= 5; ++h) {
    const std::string ns = hosts.tag + "h" + std::to_string(h);
    const std::string a = hosts.tag + "a" + std::to_string(h), b = hosts.tag + "b" + std::to_string(h);
    ASSERT_EQ(sh("ip netns add " + ns), 0) << ns;
    hosts.netns.push_back(ns);
    ASSERT_EQ(sh("ip link add " + a + " type veth peer name " + b), 0) << a;
    ASSERT_EQ(sh("ip link set " + a + " netns " + ns + " && ip link set " + b + " netns " + sw), 0) << a;
    ASSERT_EQ(sh("ip -n " + sw + " link set " + b + " master br0 && ip -n " + sw + " link set " + b + " up"), 0) << b;
    ASSERT_EQ(sh("ip -n " + ns + " link set " + a + " name eth0 && ip -n " + ns + " addr add " + addr(h) +
                 "/24 dev eth0 && ip -n " + ns + " link set eth0 up && ip -n " + ns + " link set lo up"),
              0)
        << ns;
  }
  auto ns_of = [&](int h) { return hosts.tag + "h" + std::to_string(h); };
  const std::string dir = ::testing::TempDir() + "grpo_multihost_" + std::to_string(pid);
  fs::remove_all(dir);
  fs::create_directories(dir);
  const int port = 7000;
  const std::string hosts_spec = "coordinator=" + addr(1) + ",broadcaster=" + addr(1) + ",verifier=" + addr(1) +
                                 ",buffer=" + addr(2) + ",learner=" + addr(3) + ",generator.0=" + addr(4) +
                                 ",generator.1=" + addr(5);
  const std::vector<std::string> overrides = {
      "run.dir=" + dir + "/run", "run.endpoint_prefix=tcp://" + addr(1) + ":" + std::to_string(port),
      "run.hosts=" + hosts_spec, "model.dim=32", "model.layers=1", "model.ffn_hidden=64", "sft.steps=3",
      "sft.batch_size=8", "grpo.steps=20", "grpo.group_size=4", "grpo.groups_per_step=2",
      "generator.batch_groups=1", "generator.replicas=2", "verifier.replicas=1", "task.eval_prompts=8",
      "task.eval_samples=1"};
  struct Service {
    std::string role;
    int id;
    int host;
  };
  const std::vector<Service> services = {{"coordinator", 0, 1}, {"buffer", 0, 2},    {"broadcaster", 0, 1},
                                         {"verifier", 0, 1},    {"generator", 0, 4}, {"generator", 1, 5},
                                         {"learner", 0, 3}};
  std::map<std::string, pid_t> pid_of;
  auto log_of = [&](const std::string& name) { return dir + "/" + name + ".log"; };
  for (const auto& s : services) {
    std::vector<std::string> argv = {"ip",  "netns",  "exec", ns_of(s.host), grpo_binary(), "serve", "--config",
                                     source_dir() + "/configs/cluster-local.toml", "--role", s.role, "--id",
                                     std::to_string(s.id)};
    argv.insert(argv.end(), overrides.begin(), overrides.end());
    const std::string name = s.role + "-" + std::to_string(s.id);
    const pid_t p = spawn(argv, log_of(name));
    ASSERT_GT(p, 0);
    hosts.procs[p] = name;
    pid_of[name] = p;
  }

  // Until the learner exits: poll the coordinator's admin socket on host 1 (from host 1) for the
  // generators' completed leases.
  const std::string admin = "tcp://" + addr(1) + ":" + std::to_string(port + 2);
  std::string last_status;
  std::map<std::string, std::string> ns_inode;  // captured while the services run
  int learner_status = -1;
  bool learner_done = false;
  std::map<int, uint64_t> most_completed;  // generator id -> leases completed, highest seen
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  auto next_poll = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() < deadline) {
    for (const auto& [name, p] : pid_of)  // the latest: right after fork the child is not yet in its namespace
      if (std::string v = net_ns_of(p); !v.empty()) ns_inode[name] = v;
    if (waitpid(pid_of["learner-0"], &learner_status, WNOHANG) == pid_of["learner-0"]) {
      learner_done = true;
      hosts.procs.erase(pid_of["learner-0"]);
      break;
    }
    if (std::chrono::steady_clock::now() >= next_poll) {
      next_poll = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
      const pid_t ctl = spawn({"ip", "netns", "exec", ns_of(1), app_binary("grpoctl"), "--endpoint", admin, "--json",
                               "--timeout-ms", "1500", "status"},
                              dir + "/grpoctl.out");
      int st = 0;
      waitpid(ctl, &st, 0);
      const std::string out = read_file(dir + "/grpoctl.out");
      if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && out.find("\"members\"") != std::string::npos) {
        last_status = out;
        // The most each generator was seen to complete (the last poll may come after it stopped).
        auto j = nlohmann::json::parse(out, nullptr, false);
        if (!j.is_discarded())
          for (const auto& m : j["members"])
            if (m["role"] == "generator")
              most_completed[m["id"].get<int>()] =
                  std::max(most_completed[m["id"].get<int>()], m["leases_completed"].get<uint64_t>());
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (const auto& [p, name] : hosts.procs) kill(p, SIGTERM);
  for (auto it = hosts.procs.begin(); it != hosts.procs.end();) {
    int st = 0;
    for (int i = 0; i < 100 && waitpid(it->first, &st, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (waitpid(it->first, &st, WNOHANG) == 0) {  // still running after 10 s: left to ~Hosts
      ++it;
      continue;
    }
    it = hosts.procs.erase(it);
  }

  const std::string learner_log = read_file(log_of("learner-0"));
  ASSERT_TRUE(learner_done) << "learner 0 did not finish within 120 s:\n" << learner_log;
  ASSERT_TRUE(WIFEXITED(learner_status) && WEXITSTATUS(learner_status) == 0) << learner_log;
  EXPECT_NE(learner_log.find("step   20/20"), std::string::npos) << learner_log;
  for (const char* g : {"generator-0", "generator-1"}) {
    const std::string text = read_file(log_of(g));
    EXPECT_NE(text.find(": up ("), std::string::npos) << g << ":\n" << text;
  }
  // Each generator completed leases, as the coordinator counted them.
  ASSERT_FALSE(last_status.empty()) << "no status from the coordinator's admin socket at " << admin;
  auto j = nlohmann::json::parse(last_status, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << last_status;
  EXPECT_GT(most_completed[0], 0u) << last_status;
  EXPECT_GT(most_completed[1], 0u) << last_status;
  // The services really ran on different hosts: one network namespace per host, none the test's.
  const std::string mine = net_ns_of(::getpid());
  for (const auto& s : services) {
    const std::string name = s.role + "-" + std::to_string(s.id);
    EXPECT_FALSE(ns_inode[name].empty()) << name;
    EXPECT_NE(ns_inode[name], mine) << name << " ran in the test's own network namespace";
  }
  EXPECT_NE(ns_inode["coordinator-0"], ns_inode["buffer-0"]);
  EXPECT_NE(ns_inode["buffer-0"], ns_inode["learner-0"]);
  EXPECT_NE(ns_inode["generator-0"], ns_inode["generator-1"]);
  EXPECT_NE(ns_inode["generator-0"], ns_inode["learner-0"]);
  EXPECT_EQ(ns_inode["coordinator-0"], ns_inode["verifier-0"]);
  if (!HasFailure()) fs::remove_all(dir);
}

}  // namespace
}  // namespace grpo
