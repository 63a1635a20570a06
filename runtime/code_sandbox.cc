// Code-execution reward sandbox (see code_sandbox.h for the model).
#include "runtime/code_sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/log.h"

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif

namespace grpo::runtime {
namespace {

using Clock = std::chrono::steady_clock;

// Where things are inside the sandbox.
constexpr char kProgramPath[] = "/sandbox/main.py";
// Fds the child hands to bwrap: the marker pipe stays open into Python; bwrap reads the source fd.
constexpr int kMarkerFd = 3;
constexpr int kSourceFd = 4;
// Fd of the exec-error pipe in the grandchild between dup2 and exec (close-on-exec).
constexpr int kErrorFd = 5;
// Parent-side fds are moved at or above this number so that dup2 into 0..5 never clobbers them.
constexpr int kHighFd = 10;
// Tasks of a run besides the program's own: the runner, bwrap's monitor and the sandbox's pid 1.
constexpr int kBwrapTasks = 3;
// Room per slot in the RLIMIT_NPROC backstop for other processes of the sandbox uid and for
// sandboxes that are still being torn down.
constexpr int kNprocSlackPerSlot = 32;
// With cgroups, RLIMIT_NPROC is at least this: every pool and process on the host that uses the
// sandbox uid shares that one count, so a tight value would let one sandbox's fork bomb make the
// others' bwrap fail; the run's pids.max is the real limit then.
constexpr rlim_t kNprocFloorWithCgroups = 4096;
// After a kill, how long output is still drained before giving up on EOF.
constexpr double kDrainSeconds = 1.0;
// How long removing a run cgroup is retried while its tasks die.
constexpr double kCgroupRemoveSeconds = 2.0;
constexpr int kMaxInfraRetries = 3;

// `python3 -c` code that proves, through fd kMarkerFd, that Python started inside the sandbox and
// then runs the program as __main__ (sys.argv[0] and __file__ are its path).
std::string python_wrapper() {
  // clang-format off
  return "import os\n"
         "os.write(" + std::to_string(kMarkerFd) + ", b'1')\n"
         "os.close(" + std::to_string(kMarkerFd) + ")\n"
         "del os\n"
         "import runpy\n"
         "runpy.run_path('" + std::string(kProgramPath) + "', run_name='__main__')\n";
  // clang-format on
}

std::atomic<int> g_next_pool_id{0};
std::once_flag g_no_cgroup_logged;
std::once_flag g_no_memory_cgroup_logged;
std::once_flag g_unprivileged_logged;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string errno_text(int err) { return std::strerror(err); }

// ---- small file helpers (parent side only)

bool is_executable_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

Status write_file(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return unavailable("open " + path + ": " + errno_text(errno));
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) {
    return unavailable("write '" + text + "' to " + path + ": " + errno_text(err));
  }
  return ok_status();
}

// Pids listed in a cgroup's cgroup.procs (empty when it cannot be read).
std::vector<pid_t> cgroup_pids(const std::string& dir) {
  std::vector<pid_t> out;
  std::ifstream in(dir + "/cgroup.procs");
  long pid;
  while (in >> pid) out.push_back(static_cast<pid_t>(pid));
  return out;
}

// SIGKILLs every task listed in a cgroup (one pass).
void signal_cgroup(const std::string& dir) {
  for (pid_t pid : cgroup_pids(dir)) ::kill(pid, SIGKILL);
}

// Removes a cgroup. With `kill_tasks`, first kills what is left in it and retries while its tasks
// exit; false when the directory is still there after kCgroupRemoveSeconds. Without, one try.
bool remove_cgroup(const std::string& dir, bool kill_tasks = true) {
  const auto t0 = Clock::now();
  for (;;) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return true;
    if (!kill_tasks || errno != EBUSY || seconds_since(t0) > kCgroupRemoveSeconds) return false;
    signal_cgroup(dir);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// Removes a slot cgroup: its run-* children first.
bool remove_cgroup_tree(const std::string& dir, bool kill_tasks = true) {
  if (DIR* d = ::opendir(dir.c_str())) {
    std::vector<std::string> children;
    while (dirent* e = ::readdir(d)) {
      if (e->d_type == DT_DIR && std::strncmp(e->d_name, "run-", 4) == 0) {
        children.push_back(dir + "/" + e->d_name);
      }
    }
    ::closedir(d);
    for (const std::string& child : children) remove_cgroup(child, kill_tasks);
  }
  return remove_cgroup(dir, kill_tasks);
}

// Removes the empty grpo-sandbox-<pid>-* cgroups of processes that no longer exist (a pool that
// crashed: its sandboxes died with it through --die-with-parent). Kills nothing: a directory with
// tasks, e.g. of a live process in another pid namespace, stays.
void sweep_stale_cgroups(const std::string& root) {
  DIR* d = ::opendir(root.c_str());
  if (!d) return;
  std::vector<std::string> stale;
  const std::string prefix = "grpo-sandbox-";
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (e->d_type != DT_DIR || name.compare(0, prefix.size(), prefix) != 0) continue;
    long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    if (pid <= 0) continue;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
      stale.push_back(root + "/" + name);
  }
  ::closedir(d);
  for (const std::string& dir : stale) {
    if (remove_cgroup_tree(dir, /*kill_tasks=*/false)) {
      GRPO_LOG(kInfo) << "code sandbox: removed stale cgroup " << dir;
    }
  }
}

// Moves `fd` to a close-on-exec descriptor >= kHighFd (closing the original).
int move_high(int fd) {
  if (fd < 0 || fd >= kHighFd) return fd;
  int high = ::fcntl(fd, F_DUPFD_CLOEXEC, kHighFd);
  int err = errno;
  ::close(fd);
  errno = err;
  return high;
}

// Closes an fd once.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// A pipe with both ends close-on-exec and above kHighFd; the read end optionally non-blocking.
Status make_pipe(Fd* read_end, Fd* write_end, bool nonblocking_read) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return unavailable("pipe2: " + errno_text(errno));
  int r = move_high(fds[0]);
  int w = move_high(fds[1]);
  if (r < 0 || w < 0) {
    int err = errno;
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
    return unavailable("fcntl(F_DUPFD_CLOEXEC): " + errno_text(err));
  }
  read_end->reset(r);
  write_end->reset(w);
  if (nonblocking_read) ::fcntl(r, F_SETFL, ::fcntl(r, F_GETFL) | O_NONBLOCK);
  return ok_status();
}

