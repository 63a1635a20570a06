// Unit tests of the code-execution sandbox (runtime/code_sandbox.h): real bubblewrap processes,
// no mocks. Each test scores hostile or broken programs, checks that nothing escaped (files,
// processes, network, cgroups) and that the pool still serves afterwards.
#include "runtime/code_sandbox.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace grpo::runtime {
namespace {

namespace fs = std::filesystem;

// A marker unique to this test process, for file names and process command lines.
std::string unique_marker(const std::string& what) {
  return "grpo-sandbox-test-" + what + "-" + std::to_string(::getpid());
}

// The contents of a /proc file, or "" when the process went away meanwhile (reading a vanished
// process's file fails with ESRCH, which iostreams would turn into an exception).
std::string read_proc_file(const fs::path& path) {
  std::string out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

// Numeric entries of /proc; a process that exits while the directory is read is skipped.
std::vector<std::string> proc_pids() {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.find_first_not_of("0123456789") == std::string::npos) out.push_back(name);
  }
  return out;
}

// Pids whose command line contains `marker` (the test's own process excluded).
std::vector<pid_t> processes_with(const std::string& marker) {
  std::vector<pid_t> out;
  for (const std::string& name : proc_pids()) {
    const std::string cmdline = read_proc_file(fs::path("/proc") / name / "cmdline");
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (pid != ::getpid() && cmdline.find(marker) != std::string::npos) out.push_back(pid);
  }
  return out;
}

int process_count() {
  return static_cast<int>(proc_pids().size());
}

// Children of this process, zombies included (a leak if any is left after a run).
std::vector<pid_t> own_children() {
  std::vector<pid_t> out;
  for (const std::string& name : proc_pids()) {
    const std::string stat = read_proc_file(fs::path("/proc") / name / "stat");
    const std::size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    char state;
    long ppid = 0;
    if (std::sscanf(stat.c_str() + paren + 1, " %c %ld", &state, &ppid) == 2 &&
        ppid == ::getpid()) {
      out.push_back(static_cast<pid_t>(std::stol(name)));
    }
  }
  return out;
}

std::size_t open_fd_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// grpo-sandbox-<this pid>-* cgroup directories that exist now.
std::vector<std::string> own_cgroup_dirs() {
  std::vector<std::string> out;
  const std::string prefix = "grpo-sandbox-" + std::to_string(::getpid()) + "-";
  for (const char* root : {"/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory"}) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(root, ec)) {
      if (entry.path().filename().string().rfind(prefix, 0) == 0) out.push_back(entry.path());
    }
  }
  return out;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A short summary of a score for assertion messages.
std::string describe(const CodeScore& s) {
  std::ostringstream os;
  os << code_verdict_name(s.verdict) << " / " << run_outcome_name(s.run.outcome) << " exit "
     << s.run.exit_code << " signal " << s.run.signal << " attempts " << s.attempts << " wall "
     << s.run.wall_seconds << " s; error: " << s.run.error
     << "; output: " << s.run.output.substr(0, 2000);
  return os.str();
}

class CodeSandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SandboxPoolOptions options;
    options.slots = 2;
    auto pool = SandboxPool::create(options);
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = std::move(pool).value();
    fds_before_ = open_fd_count();
  }

  void TearDown() override {
    if (!pool_) return;
    // The pool still serves after whatever the test ran.
    CodeScore after = score_program(*pool_, "print('still here')\n");
    EXPECT_EQ(after.verdict, CodeVerdict::kPass) << describe(after);
    EXPECT_EQ(after.run.output, "still here\n");
    EXPECT_EQ(pool_->infra_errors(), 0u);
    // No process, zombie or descriptor is left behind by the runs.
    EXPECT_TRUE(own_children().empty());
    EXPECT_EQ(open_fd_count(), fds_before_);
    const std::vector<std::string> dirs = pool_->cgroup_dirs();
    pool_.reset();
    for (const std::string& dir : dirs) EXPECT_FALSE(fs::exists(dir)) << dir;
    EXPECT_TRUE(own_cgroup_dirs().empty());
  }

  CodeScore score(const std::string& program, const SandboxLimits& limits = {}) {
    return score_program(*pool_, program, limits);
  }

  std::unique_ptr<SandboxPool> pool_;
  std::size_t fds_before_ = 0;
};

