// Cluster mode from the command line.
//   `grpo serve --config FILE --role ROLE [--id N] [key=value ...]`: one role as this process
//     (actors/service.h).
//   `grpo up --config FILE [key=value ...]`: every service of the config as local child processes
//     (`grpo serve` of this same binary): 1 coordinator, 1 buffer, the broadcasters, verifiers,
//     generators and learners the config counts. Learner 0 writes to this terminal; every other
//     service to <run.dir>/logs/ROLE-ID.log. A service that dies (crash, kill -9) is restarted, at
//     most 5 times per service, after a second. When learner 0 exits the others are stopped
//     (SIGTERM) and `up` exits with learner 0's status. SIGINT or SIGTERM: learner 0 checkpoints
//     and exits, then the rest are stopped.
//     Scaling: every second `up` asks the coordinator's admin socket for the wanted generator and
//     verifier counts (grpoctl scale) and starts the missing ones; the coordinator retires extra
//     ones after they drain, and a service that exits 0 that way is not restarted.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "actors/embedded_run.h"
#include "cluster/admin.h"
#include "cluster/codec.h"
#include "actors/run_config.h"
#include "actors/service.h"
#include "apps/commands.h"
#include "base/config.h"

namespace grpo::apps {
namespace {
namespace fs = std::filesystem;

struct ServeArgs {
  std::string config_path, role;
  int id = 0;
  std::vector<std::string> overrides;
};

std::atomic<int> g_up_signals{0};
void on_up_signal(int) { g_up_signals.fetch_add(1); }

struct Child {
  std::string role;
  int id = 0;
  pid_t pid = -1;
  int restarts = 0;
  bool exited = false;
};

pid_t spawn_service(const ServeArgs& a, const std::string& role, int id, const std::string& log_path) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  // Child: own stdout/stderr unless it is learner 0.
  if (!log_path.empty()) {
    int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
  }
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  std::vector<std::string> args = {"grpo", "serve", "--config", a.config_path, "--role", role, "--id", std::to_string(id)};
  for (const auto& o : a.overrides) args.push_back(o);
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  execv("/proc/self/exe", argv.data());
  std::fprintf(stderr, "error: cannot run /proc/self/exe: %s\n", std::strerror(errno));
  _exit(127);
}

int run_up(const ServeArgs& a) {
  auto config = Config::load(actors::run_schema(), a.config_path, a.overrides);
  if (!config.ok()) {
    std::fprintf(stderr, "error: %s\n", config.status().message().c_str());
    return 2;
  }
  auto st = actors::settings_from_config(*config);
  if (!st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.status().message().c_str());
    return 2;
  }
  const std::string prefix = st->endpoint_prefix;
  if (prefix.rfind("ipc://", 0) != 0 && prefix.rfind("tcp://", 0) != 0) {
    std::fprintf(stderr, "error: %s: run.endpoint_prefix: '%s' is in-process only; `grpo up` needs ipc:// or tcp://HOST:PORT\n",
                 config->origin("run.endpoint_prefix").c_str(), prefix.c_str());
    return 2;
  }
  std::error_code ec;
  fs::create_directories(fs::path(st->run_dir) / "logs", ec);
  if (ec) {
    std::fprintf(stderr, "error: cannot create %s/logs: %s\n", st->run_dir.c_str(), ec.message().c_str());
    return 2;
  }
  std::vector<Child> children;
  children.push_back({"coordinator", 0});
  children.push_back({"buffer", 0});
  for (int i = 0; i < st->broadcasters; ++i) children.push_back({"broadcaster", i});
  for (int i = 0; i < st->verifiers; ++i) children.push_back({"verifier", i});
  for (int i = 0; i < st->generators; ++i) children.push_back({"generator", i});
  for (int i = st->learners - 1; i >= 0; --i) children.push_back({"learner", i});  // learner 0 last
  auto log_of = [&](const Child& c) {
    return c.role == "learner" && c.id == 0 ? std::string()
                                             : (fs::path(st->run_dir) / "logs" / (c.role + "-" + std::to_string(c.id) + ".log")).string();
  };
  signal(SIGINT, on_up_signal);
  signal(SIGTERM, on_up_signal);
  for (auto& c : children) c.pid = spawn_service(a, c.role, c.id, log_of(c));
  std::fprintf(stderr, "grpo up: %zu services (logs in %s/logs)\n", children.size(), st->run_dir.c_str());