// A sealed memfd holding `data`, positioned at 0.
Status make_source_fd(const std::string& data, Fd* out) {
  int fd = static_cast<int>(
      ::syscall(SYS_memfd_create, "grpo-sandbox-source", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (fd < 0) return unavailable("memfd_create: " + errno_text(errno));
  Fd holder(move_high(fd));
  if (!holder.valid()) return unavailable("fcntl(F_DUPFD_CLOEXEC): " + errno_text(errno));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(holder.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return unavailable("write memfd: " + errno_text(errno));
    done += static_cast<size_t>(n);
  }
#ifdef F_ADD_SEALS
  ::fcntl(holder.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
#endif
  if (::lseek(holder.get(), 0, SEEK_SET) != 0)
    return unavailable("lseek memfd: " + errno_text(errno));
  out->reset(holder.release());
  return ok_status();
}

// ---- the forked side: async-signal-safe calls only, everything prepared before fork.
//
// The fork makes a "runner" that joins the run's cgroups, becomes a child subreaper and forks
// again; that grandchild sets the rlimits, drops privileges and execs bwrap. bwrap's monitor exits
// as soon as the sandbox's pid 1 reports the program's status, before pid 1 is reaped; pid 1 is
// then orphaned to the runner (not to the host's init, which may reap it seconds later and so
// leave a zombie charged to the process budgets meanwhile). The runner reaps the monitor, pid 1
// and anything else orphaned to it, reports the monitor's wait status and exits. On SIGUSR1 from
// the parent (wall-clock deadline, output cap) it SIGKILLs the monitor, which it has not reaped
// yet, so the pid cannot have been reused; the rest of the sandbox dies with the monitor.

enum ChildStage : int {
  kStageParentGone = 1,
  kStageSetsid,
  kStageCgroup,
  kStageSubreaper,
  kStagePipe,
  kStageFork,
  kStageDup,
  kStageRlimit,
  kStageSetgroups,
  kStageSetgid,
  kStageSetuid,
  kStageExec,
};

const char* child_stage_name(int stage) {
  switch (stage) {
    case kStageParentGone:
      return "parent gone";
    case kStageSetsid:
      return "setsid";
    case kStageCgroup:
      return "joining the run cgroup";
    case kStageSubreaper:
      return "prctl";
    case kStagePipe:
      return "pipe";
    case kStageFork:
      return "fork";
    case kStageDup:
      return "dup2";
    case kStageRlimit:
      return "setrlimit";
    case kStageSetgroups:
      return "setgroups";
    case kStageSetgid:
      return "setresgid";
    case kStageSetuid:
      return "setresuid";
    case kStageExec:
      return "exec bwrap";
  }
  return "?";
}

// Messages from the runner on the status pipe.
enum RunnerMessage : int {
  kRunnerFailed = 1,   // {stage, errno}: the runner or the exec of bwrap failed
  kMonitorExited = 2,  // {wait status of bwrap's monitor, 0}
};

struct ChildLimit {
  int resource;
  struct rlimit value;
};

struct ChildSpec {
  const char* bwrap_path;
  char* const* argv;
  char* const* envp;
  std::vector<const char*> cgroup_procs;  // cgroup.procs files to join
  std::vector<ChildLimit> limits;
  bool drop_privileges;
  uid_t uid;
  gid_t gid;
  pid_t parent_pid;
  int stdin_fd, output_fd, marker_fd, source_fd, status_fd;
};

void write_message(int fd, int kind, int a, int b) {
  int msg[3] = {kind, a, b};
  ssize_t ignored = ::write(fd, msg, sizeof msg);
  (void)ignored;
}

[[noreturn]] void fail(int fd, int stage) {
  write_message(fd, kRunnerFailed, stage, errno);
  ::_exit(127);
}

// Closes every fd >= `from` except `keep` (close_range, or a loop where it is missing).
void close_fds_from(int from, int keep) {
  auto close_range_or_loop = [](unsigned first, unsigned last) {
    if (first > last) return;
    if (::syscall(SYS_close_range, first, last, 0) == 0) return;
    struct rlimit nofile;
    rlim_t max_fd = 65536;
    if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
      max_fd = std::min<rlim_t>(nofile.rlim_cur, 1 << 20);
    }
    for (rlim_t fd = first; fd <= last && fd < max_fd; ++fd) ::close(static_cast<int>(fd));
  };
  if (keep < from) {
    close_range_or_loop(static_cast<unsigned>(from), ~0U);
  } else {
    if (keep > from)
      close_range_or_loop(static_cast<unsigned>(from), static_cast<unsigned>(keep - 1));
    close_range_or_loop(static_cast<unsigned>(keep + 1), ~0U);
  }
}

// The grandchild: rlimits, unprivileged ids, bwrap. Failures go to `error_fd` (close-on-exec).
// Default dispositions for every signal: neither the runner nor bwrap may run the host's handlers
// or inherit its SIG_IGNs.
void reset_signal_dispositions() {
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
}

[[noreturn]] void exec_bwrap(const ChildSpec& spec, int error_fd) {
  // An empty mask: bwrap must not inherit the runner's blocked signals.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // All inherited fds are >= kHighFd, so these dup2s never overwrite a source still needed.
  if (::dup2(spec.stdin_fd, 0) < 0 || ::dup2(spec.output_fd, 1) < 0 ||
      ::dup2(spec.output_fd, 2) < 0 || ::dup2(spec.marker_fd, kMarkerFd) < 0 ||
      ::dup2(spec.source_fd, kSourceFd) < 0 || ::dup2(error_fd, kErrorFd) < 0) {
    fail(error_fd, kStageDup);
  }
  error_fd = kErrorFd;
  ::fcntl(kErrorFd, F_SETFD, FD_CLOEXEC);
  // Drop every other inherited fd (other threads may have opened some without O_CLOEXEC).
  close_fds_from(kErrorFd + 1, -1);
  for (const ChildLimit& limit : spec.limits) {
    if (::setrlimit(limit.resource, &limit.value) != 0) fail(error_fd, kStageRlimit);
  }
  if (spec.drop_privileges) {
    // Raw syscalls: only this (single) thread's credentials, no glibc cross-thread machinery.
    if (::syscall(SYS_setgroups, 0, nullptr) != 0) fail(error_fd, kStageSetgroups);
    if (::syscall(SYS_setresgid, spec.gid, spec.gid, spec.gid) != 0) fail(error_fd, kStageSetgid);
    if (::syscall(SYS_setresuid, spec.uid, spec.uid, spec.uid) != 0) fail(error_fd, kStageSetuid);
  }
  ::execve(spec.bwrap_path, spec.argv, spec.envp);
  fail(error_fd, kStageExec);
}

// The runner (see above). Reports on spec.status_fd and exits.
[[noreturn]] void runner_main(const ChildSpec& spec) {
  const int status_fd = spec.status_fd;
  reset_signal_dispositions();
  // Die with the thread that forked us; then the monitor dies too (--die-with-parent).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != spec.parent_pid) fail(status_fd, kStageParentGone);
  if (::setsid() < 0) fail(status_fd, kStageSetsid);
  if (!spec.cgroup_procs.empty()) {
    char digits[24];
    int len = 0;
    for (long pid = ::getpid(); pid > 0; pid /= 10) {
      digits[len++] = static_cast<char>('0' + pid % 10);
    }
    char text[24];
    for (int i = 0; i < len; ++i) text[i] = digits[len - 1 - i];
    for (const char* path : spec.cgroup_procs) {
      int fd = ::open(path, O_WRONLY | O_CLOEXEC);
      if (fd < 0) fail(status_fd, kStageCgroup);
      if (::write(fd, text, static_cast<size_t>(len)) != len) fail(status_fd, kStageCgroup);
      ::close(fd);
    }
  }
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) fail(status_fd, kStageSubreaper);
  // SIGCHLD and SIGUSR1 are taken with sigwaitinfo; block them before the monitor can exist.
  sigset_t waited;
  sigemptyset(&waited);
  sigaddset(&waited, SIGCHLD);
  sigaddset(&waited, SIGUSR1);
  ::sigprocmask(SIG_BLOCK, &waited, nullptr);
  // The grandchild's exec-error pipe, above the fds it dup2s into.
  int error_pipe[2];
  if (::pipe2(error_pipe, O_CLOEXEC) != 0) fail(status_fd, kStagePipe);
  const int error_r = ::fcntl(error_pipe[0], F_DUPFD_CLOEXEC, kHighFd);
  const int error_w = ::fcntl(error_pipe[1], F_DUPFD_CLOEXEC, kHighFd);
  if (error_r < 0 || error_w < 0) fail(status_fd, kStagePipe);
  ::close(error_pipe[0]);
  ::close(error_pipe[1]);

  const pid_t monitor = ::fork();
  if (monitor < 0) fail(status_fd, kStageFork);
  if (monitor == 0) exec_bwrap(spec, error_w);
  ::close(error_w);
  int exec_error[3] = {0, 0, 0};
  ssize_t got;
  do {
    got = ::read(error_r, exec_error, sizeof exec_error);
  } while (got < 0 && errno == EINTR);
  ::close(error_r);
  // Keep only the status pipe: the parent sees EOF on output once the sandbox is gone.
  close_fds_from(0, status_fd);
  if (got > 0) {
    write_message(status_fd, kRunnerFailed, exec_error[1], exec_error[2]);
    ::waitpid(monitor, nullptr, 0);
    ::_exit(127);
  }

  bool monitor_alive = true;
  int monitor_status = 0;
  for (;;) {
    for (;;) {
      int status;
      const pid_t w = ::waitpid(-1, &status, WNOHANG);
      if (w == monitor) {
        monitor_alive = false;
        monitor_status = status;
      }
      if (w > 0) continue;
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {  // ECHILD: the monitor, pid 1 and every orphan are reaped
        write_message(status_fd, kMonitorExited, monitor_status, 0);
        ::_exit(0);
      }
      break;  // children left, none exited yet
    }
    siginfo_t info;
    if (::sigwaitinfo(&waited, &info) == SIGUSR1 && monitor_alive) ::kill(monitor, SIGKILL);
  }
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Clamps a limit to the current hard limit when the caller may not raise it (not root).
struct rlimit clamp_limit(int resource, rlim_t value, rlim_t hard) {
  struct rlimit current;
  if (::geteuid() != 0 && ::getrlimit(resource, &current) == 0 &&
      current.rlim_max != RLIM_INFINITY) {
    value = std::min(value, current.rlim_max);
    hard = std::min(hard, current.rlim_max);
  }
  struct rlimit out;
  out.rlim_cur = value;
  out.rlim_max = std::max(value, hard);
  return out;
}

// A host path for /bin, /lib, ... inside the sandbox: the same symlink, or a read-only bind.
void add_usr_alias(const std::string& name, std::vector<std::string>* args) {
  const std::string host = "/" + name;
  struct stat st;
  if (::lstat(host.c_str(), &st) != 0) return;
  if (S_ISLNK(st.st_mode)) {
    char target[4096];
    ssize_t n = ::readlink(host.c_str(), target, sizeof target - 1);
    if (n <= 0) return;
    args->insert(args->end(), {"--symlink", std::string(target, static_cast<size_t>(n)), host});
  } else if (S_ISDIR(st.st_mode)) {
    args->insert(args->end(), {"--ro-bind", host, host});
  }
}

}  // namespace

const char* run_outcome_name(RunOutcome outcome) {
  switch (outcome) {
    case RunOutcome::kExited:
      return "exited";
    case RunOutcome::kSignaled:
      return "signaled";
    case RunOutcome::kTimeout:
      return "timeout";
    case RunOutcome::kOutputLimit:
      return "output_limit";
    case RunOutcome::kInfraError:
      return "infra_error";
  }
  return "?";
}

const char* code_verdict_name(CodeVerdict verdict) {
  switch (verdict) {
    case CodeVerdict::kPass:
      return "pass";
    case CodeVerdict::kFail:
      return "fail";
    case CodeVerdict::kTimeout:
      return "timeout";
    case CodeVerdict::kError:
      return "error";
  }
  return "?";
}

Status validate_sandbox_limits(const SandboxLimits& l) {
  auto bad = [](const char* field) {
    return invalid_argument(std::string("sandbox limit ") + field + " out of range");
  };
  if (!(l.cpu_seconds > 0 && l.cpu_seconds <= 3600)) return bad("cpu_seconds");
  if (!(l.wall_seconds > 0 && l.wall_seconds <= 3600)) return bad("wall_seconds");
  if (l.address_space_bytes < (64ull << 20)) return bad("address_space_bytes");
  if (l.memory_bytes != 0 && l.memory_bytes < (64ull << 20)) return bad("memory_bytes");
  if (l.max_processes < 1 || l.max_processes > 100000) return bad("max_processes");
  if (l.max_file_bytes < 4096) return bad("max_file_bytes");
  if (l.tmp_bytes < 4096) return bad("tmp_bytes");
  if (l.max_open_files < 16 || l.max_open_files > (1 << 20)) return bad("max_open_files");
  if (l.max_output_bytes < 1 || l.max_output_bytes > (64u << 20)) return bad("max_output_bytes");
  return ok_status();
}

// ---- SandboxPool

SandboxPool::SandboxPool(const SandboxPoolOptions& options)
    : options_(options), pool_id_(g_next_pool_id.fetch_add(1)) {}

StatusOr<std::unique_ptr<SandboxPool>> SandboxPool::create(const SandboxPoolOptions& options) {
  if (options.slots < 0 || options.slots > 4096) {
    return invalid_argument("SandboxPoolOptions.slots must be in [0, 4096]");
  }
  if (!is_executable_file(options.bwrap_path)) {
    return failed_precondition("bubblewrap not found or not executable at " + options.bwrap_path +
                               " (install the Debian package `bubblewrap`)");
  }
  if (!is_executable_file(options.python_path)) {
    return failed_precondition("python not found or not executable at " + options.python_path +
                               " (install the Debian package `python3`)");
  }
  std::unique_ptr<SandboxPool> pool(new SandboxPool(options));
  GRPO_RETURN_IF_ERROR(pool->init());
  if (options.probe) {
    RunResult probe = pool->run_python("print('ok')\n");
    if (probe.outcome != RunOutcome::kExited || probe.exit_code != 0 || probe.output != "ok\n") {
      return unavailable(std::string("code sandbox probe failed (") +
                         run_outcome_name(probe.outcome) + ", exit " +
                         std::to_string(probe.exit_code) + "): " + probe.error + " " +
                         probe.output.substr(0, 500));
    }
  }
  return pool;
}

Status SandboxPool::init() {
  int slots = options_.slots;
  if (slots == 0) slots = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  slots_.resize(static_cast<size_t>(slots));
  for (int i = slots - 1; i >= 0; --i) free_slots_.push_back(i);

  const bool root = ::geteuid() == 0;
  drop_privileges_ = root;
  if (!root) {
    std::call_once(g_unprivileged_logged, [] {
      GRPO_LOG(kWarn) << "code sandbox: not root, so the sandbox keeps this user's ids and has no "
                         "cgroup or RLIMIT_NPROC process limit (timeouts and the pid namespace "
                         "still apply)";
    });
  }

  // Slot cgroups: grpo-sandbox-<pid>-<pool>-<slot> in the pids (and memory) hierarchies.
  if (options_.use_cgroups && root) {
    sweep_stale_cgroups(options_.pids_cgroup_root);
    sweep_stale_cgroups(options_.memory_cgroup_root);
    const std::string stem =
        "/grpo-sandbox-" + std::to_string(::getpid()) + "-" + std::to_string(pool_id_) + "-";
    std::string failure;
    bool pids_ok = true;
    for (int i = 0; i < slots && pids_ok; ++i) {
      std::string dir = options_.pids_cgroup_root + stem + std::to_string(i);
      if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        failure = "mkdir " + dir + ": " + errno_text(errno);
        pids_ok = false;
      } else {
        slots_[static_cast<size_t>(i)].pids_dir = dir;
      }
    }
    bool memory_ok = pids_ok;
    std::string memory_failure;
    for (int i = 0; i < slots && memory_ok; ++i) {
      std::string dir = options_.memory_cgroup_root + stem + std::to_string(i);
      if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        memory_failure = "mkdir " + dir + ": " + errno_text(errno);
        memory_ok = false;
      } else {
        slots_[static_cast<size_t>(i)].memory_dir = dir;
      }
    }
    if (!pids_ok) {
      for (Slot& slot : slots_) remove_slot_cgroups(slot);
      std::call_once(g_no_cgroup_logged, [&] {
        GRPO_LOG(kWarn) << "code sandbox: cgroups unavailable (" << failure
                        << "); limiting processes with RLIMIT_NPROC only";
      });
    } else if (!memory_ok) {
      for (Slot& slot : slots_) {
        if (!slot.memory_dir.empty()) remove_cgroup(slot.memory_dir);
        slot.memory_dir.clear();
      }
      std::call_once(g_no_memory_cgroup_logged, [&] {
        GRPO_LOG(kWarn) << "code sandbox: memory cgroup unavailable (" << memory_failure
                        << "); memory is bounded by RLIMIT_AS per process only";
      });
    }
    cgroups_enabled_ = pids_ok;
    memory_cgroup_enabled_ = pids_ok && memory_ok;
  } else if (root) {
    std::call_once(g_no_cgroup_logged, [] {
      GRPO_LOG(kWarn) << "code sandbox: cgroups disabled by options; limiting processes with "
                         "RLIMIT_NPROC only";
    });
  }

  // The run-independent part of the bwrap command line.
  const std::string uid = std::to_string(drop_privileges_ ? options_.sandbox_uid : ::getuid());
  const std::string gid = std::to_string(drop_privileges_ ? options_.sandbox_gid : ::getgid());
  // clang-format off
  fixed_args_ = {options_.bwrap_path,
                 "--unshare-all", "--unshare-user", "--disable-userns",
                 "--die-with-parent", "--new-session",
                 "--uid", uid, "--gid", gid,
                 "--hostname", "sandbox",
                 "--ro-bind", "/usr", "/usr"};
  // clang-format on
  for (const char* alias : {"bin", "sbin", "lib", "lib32", "lib64", "libx32"}) {
    add_usr_alias(alias, &fixed_args_);
  }
  fixed_args_.insert(fixed_args_.end(), {"--proc", "/proc", "--dev", "/dev"});
  return ok_status();
}

