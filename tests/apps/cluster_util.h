// Helpers of the cluster process tests: grpoctl as a subprocess, and finding a service's pid
// under `grpo up`.
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "run_grpo.h"

namespace grpo::testing {

struct Ctl {
  int exit_code = -1;
  std::string out;
  nlohmann::json json;  // parsed when the arguments have --json and grpoctl exited 0
};

// Runs `grpoctl --endpoint ENDPOINT --timeout-ms 2000 ARGS` and collects its output and status.
inline Ctl grpoctl(const std::string& endpoint, const std::string& args) {
  Ctl r;
  const std::string cmd = app_binary("grpoctl") + " --endpoint " + endpoint + " --timeout-ms 2000 " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (args.find("--json") != std::string::npos && r.exit_code == 0)
    r.json = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  return r;
}

// An unsigned field of a --json reply, `missing` when there is none.
inline uint64_t ctl_field(const Ctl& c, const char* key, uint64_t missing) {
  return c.json.is_object() ? c.json.value(key, missing) : missing;
}

// The pid of a service from the /proc command lines of the children of `parent`; -1 when none.
inline pid_t find_service(pid_t parent, const std::string& role, const std::string& id) {
  namespace fs = std::filesystem;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string stat = read_file(e.path() / "stat");
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    int ppid = 0;
    char state = 0;
    if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) != 2 || ppid != parent) continue;
    std::string cmd = read_file(e.path() / "cmdline");
    for (char& c : cmd)
      if (c == '\0') c = ' ';
    if (cmd.find("--role " + role + " --id " + id + " ") != std::string::npos) return std::stoi(name);
  }
  return -1;
}

}  // namespace grpo::testing
