// Runs the real `grpo` program (or another program of apps/, e.g. grpoctl) as a child process for
// the program-level tests.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace grpo::testing {

// The path of the program `name` built in apps/: of this test's own build folder (GRPO_BINARY_DIR
// in the environment overrides it).
inline std::string app_binary(const std::string& name) {
  if (const char* dir = std::getenv("GRPO_BINARY_DIR"); dir && *dir) return std::string(dir) + "/apps/" + name;
#ifdef GRPO_TEST_BINARY_DIR
  return std::string(GRPO_TEST_BINARY_DIR) + "/apps/" + name;
#else
  return "build/apps/" + name;
#endif
}

inline std::string grpo_binary() { return app_binary("grpo"); }

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The source tree (GRPO_SOURCE_DIR, set by ctest; else the working directory).
inline std::string source_dir() {
  const char* s = std::getenv("GRPO_SOURCE_DIR");
  return s ? s : ".";
}

// Lines in a text file (0 when it does not exist), e.g. records in metrics.jsonl.
inline int lines_of(const std::string& path) {
  int n = 0;
  for (char c : read_file(path)) n += c == '\n';
  return n;
}

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs the program `bin` with args; `while_running` (if set) is polled every 100 ms with the
// child's pid and returns false once it has done its job.
inline RunResult run_program(const std::string& bin, const std::vector<std::string>& args,
                             const std::string& log_path,
                             const std::function<bool(pid_t)>& while_running = nullptr) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::freopen(log_path.c_str(), "w", stdout);
    (void)f;
    dup2(fileno(stdout), STDERR_FILENO);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(bin.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  int status = 0;
  bool polling = static_cast<bool>(while_running);
  while (true) {
    pid_t r = waitpid(pid, &status, polling ? WNOHANG : 0);
    if (r == pid) break;
    if (polling) {
      polling = while_running(pid);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  RunResult res;
  res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  res.output = read_file(log_path);
  return res;
}

// Runs grpo with args (see run_program).
inline RunResult run_grpo(const std::vector<std::string>& args, const std::string& log_path,
                          const std::function<bool(pid_t)>& while_running = nullptr) {
  return run_program(grpo_binary(), args, log_path, while_running);
}

}  // namespace grpo::testing