void SandboxPool::remove_slot_cgroups(Slot& slot) {
  for (std::string* dir : {&slot.pids_dir, &slot.memory_dir}) {
    if (dir->empty()) continue;
    if (!remove_cgroup_tree(*dir)) {
      GRPO_LOG(kWarn) << "code sandbox: could not remove cgroup " << *dir << ": "
                      << errno_text(errno);
    }
    dir->clear();
  }
  slot.stale_runs.clear();
}

SandboxPool::~SandboxPool() {
  for (Slot& slot : slots_) remove_slot_cgroups(slot);
}

std::vector<std::string> SandboxPool::cgroup_dirs() const {
  std::vector<std::string> out;
  for (const Slot& slot : slots_) {
    if (!slot.pids_dir.empty()) out.push_back(slot.pids_dir);
    if (!slot.memory_dir.empty()) out.push_back(slot.memory_dir);
  }
  return out;
}

int SandboxPool::acquire_slot() {
  std::unique_lock<std::mutex> lock(mu_);
  slot_free_.wait(lock, [this] { return !free_slots_.empty(); });
  int slot = free_slots_.back();
  free_slots_.pop_back();
  return slot;
}

void SandboxPool::release_slot(int slot) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_slots_.push_back(slot);
  }
  slot_free_.notify_one();
}