TEST(CodeSandboxPoolTest, CreateFailsClearlyWhenBwrapOrPythonIsMissing) {
  SandboxPoolOptions options;
  options.bwrap_path = "/nonexistent/bwrap";
  auto pool = SandboxPool::create(options);
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(pool.status().message().find("bubblewrap"), std::string::npos) << pool.status();

  options = SandboxPoolOptions();
  options.python_path = "/nonexistent/python3";
  pool = SandboxPool::create(options);
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(pool.status().message().find("python"), std::string::npos) << pool.status();
}

TEST(CodeSandboxPoolTest, DefaultSlotsFollowHardwareThreadsAndCgroupsAreRemoved) {
  std::vector<std::string> dirs;
  {
    auto pool = SandboxPool::create();
    ASSERT_TRUE(pool.ok()) << pool.status();
    EXPECT_EQ((*pool)->slots(),
              static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    if (::geteuid() == 0 && fs::exists("/sys/fs/cgroup/pids/cgroup.procs")) {
      EXPECT_TRUE((*pool)->cgroups_enabled());
      EXPECT_TRUE((*pool)->drops_privileges());
    }
    dirs = (*pool)->cgroup_dirs();
    for (const std::string& dir : dirs) EXPECT_TRUE(fs::exists(dir)) << dir;
  }
  for (const std::string& dir : dirs) EXPECT_FALSE(fs::exists(dir)) << dir;
  EXPECT_TRUE(own_cgroup_dirs().empty());
}

TEST(CodeSandboxPoolTest, InvalidLimitsAreRejectedWithoutRunning) {
  auto pool = SandboxPool::create({});
  ASSERT_TRUE(pool.ok()) << pool.status();
  SandboxLimits limits;
  limits.wall_seconds = 0;
  EXPECT_FALSE(validate_sandbox_limits(limits).ok());
  CodeScore s = score_program(**pool, "print(1)\n", limits);
  EXPECT_EQ(s.verdict, CodeVerdict::kError);
  EXPECT_EQ(s.attempts, 0);
  EXPECT_NE(s.run.error.find("wall_seconds"), std::string::npos) << s.run.error;
}

TEST(CodeSandboxPoolTest, SandboxFailuresAreInfrastructureErrorsNotVerdicts) {
  // A "bwrap" that fails before Python starts, as a real one does with "Can't fork".
  SandboxPoolOptions options;
  options.bwrap_path = "/usr/bin/false";
  auto probed = SandboxPool::create(options);
  ASSERT_FALSE(probed.ok());
  EXPECT_EQ(probed.status().code(), StatusCode::kUnavailable) << probed.status();

  options.probe = false;
  auto pool = SandboxPool::create(options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  RunResult r = (*pool)->run_python("print(1)\n");
  EXPECT_EQ(r.outcome, RunOutcome::kInfraError);
  EXPECT_NE(r.error.find("before the program started"), std::string::npos) << r.error;
  CodeScore s = score_program(**pool, "print(1)\n");
  EXPECT_EQ(s.verdict, CodeVerdict::kError);
  EXPECT_EQ(s.attempts, 4);
  EXPECT_EQ((*pool)->infra_errors(), 5u);
  EXPECT_TRUE(own_children().empty());

  // A source larger than the file-size limit cannot be copied into the sandbox.
  SandboxLimits limits;
  limits.max_file_bytes = 4096;
  r = (*pool)->run_python(std::string(5000, '#'), limits);
  EXPECT_EQ(r.outcome, RunOutcome::kInfraError);
  EXPECT_NE(r.error.find("max_file_bytes"), std::string::npos) << r.error;
}

TEST(CodeSandboxPoolTest, WithoutCgroupsRlimitsStillContainProcesses) {
  SandboxPoolOptions options;
  options.slots = 2;
  options.use_cgroups = false;
  auto created = SandboxPool::create(options);
  ASSERT_TRUE(created.ok()) << created.status();
  SandboxPool& pool = **created;
  EXPECT_FALSE(pool.cgroups_enabled());
  EXPECT_TRUE(pool.cgroup_dirs().empty());
  const std::string marker = "1000." + std::to_string(::getpid()) + "4";
  SandboxLimits limits;
  limits.max_processes = 16;
  limits.wall_seconds = 20;
  CodeScore s = score_program(pool,
                              "import os, time\n"
                              "n = 0\n"
                              "try:\n"
                              "    while n < 2000:\n"
                              "        if os.fork() == 0:\n"
                              "            os.execv('/usr/bin/sleep', ['sleep', '" +
                                  marker +
                                  "'])\n"
                                  "        n += 1\n"
                                  "except OSError as e:\n"
                                  "    print('refused after', n)\n"
                                  "    raise SystemExit(0 if n < 2000 else 1)\n",
                              limits);
  EXPECT_EQ(s.verdict, CodeVerdict::kPass) << s.run.error << s.run.output.substr(0, 2000);
  int refused_after = -1;
  ASSERT_EQ(std::sscanf(s.run.output.c_str(), "refused after %d", &refused_after), 1)
      << s.run.output;
  // The per-uid backstop: slots * (max_processes + runner, monitor and pid 1 + some slack).
  EXPECT_LT(refused_after, 200) << s.run.output;
  std::printf("[ sandbox  ] without cgroups a sandbox reached %d processes\n", refused_after);
  EXPECT_TRUE(processes_with(marker).empty());
  // Back-to-back runs do not exhaust the shared per-uid budget.
  for (int i = 0; i < 30; ++i) {
    CodeScore ok = score_program(pool, "print('ok')\n");
    ASSERT_EQ(ok.verdict, CodeVerdict::kPass) << ok.run.error << ok.run.output;
    EXPECT_EQ(ok.attempts, 1);
  }
  EXPECT_TRUE(own_children().empty());
}

TEST_F(CodeSandboxTest, PassingProgramPasses) {
  CodeScore s = score_humaneval(*pool_, "def add(a, b):\n", "    return a + b\n",
                                "def check(candidate):\n    assert candidate(2, 3) == 5\n", "add");
  EXPECT_EQ(s.verdict, CodeVerdict::kPass) << describe(s);
  EXPECT_EQ(s.run.outcome, RunOutcome::kExited);
  EXPECT_EQ(s.run.exit_code, 0);
  EXPECT_EQ(s.attempts, 1);
  EXPECT_EQ(s.run.output, "");
  EXPECT_EQ(humaneval_program("P", "C", "T", "f"), "PC\nT\ncheck(f)\n");
}

TEST_F(CodeSandboxTest, FailingAssertFails) {
  CodeScore s = score_humaneval(*pool_, "def add(a, b):\n", "    return a - b\n",
                                "def check(candidate):\n    assert candidate(2, 3) == 5\n", "add");
  EXPECT_EQ(s.verdict, CodeVerdict::kFail) << describe(s);
  EXPECT_EQ(s.run.exit_code, 1);
  EXPECT_NE(s.run.output.find("AssertionError"), std::string::npos) << s.run.output;
}

TEST_F(CodeSandboxTest, SyntaxErrorFails) {
  CodeScore s = score("def f(:\n    return 1\n");
  EXPECT_EQ(s.verdict, CodeVerdict::kFail) << describe(s);
  EXPECT_NE(s.run.output.find("SyntaxError"), std::string::npos) << s.run.output;
}

TEST_F(CodeSandboxTest, ExitCodesAndInputAreTheProgramsOwn) {
  CodeScore s = score("import sys\nsys.exit(3)\n");
  EXPECT_EQ(s.verdict, CodeVerdict::kFail) << describe(s);
  EXPECT_EQ(s.run.outcome, RunOutcome::kExited);
  EXPECT_EQ(s.run.exit_code, 3);
  // stdin is /dev/null: input() ends in EOFError instead of waiting.
  s = score("x = input('number? ')\n");
  EXPECT_EQ(s.verdict, CodeVerdict::kFail) << describe(s);
  EXPECT_NE(s.run.output.find("EOFError"), std::string::npos) << s.run.output;
  // A program killing itself is a signal, not a timeout.
  s = score("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n");
  EXPECT_EQ(s.verdict, CodeVerdict::kFail) << describe(s);
  EXPECT_EQ(s.run.outcome, RunOutcome::kSignaled);
  EXPECT_EQ(s.run.signal, SIGSEGV);
}

TEST_F(CodeSandboxTest, SeesOnlyAMinimalEnvironment) {
  CodeScore s = score(
      "import os, sys\n"
      "print(sorted(os.listdir('/')))\n"
      "print(sorted(os.environ.items()))\n"
      "print(os.getcwd(), os.getuid(), os.getgid(), os.getpid())\n"
      "print(sys.argv, __name__)\n");
  ASSERT_EQ(s.verdict, CodeVerdict::kPass) << describe(s);
  std::istringstream lines(s.run.output);
  std::string root, env, ids, argv;
  std::getline(lines, root);
  std::getline(lines, env);
  std::getline(lines, ids);
  std::getline(lines, argv);
  for (const char* name : {"'etc'", "'home'", "'root'", "'work'", "'var'", "'opt'"}) {
    EXPECT_EQ(root.find(name), std::string::npos) << root;
  }
  EXPECT_NE(root.find("'usr'"), std::string::npos) << root;
  EXPECT_NE(root.find("'tmp'"), std::string::npos) << root;
  EXPECT_EQ(env,
            "[('HOME', '/tmp'), ('LC_CTYPE', 'C.UTF-8'), ('PATH', '/usr/bin:/bin'), "
            "('PWD', '/tmp'), ('PYTHONDONTWRITEBYTECODE', '1'), ('PYTHONHASHSEED', '0'), "
            "('PYTHONUNBUFFERED', '1')]");
  if (pool_->drops_privileges()) {
    EXPECT_EQ(ids.substr(0, 16), "/tmp 65534 65534") << ids;
  }
  EXPECT_EQ(argv, "['/sandbox/main.py'] __main__");
}

TEST_F(CodeSandboxTest, CpuLoopStopsAtCpuLimit) {
  SandboxLimits limits;
  limits.cpu_seconds = 1;
  limits.wall_seconds = 30;
  CodeScore s = score("while True:\n    pass\n", limits);
  EXPECT_EQ(s.verdict, CodeVerdict::kTimeout) << describe(s);
  // SIGXCPU says the CPU limit stopped it, not the wall clock (that would be SIGKILL). How long one
  // CPU second takes on the wall depends on the machine's load (8.8 s seen on a busy 2-core
  // machine), so the wall clock only has to stay under its own limit.
  EXPECT_EQ(s.run.signal, SIGXCPU) << describe(s);
  EXPECT_LT(s.run.wall_seconds, limits.wall_seconds) << describe(s);
}

TEST_F(CodeSandboxTest, SleepStopsAtWallClockLimit) {
  SandboxLimits limits;
  limits.wall_seconds = 1;
  CodeScore s = score("import time\nprint('sleeping')\ntime.sleep(1000)\n", limits);
  EXPECT_EQ(s.verdict, CodeVerdict::kTimeout) << describe(s);
  EXPECT_EQ(s.run.outcome, RunOutcome::kTimeout);
  EXPECT_EQ(s.run.output, "sleeping\n");  // output before the kill is kept
  EXPECT_GE(s.run.wall_seconds, 1.0);
  EXPECT_LT(s.run.wall_seconds, 2.5) << describe(s);
  // Closing its output does not let a program outlive the deadline.
  s = score("import os, time\nos.close(1)\nos.close(2)\ntime.sleep(1000)\n", limits);
  EXPECT_EQ(s.verdict, CodeVerdict::kTimeout) << describe(s);
  EXPECT_LT(s.run.wall_seconds, 2.5) << describe(s);
  // A child process waiting in the sandbox dies with it.
  const std::string marker = "1000." + std::to_string(::getpid()) + "3";
  s = score("import subprocess\nsubprocess.run(['sleep', '" + marker + "'])\n", limits);
  EXPECT_EQ(s.verdict, CodeVerdict::kTimeout) << describe(s);
  EXPECT_TRUE(processes_with(marker).empty());
}

TEST_F(CodeSandboxTest, ForkBombIsContained) {
  const std::string marker = unique_marker("forkbomb");
  const int before = process_count();
  SandboxLimits limits;
  limits.wall_seconds = 3;
  // Re-exec with the marker in argv so every bomb process is visible in /proc/*/cmdline.
  CodeScore s = score(
      "import os, sys\n"
      "bomb = 'import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n"
      "        pass\\n'\n"
      "os.execv(sys.executable, [sys.executable, '-c', bomb, '" +
          marker + "'])\n",
      limits);
  EXPECT_NE(s.verdict, CodeVerdict::kPass) << describe(s);
  EXPECT_NE(s.verdict, CodeVerdict::kError) << describe(s);
  EXPECT_TRUE(processes_with(marker).empty());
  // Other processes (engineers, tests run in parallel) come and go on this machine: allow some
  // slack, far below a bomb, and a few seconds for theirs to end.
  int after = process_count();
  for (int i = 0; i < 50 && after >= before + 30; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    after = process_count();
  }
  EXPECT_LT(after, before + 30);
}

TEST_F(CodeSandboxTest, ProcessCountIsLimited) {
  SandboxLimits limits;
  limits.max_processes = 16;
  CodeScore s = score(
      "import os, time\n"
      "n = 0\n"
      "try:\n"
      "    while n < 1000:\n"
      "        if os.fork() == 0:\n"
      "            time.sleep(100)\n"
      "            os._exit(0)\n"
      "        n += 1\n"
      "except OSError as e:\n"
      "    print('refused after', n, e.errno)\n"
      "    raise SystemExit(0 if n < 1000 else 1)\n",
      limits);
  ASSERT_EQ(s.verdict, CodeVerdict::kPass) << describe(s);
  int refused_after = -1;
  ASSERT_EQ(std::sscanf(s.run.output.c_str(), "refused after %d", &refused_after), 1)
      << s.run.output;
  if (pool_->cgroups_enabled()) {
    // The program itself plus its children make max_processes.
    EXPECT_EQ(refused_after, limits.max_processes - 1) << s.run.output;
  } else {
    EXPECT_LT(refused_after, 1000) << s.run.output;
  }
}

TEST_F(CodeSandboxTest, HugeAllocationFails) {
  CodeScore s = score("x = bytearray(64 << 30)\nprint(len(x))\n");
  EXPECT_EQ(s.verdict, CodeVerdict::kFail) << describe(s);
  EXPECT_NE(s.run.output.find("MemoryError"), std::string::npos) << s.run.output;
}

TEST_F(CodeSandboxTest, MemoryCgroupCapsTheWholeSandbox) {
  if (!pool_->memory_cgroup_enabled()) GTEST_SKIP() << "no memory cgroup (not root?)";
  SandboxLimits limits;
  limits.memory_bytes = 256ull << 20;
  // Within RLIMIT_AS (1 GiB) but over the sandbox's memory: the kernel kills it.
  CodeScore s = score("x = b'x' * (512 << 20)\nprint(len(x))\n", limits);
  EXPECT_EQ(s.verdict, CodeVerdict::kFail) << describe(s);
  EXPECT_EQ(s.run.outcome, RunOutcome::kSignaled) << describe(s);
  EXPECT_EQ(s.run.signal, SIGKILL);
}

TEST_F(CodeSandboxTest, HugeFileStopsAtFileSizeLimit) {
  SandboxLimits limits;
  limits.max_file_bytes = 4 << 20;
  CodeScore s = score(
      "chunk = b'x' * (1 << 20)\n"
      "with open('/tmp/big', 'wb') as f:\n"
      "    for _ in range(10 << 10):  # 10 GiB\n"
      "        f.write(chunk)\n",
      limits);
  EXPECT_EQ(s.verdict, CodeVerdict::kFail) << describe(s);
  EXPECT_NE(s.run.output.find("File too large"), std::string::npos) << s.run.output;
  EXPECT_LT(s.run.wall_seconds, 5.0);
  // The tmpfs size caps the sum of many files below the per-file limit.
  limits.tmp_bytes = 8 << 20;
  s = score(
      "chunk = b'x' * (1 << 20)\n"
      "for i in range(100):\n"
      "    with open('/tmp/f%d' % i, 'wb') as f:\n"
      "        f.write(chunk * 2)\n",
      limits);
  EXPECT_EQ(s.verdict, CodeVerdict::kFail) << describe(s);
  EXPECT_NE(s.run.output.find("No space left"), std::string::npos) << s.run.output;
}

TEST_F(CodeSandboxTest, CannotConnectToHostLoopback) {
  const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_GE(server, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ASSERT_EQ(::bind(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(server, 16), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(server, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);

  CodeScore s = score(
      "import socket\n"
      "s = socket.create_connection(('127.0.0.1', " +
      std::to_string(port) +
      "), timeout=2)\n"
      "s.sendall(b'escaped')\n");
  EXPECT_EQ(s.verdict, CodeVerdict::kFail) << describe(s);
  EXPECT_NE(s.run.output.find("Connection refused"), std::string::npos) << s.run.output;
  // And nothing else reaches out: no interface but the sandbox's own loopback.
  CodeScore ifaces = score("import socket\nprint(sorted(n for _, n in socket.if_nameindex()))\n");
  EXPECT_EQ(ifaces.verdict, CodeVerdict::kPass) << describe(ifaces);
  EXPECT_EQ(ifaces.run.output, "['lo']\n");

  const int client = ::accept(server, nullptr, nullptr);
  EXPECT_LT(client, 0) << "the sandbox connected to the test's listening socket";
  EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK);
  if (client >= 0) ::close(client);
  ::close(server);
}

TEST_F(CodeSandboxTest, HostFilesAreInvisible) {
  const fs::path host_tmp_file = fs::path("/tmp") / (unique_marker("secret") + ".txt");
  write_text(host_tmp_file, "host secret");
  ::chmod(host_tmp_file.c_str(), 0644);
  std::vector<std::string> paths = {"/etc/passwd", host_tmp_file.string(), "/root",
                                    "/proc/1/root/etc/passwd"};
  if (const char* src = std::getenv("GRPO_SOURCE_DIR"); src && *src) {
    paths.push_back((fs::path(src) / "CMakeLists.txt").string());
  } else {
    paths.push_back(fs::absolute("CMakeLists.txt").string());
  }
  for (const std::string& path : paths) {
    CodeScore s = score("print(open('" + path + "').read()[:100])\n");
    EXPECT_EQ(s.verdict, CodeVerdict::kFail) << path << ": " << describe(s);
    EXPECT_EQ(s.run.output.find("host secret"), std::string::npos);
    EXPECT_EQ(s.run.output.find("root:"), std::string::npos);
  }
  fs::remove(host_tmp_file);
}

TEST_F(CodeSandboxTest, WritesOutsideTmpFailAndHostIsUntouched) {
  const fs::path tmp_marker = fs::path("/tmp") / (unique_marker("marker") + ".txt");
  write_text(tmp_marker, "keep me");
  fs::path dir_marker;
  dir_marker = fs::path(GRPO_TEST_BINARY_DIR) / (unique_marker("marker") + ".txt");  // the build folder
  write_text(dir_marker, "keep me too");

  // Only unleash `rm -rf /` once the sandbox is known to show no host directory.
  CodeScore view = score("import os\nprint(sorted(os.listdir('/')))\n");
  ASSERT_EQ(view.verdict, CodeVerdict::kPass) << describe(view);
  ASSERT_EQ(view.run.output.find("'home'"), std::string::npos) << view.run.output;
  ASSERT_EQ(view.run.output.find("'work'"), std::string::npos) << view.run.output;
  ASSERT_EQ(view.run.output.find("'etc'"), std::string::npos) << view.run.output;

  for (const char* target : {"/usr/x", "/x", "/sandbox/main.py", "/proc/x", "/dev/x"}) {
    CodeScore s = score(std::string("open('") + target + "', 'w').write('x')\n");
    EXPECT_EQ(s.verdict, CodeVerdict::kFail) << target << ": " << describe(s);
  }
  SandboxLimits slow;
  slow.wall_seconds = 30;  // rm walks all of /usr and /proc
  CodeScore s = score(
      "import os, shutil\n"
      "os.system('rm -rf --no-preserve-root / 2>/dev/null')\n"
      "shutil.rmtree('/usr', ignore_errors=True)\n"
      "open('/tmp/" +
          tmp_marker.filename().string() +
          "', 'w').write('overwritten')\n"
          "print(os.path.exists('/usr/bin/python3'))\n"
          "open('/usr/lib/evil', 'w')\n",
      slow);
  EXPECT_EQ(s.verdict, CodeVerdict::kFail) << describe(s);
  EXPECT_NE(s.run.output.find("True"), std::string::npos) << s.run.output;
  EXPECT_EQ(read_text(tmp_marker), "keep me");
  EXPECT_EQ(read_text(dir_marker), "keep me too");
  EXPECT_TRUE(fs::exists("/usr/bin/python3"));
  EXPECT_FALSE(fs::exists("/usr/lib/evil"));
  fs::remove(tmp_marker);
  fs::remove(dir_marker);
}

TEST_F(CodeSandboxTest, BackgroundProcessesDieWithTheSample) {
  const std::string marker_a = "1000." + std::to_string(::getpid()) + "1";
  const std::string marker_b = "1000." + std::to_string(::getpid()) + "2";
  CodeScore s = score(
      "import os, subprocess\n"
      "subprocess.Popen(['sleep', '" +
      marker_a +
      "'], start_new_session=True,\n"
      "                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
      "if os.fork() == 0:\n"
      "    os.setsid()\n"
      "    if os.fork() == 0:\n"
      "        os.execv('/usr/bin/sleep', ['sleep', '" +
      marker_b +
      "'])\n"
      "    os._exit(0)\n"
      "os.wait()\n"
      "print('started')\n");
  EXPECT_EQ(s.verdict, CodeVerdict::kPass) << describe(s);
  EXPECT_EQ(s.run.output, "started\n");
  EXPECT_LT(s.run.wall_seconds, 5.0);
  EXPECT_TRUE(processes_with(marker_a).empty());
  EXPECT_TRUE(processes_with(marker_b).empty());
}

TEST_F(CodeSandboxTest, OutputOverTheCapIsTruncated) {
  SandboxLimits limits;
  limits.max_output_bytes = 1000;
  CodeScore s = score("import sys\nwhile True:\n    sys.stdout.write('x' * 4096)\n", limits);
  EXPECT_EQ(s.verdict, CodeVerdict::kFail) << describe(s);
  EXPECT_EQ(s.run.outcome, RunOutcome::kOutputLimit);
  EXPECT_TRUE(s.run.truncated);
  EXPECT_EQ(s.run.output.size(), 1000u);
  EXPECT_EQ(s.run.output, std::string(1000, 'x'));
  // Output below the cap is kept whole, stdout and stderr interleaved.
  s = score("import sys\nprint('out')\nprint('err', file=sys.stderr)\nprint('out2')\n");
  EXPECT_EQ(s.verdict, CodeVerdict::kPass) << describe(s);
  EXPECT_EQ(s.run.output, "out\nerr\nout2\n");
  EXPECT_FALSE(s.run.truncated);
}

TEST_F(CodeSandboxTest, ManyProgramsFromManyThreadsAllPass) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 10;
  std::atomic<int> passed{0};
  std::atomic<int> attempts{0};
  std::vector<std::string> failures(kThreads);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const int n = t * 100 + i;
        CodeScore s =
            score_humaneval(*pool_, "def square(x):\n", "    return x * x\n",
                            "def check(candidate):\n    assert candidate(" + std::to_string(n) +
                                ") == " + std::to_string(n * n) + "\n",
                            "square");
        attempts += s.attempts;
        if (s.verdict == CodeVerdict::kPass) {
          ++passed;
        } else {
          failures[t] += describe(s) + "\n";
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(passed.load(), kThreads * kPerThread);
  EXPECT_EQ(attempts.load(), kThreads * kPerThread) << "infrastructure retries under churn";
  for (const std::string& f : failures) EXPECT_EQ(f, "");
  // Every finished sandbox is reaped at once, so no slot's process budget stays charged.
  for (const std::string& dir : pool_->cgroup_dirs()) {
    if (dir.find("/pids/") == std::string::npos) continue;
    EXPECT_EQ(read_text(fs::path(dir) / "pids.current"), "0\n") << dir;
  }
  std::printf("[ sandbox  ] %d programs from %d threads on %d slots: %.2f s, %.1f programs/s\n",
              kThreads * kPerThread, kThreads, pool_->slots(), seconds,
              kThreads * kPerThread / seconds);
}

TEST_F(CodeSandboxTest, SandboxStartTime) {
  constexpr int kRuns = 20;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kRuns; ++i) {
    RunResult r = pool_->run_python("pass\n");
    ASSERT_EQ(r.outcome, RunOutcome::kExited) << r.error << r.output;
    ASSERT_EQ(r.exit_code, 0);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ sandbox  ] start + empty program + teardown: %.1f ms per run (%d sequential)\n",
              1000.0 * seconds / kRuns, kRuns);
}

}  // namespace
}  // namespace grpo::runtime