  // The coordinator's admin socket, asked for the wanted counts (grpoctl scale).
  auto admin_transport = cluster::Transport::create();
  const std::string admin_at = cluster::admin_endpoint(prefix, st->run_dir);
  cluster::SecurityOptions admin_security;
  if (st->secured()) {
    auto admin_keys = cluster::read_key_file(st->keys_dir + "/admin.key");
    if (admin_keys.ok()) {
      admin_security = cluster::admin_client_security(*admin_keys, st->cluster_keys.public_key);
    } else {
      std::fprintf(stderr, "grpo up: %s: live scaling is off (needs the admin key)\n",
                   admin_keys.status().message().c_str());
    }
  }
  const bool can_scale = !st->secured() || admin_security.enabled;
  std::map<std::string, int> wanted = {{"generator", st->generators}, {"verifier", st->verifiers}};
  auto poll_wanted = [&] {
    cluster::AdminRequest req;
    req.command = "status";
    auto bytes = cluster::AdminClient::request(admin_transport, admin_at, cluster::encode(req), 500, admin_security);
    cluster::AdminReply reply;
    if (!bytes.ok() || !cluster::decode(*bytes, &reply).ok() || !reply.ok) return;  // restarting: ask later
    wanted["generator"] = reply.desired_generators;
    wanted["verifier"] = reply.desired_verifiers;
  };
  auto start_missing = [&] {
    for (const auto& [role, count] : wanted) {
      for (int id = 0; id < count; ++id) {
        bool running = false;
        for (const auto& c : children) running = running || (c.role == role && c.id == id && !c.exited);
        if (running) continue;
        Child c{role, id};
        c.pid = spawn_service(a, role, id, log_of(c));
        std::fprintf(stderr, "grpo up: scaled up: started %s %d\n", role.c_str(), id);
        children.insert(children.end() - 1, c);  // learner 0 stays last
      }
    }
  };

  size_t learner0_index = children.size() - 1;
  int learner_status = 1;
  bool forwarded = false;
  auto last_poll = std::chrono::steady_clock::now();
  while (true) {
    if (g_up_signals.load() > 0 && !forwarded) {  // learner 0 checkpoints; the rest follow below
      kill(children[learner0_index].pid, SIGINT);
      forwarded = true;
    }
    if (can_scale && !forwarded && std::chrono::steady_clock::now() - last_poll > std::chrono::seconds(1)) {
      last_poll = std::chrono::steady_clock::now();
      poll_wanted();
      start_missing();
      learner0_index = children.size() - 1;
    }
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    for (auto& c : children) {
      if (c.pid != pid || c.exited) continue;
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      const bool scalable = c.role == "generator" || c.role == "verifier";
      if (&c == &children[learner0_index]) {
        learner_status = code;
        c.exited = true;
      } else if (scalable && c.id >= wanted[c.role]) {  // retired by the coordinator (scaled down)
        std::fprintf(stderr, "grpo up: %s %d exited with status %d (scaled down to %d)\n", c.role.c_str(), c.id,
                     code, wanted[c.role]);
        c.exited = true;
      } else if (!forwarded && c.restarts < 5) {
        std::fprintf(stderr, "grpo up: %s %d exited with status %d; restarting it\n", c.role.c_str(), c.id, code);
        std::this_thread::sleep_for(std::chrono::seconds(1));
        ++c.restarts;
        c.pid = spawn_service(a, c.role, c.id, log_of(c));
      } else {
        std::fprintf(stderr, "grpo up: %s %d exited with status %d\n", c.role.c_str(), c.id, code);
        c.exited = true;
      }
    }
    if (children[learner0_index].exited) break;
  }
  for (auto& c : children)
    if (!c.exited) kill(c.pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (auto& c : children) {
    if (c.exited) continue;
    while (waitpid(c.pid, nullptr, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(c.pid, SIGKILL);
        waitpid(c.pid, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return learner_status;
}

}  // namespace

Command add_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  Command c;
  c.sub = app.add_subcommand("serve", "run one role of a cluster config as this process");
  c.sub->add_option("--config", a->config_path, "TOML config file")->required();
  c.sub->add_option("--role", a->role, std::string("role: ") + actors::service_roles())->required();
  c.sub->add_option("--id", a->id, "replica number of the role (default 0)");
  c.sub->add_option("overrides", a->overrides, "key=value overrides");
  c.run = [a]() {
    auto config = Config::load(actors::run_schema(), a->config_path, a->overrides);
    if (!config.ok()) {
      std::fprintf(stderr, "error: %s\n", config.status().message().c_str());
      return 2;
    }
    actors::install_interrupt_handlers();
    return actors::run_service(*config, a->role, a->id);
  };
  return c;
}

Command add_up(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  Command c;
  c.sub = app.add_subcommand("up", "start every service of a config as local processes and supervise them");
  c.sub->add_option("--config", a->config_path, "TOML config file")->required();
  c.sub->add_option("overrides", a->overrides, "key=value overrides");
  c.run = [a]() { return run_up(*a); };
  return c;
}

}  // namespace grpo::apps