RunResult SandboxPool::run_python(const std::string& source, const SandboxLimits& limits) {
  RunResult result;
  if (Status s = validate_sandbox_limits(limits); !s.ok()) {
    result.error = s.to_string();
  } else if (source.size() > limits.max_file_bytes) {
    result.error = "program of " + std::to_string(source.size()) + " bytes exceeds max_file_bytes";
  } else {
    int slot = acquire_slot();
    result = run_in_slot(slots_[static_cast<size_t>(slot)], source, limits);
    release_slot(slot);
  }
  runs_.fetch_add(1);
  if (result.outcome == RunOutcome::kInfraError) {
    infra_errors_.fetch_add(1);
    GRPO_LOG(kDebug) << "code sandbox: infrastructure error: " << result.error;
  }
  return result;
}

RunResult SandboxPool::run_in_slot(Slot& slot, const std::string& source,
                                   const SandboxLimits& limits) {
  RunResult result;
  const auto start = Clock::now();
  auto infra = [&](std::string why) {
    result.outcome = RunOutcome::kInfraError;
    result.error = std::move(why);
    result.wall_seconds = seconds_since(start);
    return result;
  };

  // Retry removing run cgroups that were still busy last time.
  if (!slot.stale_runs.empty()) {
    std::vector<std::string> still;
    for (const std::string& dir : slot.stale_runs) {
      if (::rmdir(dir.c_str()) != 0 && errno == EBUSY) still.push_back(dir);
    }
    slot.stale_runs.swap(still);
  }

  // Per-run cgroups, removed (with anything left in them) when this function returns.
  const std::string run_name = "/run-" + std::to_string(run_seq_.fetch_add(1));
  std::vector<std::string> run_dirs;
  struct RunCgroups {
    std::vector<std::string>* dirs;
    std::vector<std::string>* stale;
    ~RunCgroups() {
      for (const std::string& dir : *dirs) {
        if (!remove_cgroup(dir)) {
          GRPO_LOG(kWarn) << "code sandbox: run cgroup " << dir << " still busy; retrying later";
          stale->push_back(dir);
        }
      }
    }
  } run_cgroups{&run_dirs, &slot.stale_runs};
  std::vector<std::string> procs_files;
  if (!slot.pids_dir.empty()) {
    std::string dir = slot.pids_dir + run_name;
    if (::mkdir(dir.c_str(), 0700) != 0) return infra("mkdir " + dir + ": " + errno_text(errno));
    run_dirs.push_back(dir);
    Status s = write_file(dir + "/pids.max", std::to_string(limits.max_processes + kBwrapTasks));
    if (!s.ok()) return infra(s.message());
    procs_files.push_back(dir + "/cgroup.procs");
  }
  if (!slot.memory_dir.empty() && limits.memory_bytes > 0) {
    std::string dir = slot.memory_dir + run_name;
    if (::mkdir(dir.c_str(), 0700) != 0) return infra("mkdir " + dir + ": " + errno_text(errno));
    run_dirs.push_back(dir);
    Status s = write_file(dir + "/memory.limit_in_bytes", std::to_string(limits.memory_bytes));
    if (!s.ok()) return infra(s.message());
    // Swap accounting is optional; without it the limit covers RAM only.
    const std::string memsw = dir + "/memory.memsw.limit_in_bytes";
    if (::access(memsw.c_str(), F_OK) == 0)
      (void)write_file(memsw, std::to_string(limits.memory_bytes));
    procs_files.push_back(dir + "/cgroup.procs");
  }

  // Descriptors: output pipe, started-marker pipe, runner status pipe, /dev/null, source memfd.
  Fd out_r, out_w, marker_r, marker_w, status_r, status_w, source_fd;
  if (Status s = make_pipe(&out_r, &out_w, true); !s.ok()) return infra(s.message());
  if (Status s = make_pipe(&marker_r, &marker_w, true); !s.ok()) return infra(s.message());
  if (Status s = make_pipe(&status_r, &status_w, true); !s.ok()) return infra(s.message());
  if (Status s = make_source_fd(source, &source_fd); !s.ok()) return infra(s.message());
  Fd dev_null(move_high(::open("/dev/null", O_RDONLY | O_CLOEXEC)));
  if (!dev_null.valid()) return infra("open /dev/null: " + errno_text(errno));

  // The command line and the child's settings, all built before fork.
  std::vector<std::string> args = fixed_args_;
  // clang-format off
  args.insert(args.end(),
              {"--size", std::to_string(limits.tmp_bytes), "--tmpfs", "/tmp",
               "--ro-bind-data", std::to_string(kSourceFd), kProgramPath,
               "--remount-ro", "/", "--remount-ro", "/dev", "--chdir", "/tmp", "--clearenv",
               "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
               "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--setenv", "PYTHONHASHSEED", "0",
               "--setenv", "PYTHONUNBUFFERED", "1",
               "--", options_.python_path, "-c", python_wrapper()});
  // clang-format on
  std::vector<std::string> env = {"PATH=/usr/bin:/bin"};
  std::vector<char*> argv = c_strings(args);
  std::vector<char*> envp = c_strings(env);

  ChildSpec spec;
  spec.bwrap_path = options_.bwrap_path.c_str();
  spec.argv = argv.data();
  spec.envp = envp.data();
  for (const std::string& file : procs_files) spec.cgroup_procs.push_back(file.c_str());
  const rlim_t cpu = static_cast<rlim_t>(std::ceil(limits.cpu_seconds));
  const rlim_t nofile = static_cast<rlim_t>(limits.max_open_files);
  spec.limits = {
      {RLIMIT_CPU, clamp_limit(RLIMIT_CPU, cpu, cpu + 1)},
      {RLIMIT_AS, clamp_limit(RLIMIT_AS, limits.address_space_bytes, limits.address_space_bytes)},
      {RLIMIT_FSIZE, clamp_limit(RLIMIT_FSIZE, limits.max_file_bytes, limits.max_file_bytes)},
      {RLIMIT_CORE, clamp_limit(RLIMIT_CORE, 0, 0)},
      {RLIMIT_NOFILE, clamp_limit(RLIMIT_NOFILE, nofile, nofile)},
  };
  if (drop_privileges_) {
    // Counted per host uid over every slot (and any other user of that uid): the only process
    // limit without cgroups, a host-wide backstop with them.
    rlim_t nproc = static_cast<rlim_t>(slots()) *
                   static_cast<rlim_t>(limits.max_processes + kBwrapTasks + kNprocSlackPerSlot);
    if (cgroups_enabled_) nproc = std::max(nproc, kNprocFloorWithCgroups);
    spec.limits.push_back({RLIMIT_NPROC, clamp_limit(RLIMIT_NPROC, nproc, nproc)});
  }
  spec.drop_privileges = drop_privileges_;
  spec.uid = options_.sandbox_uid;
  spec.gid = options_.sandbox_gid;
  spec.parent_pid = ::getpid();
  spec.stdin_fd = dev_null.get();
  spec.output_fd = out_w.get();
  spec.marker_fd = marker_w.get();
  spec.source_fd = source_fd.get();
  spec.status_fd = status_w.get();

  const pid_t runner = ::fork();
  if (runner < 0) return infra("fork: " + errno_text(errno));
  if (runner == 0) runner_main(spec);
  out_w.reset();
  marker_w.reset();
  status_w.reset();
  source_fd.reset();
  dev_null.reset();

  // Asks the runner to kill the monitor (and so the sandbox); the runner is our unreaped child,
  // so its pid is still ours. Escalates to SIGKILL of the runner and of every task of the run's
  // pids cgroup, for a runner that does not finish in time.
  auto stop_sandbox = [&] { ::kill(runner, SIGUSR1); };
  auto kill_everything = [&] {
    ::kill(runner, SIGKILL);
    if (!slot.pids_dir.empty() && !run_dirs.empty()) signal_cgroup(run_dirs.front());
  };

  // Capture output until it closes, the deadline passes or the cap is reached.
  enum class Stop { kNone, kWall, kOutput, kPollError };
  Stop stop = Stop::kNone;
  bool started = false;
  bool marker_open = true;
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(limits.wall_seconds));
  const auto grace =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(kDrainSeconds));
  Clock::time_point drain_deadline = deadline;
  char buffer[1 << 16];
  for (bool out_open = true; out_open;) {
    const auto now = Clock::now();
    if (stop == Stop::kNone && now >= deadline) {
      stop = Stop::kWall;
      stop_sandbox();
      drain_deadline = now + grace;
    }
    if (stop != Stop::kNone && now >= drain_deadline) break;
    const auto until = stop == Stop::kNone ? deadline : drain_deadline;
    const int timeout_ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1);
    struct pollfd fds[2] = {{out_r.get(), POLLIN, 0},
                            {marker_open ? marker_r.get() : -1, POLLIN, 0}};
    const int ready = ::poll(fds, 2, timeout_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      result.error = "poll: " + errno_text(errno);
      stop = Stop::kPollError;
      stop_sandbox();
      break;
    }
    if (fds[1].revents != 0) {
      char byte;
      ssize_t n = ::read(marker_r.get(), &byte, 1);
      if (n == 1) started = true;
      if (n >= 0) marker_open = false;  // started, or closed before Python ran
    }
    if (fds[0].revents == 0) continue;
    for (;;) {
      ssize_t n = ::read(out_r.get(), buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;  // EAGAIN: drained for now
      if (n == 0) {
        out_open = false;
        break;
      }
      const size_t room = limits.max_output_bytes - result.output.size();
      if (static_cast<size_t>(n) > room) {
        result.output.append(buffer, room);
        result.truncated = true;
        if (stop == Stop::kNone) {
          stop = Stop::kOutput;
          stop_sandbox();
        }
        out_open = false;
        break;
      }
      result.output.append(buffer, static_cast<size_t>(n));
    }
  }
  if (!started && marker_open) {
    char byte;
    started = ::read(marker_r.get(), &byte, 1) == 1;
  }
  out_r.reset();
  marker_r.reset();

  // The runner's report; it closes the pipe when it exits, after reaping the whole sandbox.
  int message[3] = {0, 0, 0};
  size_t message_bytes = 0;
  bool escalated = false;
  // A sandbox that closed its output but still runs meets the wall clock here; a runner that
  // does not finish within `grace` of being stopped is killed with everything in the cgroup.
  Clock::time_point escalate_at = Clock::now() + grace;
  for (;;) {
    const auto now = Clock::now();
    if (stop == Stop::kNone && now >= deadline) {
      stop = Stop::kWall;
      stop_sandbox();
      escalate_at = now + grace;
    } else if (stop != Stop::kNone && !escalated && now >= escalate_at) {
      kill_everything();
      escalated = true;
    }
    const auto until = stop == Stop::kNone ? deadline : escalate_at;
    const int timeout_ms =
        escalated
            ? 100
            : static_cast<int>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1);
    struct pollfd pfd = {status_r.get(), POLLIN, 0};
    if (::poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR) break;
    if (pfd.revents == 0) continue;
    int chunk[3];
    const ssize_t n = ::read(status_r.get(), chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;  // EOF: the runner is gone
    if (message_bytes == 0 && n == static_cast<ssize_t>(sizeof chunk)) {
      std::memcpy(message, chunk, sizeof chunk);
      message_bytes = sizeof chunk;
    }
  }
  status_r.reset();
  int runner_status = 0;
  pid_t reaped;
  do {
    reaped = ::waitpid(runner, &runner_status, 0);
  } while (reaped < 0 && errno == EINTR);
  result.wall_seconds = seconds_since(start);
  if (reaped != runner) return infra("waitpid: " + errno_text(errno));
  const int status = message[1];
  if (message[0] == kRunnerFailed) {
    return infra(std::string("sandbox setup failed at ") + child_stage_name(message[1]) + ": " +
                 errno_text(message[2]));
  }
  if (message[0] != kMonitorExited && stop == Stop::kNone) {
    return infra("sandbox runner ended without a report (wait status " +
                 std::to_string(runner_status) + ")");
  }

  // What happened.
  std::ostringstream why;
  switch (stop) {
    case Stop::kOutput:
      result.outcome = RunOutcome::kOutputLimit;
      why << "output exceeded " << limits.max_output_bytes << " bytes";
      result.error = why.str();
      return result;
    case Stop::kWall:
      if (!started) {
        why << "sandbox did not start within the wall-clock limit of " << limits.wall_seconds
            << " s";
        return infra(why.str());
      }
      result.outcome = RunOutcome::kTimeout;
      why << "wall-clock limit of " << limits.wall_seconds << " s";
      result.error = why.str();
      return result;
    case Stop::kPollError:
      return infra(result.error);
    case Stop::kNone:
      break;
  }
  if (!started) {
    why << "bwrap failed before the program started (";
    if (WIFEXITED(status)) {
      why << "exit " << WEXITSTATUS(status);
    } else {
      why << "signal " << WTERMSIG(status);
    }
    why << "): " << result.output.substr(0, result.output.find('\n'));
    return infra(why.str());
  }
  if (WIFSIGNALED(status)) {
    why << "bwrap monitor killed by signal " << WTERMSIG(status);
    return infra(why.str());
  }
  // bwrap reports the program's death by signal N as exit status 128 + N.
  const int code = WEXITSTATUS(status);
  if (code > 128 && code < 128 + 65) {
    result.signal = code - 128;
    // SIGXCPU is the soft CPU limit. (A program that ignores it is SIGKILLed one CPU second
    // later; that is indistinguishable from other SIGKILLs and ends as kSignaled.)
    if (result.signal == SIGXCPU) {
      result.outcome = RunOutcome::kTimeout;
      why << "CPU time limit of " << cpu << " s";
      result.error = why.str();
    } else {
      result.outcome = RunOutcome::kSignaled;
    }
    return result;
  }
  result.outcome = RunOutcome::kExited;
  result.exit_code = code;
  return result;
}

// ---- scoring

std::string humaneval_program(const std::string& prompt, const std::string& completion,
                              const std::string& test, const std::string& entry_point) {
  return prompt + completion + "\n" + test + "\n" + "check(" + entry_point + ")\n";
}

CodeScore score_program(SandboxPool& pool, const std::string& program,
                        const SandboxLimits& limits) {
  CodeScore score;
  if (Status s = validate_sandbox_limits(limits); !s.ok()) {
    score.verdict = CodeVerdict::kError;
    score.run.error = s.to_string();
    return score;
  }
  for (int attempt = 0; attempt <= kMaxInfraRetries; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20 << (attempt - 1)));
    score.attempts = attempt + 1;
    score.run = pool.run_python(program, limits);
    if (score.run.outcome != RunOutcome::kInfraError) break;
  }
  switch (score.run.outcome) {
    case RunOutcome::kExited:
      score.verdict = score.run.exit_code == 0 ? CodeVerdict::kPass : CodeVerdict::kFail;
      break;
    case RunOutcome::kTimeout:
      score.verdict = CodeVerdict::kTimeout;
      break;
    case RunOutcome::kSignaled:
    case RunOutcome::kOutputLimit:
      score.verdict = CodeVerdict::kFail;
      break;
    case RunOutcome::kInfraError:
      score.verdict = CodeVerdict::kError;
      GRPO_LOG(kWarn) << "code sandbox: giving up after " << score.attempts
                      << " infrastructure errors: " << score.run.error;
      break;
  }
  return score;
}

CodeScore score_humaneval(SandboxPool& pool, const std::string& prompt,
                          const std::string& completion, const std::string& test,
                          const std::string& entry_point, const SandboxLimits& limits) {
  return score_program(pool, humaneval_program(prompt, completion, test, entry_point), limits);
}

CodeScorer make_code_scorer(SandboxPool& pool, const SandboxLimits& limits) {
  return [&pool, limits](const std::string& completion, const CodeTask& task) {
    CodeScore score = score_humaneval(pool, task.prompt, completion, task.test, task.entry_point, limits);
    CodeOutcome o;
    o.passed = score.verdict == CodeVerdict::kPass;
    o.pass_rate = o.passed ? 1.0 : 0.0;
    if (score.verdict == CodeVerdict::kError) {
      o.error = score.run.error.empty() ? "sandbox failure" : score.run.error;
    } else if (!o.passed) {
      o.detail = code_verdict_name(score.verdict);
    }
    return o;
  };
}

}  // namespace grpo::runtime
