// Code-execution reward sandbox: runs model-written Python programs in bubblewrap and scores
// HumanEval-style completions by their exit status.
//
// Each run forks a "runner" that joins a fresh per-run cgroup (pids, and memory when available)
// and becomes a child subreaper, and from it a child that sets rlimits (CPU, address space,
// processes, file size, open files, no core dumps), drops to an unprivileged host uid/gid (65534
// by default, when started as root) and execs bwrap with a minimal read-only view: /usr plus the
// /bin, /lib* links, a private /proc and /dev, a private size-capped tmpfs /tmp that is also the
// working directory, the program itself read-only at /sandbox/main.py, and nothing else (no /etc,
// /home, /root, host /tmp or project files). Every namespace is unshared (no network: the sandbox
// has only its own loopback), nested user namespaces are disabled, / and /dev are remounted
// read-only, the environment is cleared to PATH, HOME=/tmp, PYTHONDONTWRITEBYTECODE=1,
// PYTHONHASHSEED=0 and PYTHONUNBUFFERED=1 (plus PWD from bwrap and LC_CTYPE from Python's locale
// coercion), stdin is /dev/null. The source never touches the host disk: it is written to a
// sealed memfd that bwrap copies into the sandbox.
//
// The parent captures stdout+stderr (merged) with poll(), up to a byte cap, and enforces a wall-
// clock deadline. On the deadline or the cap it has the runner SIGKILL bwrap's monitor; with
// --unshare-pid and --die-with-parent everything inside dies with the sandbox's pid 1, including
// processes started in a new session (the parent SIGKILLs the runner and every task of the run's
// cgroup if that takes more than a second). The runner reaps the monitor, the sandbox's pid 1 and
// any other orphan, reports the monitor's status and exits; the parent reaps the runner, closes
// every fd and removes the run's cgroups: a run leaks no process, zombie, fd or file.
//
// Why the runner (measured here): bwrap's monitor exits before it reaps the sandbox's pid 1, so
// pid 1 is orphaned; left to the host's init (this VM's reaps about 1.6 s later) it stays a zombie
// charged to the pids cgroup and to RLIMIT_NPROC of the sandbox uid. That was the "a finished
// sandbox stays counted for 1.5-2 s" effect in shared/notes/sandbox.md, which made a budget
// shared by consecutive sandboxes run out under churn ("bwrap: Can't fork"). With the runner as
// subreaper nothing lingers (a slot's pids.current is 0 right after a run). Each run still gets
// its own cgroup `run-N` (pids.max = max_processes + 3 for runner, monitor and pid 1) under its
// slot's `grpo-sandbox-<pid>-<pool>-<slot>` in /sys/fs/cgroup/pids (and .../memory), so a budget
// never carries over from one run to the next. RLIMIT_NPROC counts every process of the sandbox
// uid on the host (all slots, all pools): with cgroups it is only a backstop (at least 4096, so
// that one sandbox's fork bomb cannot make other sandboxes fail to start). Without cgroups (not
// root, or no cgroup v1 mount) the pool degrades to rlimits only and logs that once; processes
// are then bounded by RLIMIT_NPROC = slots * (max_processes + 3 + 32) when root, a budget shared
// by all sandboxes of that uid (a start that finds it spent is kInfraError), and only by the
// timeouts and the pid namespace when not root.
//
// Infrastructure failures (fork/pipe/memfd/cgroup errors, bwrap failing before Python started,
// e.g. "Can't fork") are RunOutcome::kInfraError: retry them, never score them as wrong. A Python
// wrapper writes one byte to an inherited pipe before running the program, so "Python started"
// is known exactly and a program cannot fake an infrastructure failure.
//
// Ownership and threads: SandboxPool owns its slots and their cgroup directories (removed in the
// destructor; directories left by a crashed process are swept by the next create()). run_python()
// and the score_* functions may be called from any number of threads at once; each call blocks
// until a slot is free and then for about wall_seconds at most (a few seconds more only when a
// killed sandbox is slow to die). Destroy the pool only when no call is in flight. fork() copies
// the caller's page tables, so keep the pool in a small process (the verifier role), not in one
// that holds model weights. No LibTorch here.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/status.h"
#include "runtime/rewards.h"

namespace grpo::runtime {

// Per-run resource limits. Defaults suit HumanEval-sized programs.
struct SandboxLimits {
  // CPU time of each process (RLIMIT_CPU soft limit, rounded up to whole seconds; SIGXCPU there,
  // SIGKILL one second later). A CPU-bound loop ends as kTimeout.
  double cpu_seconds = 5;
  // Wall-clock time from fork to kill, including sandbox start-up (about 20-50 ms).
  double wall_seconds = 10;
  // RLIMIT_AS of each process: a larger allocation fails with MemoryError.
  uint64_t address_space_bytes = 1ull << 30;
  // memory.limit_in_bytes of the whole sandbox (all processes plus its tmpfs pages) when the
  // memory cgroup is available; 0 disables it.
  uint64_t memory_bytes = 2ull << 30;
  // Processes (and threads) the program may have at once, itself included: the run's pids.max
  // is this plus 3 (the runner, bwrap's monitor and the sandbox's pid 1). Exact only with cgroups.
  int max_processes = 32;
  // RLIMIT_FSIZE: the largest file any process may write (Python then gets EFBIG). The program
  // source must not be larger (bwrap copies it into the sandbox under this limit).
  uint64_t max_file_bytes = 16ull << 20;
  // Size of the private tmpfs mounted at /tmp (its pages are memory, also counted in memory_bytes).
  uint64_t tmp_bytes = 64ull << 20;
  // RLIMIT_NOFILE.
  int max_open_files = 64;
  // stdout+stderr bytes kept; more output kills the run (kOutputLimit).
  std::size_t max_output_bytes = 64 << 10;
};

// OK, or InvalidArgument naming the first field out of range (non-positive, or wall/cpu over an
// hour, or an output cap over 64 MiB).
Status validate_sandbox_limits(const SandboxLimits& limits);

enum class RunOutcome {
  kExited,       // the program ended by itself with exit_code (0 = success)
  kSignaled,     // the program was killed by `signal` (e.g. SIGKILL by the memory cgroup)
  kTimeout,      // wall-clock deadline hit, or CPU limit (SIGXCPU) reached
  kOutputLimit,  // wrote more than max_output_bytes; killed, output truncated
  kInfraError,   // the sandbox failed before the program ran (fork, pipe, cgroup, bwrap): retry
};

// "exited", "signaled", "timeout", "output_limit", "infra_error".
const char* run_outcome_name(RunOutcome outcome);

struct RunResult {
  RunOutcome outcome = RunOutcome::kInfraError;
  int exit_code = -1;       // kExited: the program's exit status; otherwise -1
  int signal = 0;           // kSignaled, or kTimeout by SIGXCPU: the signal number; otherwise 0
  std::string output;       // stdout and stderr interleaved, at most max_output_bytes
  bool truncated = false;   // output was cut at max_output_bytes
  double wall_seconds = 0;  // fork to reap
  std::string error;        // why, for kTimeout / kOutputLimit / kInfraError; else empty
};

struct SandboxPoolOptions {
  // Programs run at once; 0 means std::thread::hardware_concurrency().
  int slots = 0;
  std::string bwrap_path = "/usr/bin/bwrap";
  std::string python_path = "/usr/bin/python3";
  // Host uid/gid the sandbox runs as when the pool's process is root (nobody/nogroup by default);
  // also the uid/gid seen inside. Ignored (the caller's ids are kept) when not root.
  uint32_t sandbox_uid = 65534;
  uint32_t sandbox_gid = 65534;
  // Use per-run cgroup v1 pids/memory limits when possible (root and the hierarchies mounted).
  bool use_cgroups = true;
  std::string pids_cgroup_root = "/sys/fs/cgroup/pids";
  std::string memory_cgroup_root = "/sys/fs/cgroup/memory";
  // Run `print("ok")` once in create() so a broken bwrap setup fails there with a clear status.
  bool probe = true;
};

// A fixed set of sandbox slots shared by many threads. Owns its slots and their cgroup
// directories; every public method is thread-safe. See the file comment.
class SandboxPool {
 public:
  // FailedPrecondition when bwrap or python is missing or not executable, Unavailable when the
  // probe program does not run (e.g. user namespaces disabled), InvalidArgument for bad options.
  static StatusOr<std::unique_ptr<SandboxPool>> create(const SandboxPoolOptions& options = {});
  ~SandboxPool();
  SandboxPool(const SandboxPool&) = delete;
  SandboxPool& operator=(const SandboxPool&) = delete;

  // Runs `source` as a Python program (`python3 /sandbox/main.py` semantics) in a free slot,
  // blocking until one is free. Never throws; invalid limits or a source larger than
  // max_file_bytes come back as kInfraError with the reason in `error`.
  RunResult run_python(const std::string& source, const SandboxLimits& limits = {});

  int slots() const { return static_cast<int>(slots_.size()); }
  // Per-run pids (and maybe memory) cgroups are in use.
  bool cgroups_enabled() const { return cgroups_enabled_; }
  bool memory_cgroup_enabled() const { return memory_cgroup_enabled_; }
  // The sandbox runs as options.sandbox_uid on the host (the pool's process is root).
  bool drops_privileges() const { return drop_privileges_; }
  // Absolute paths of the slot cgroup directories this pool created (empty without cgroups).
  std::vector<std::string> cgroup_dirs() const;
  // Runs finished since creation, and how many of them were kInfraError.
  uint64_t runs() const { return runs_.load(); }
  uint64_t infra_errors() const { return infra_errors_.load(); }

 private:
  struct Slot {
    std::string pids_dir;                 // slot cgroup in the pids hierarchy, or empty
    std::string memory_dir;               // slot cgroup in the memory hierarchy, or empty
    std::vector<std::string> stale_runs;  // run cgroups whose removal failed; retried later
  };

  explicit SandboxPool(const SandboxPoolOptions& options);
  Status init();
  int acquire_slot();
  void release_slot(int slot);
  RunResult run_in_slot(Slot& slot, const std::string& source, const SandboxLimits& limits);
  void remove_slot_cgroups(Slot& slot);

  SandboxPoolOptions options_;
  int pool_id_ = 0;
  bool drop_privileges_ = false;
  bool cgroups_enabled_ = false;
  bool memory_cgroup_enabled_ = false;
  std::vector<std::string> fixed_args_;  // bwrap arguments that do not depend on the run
  std::vector<Slot> slots_;

  std::mutex mu_;
  std::condition_variable slot_free_;
  std::vector<int> free_slots_;  // guarded by mu_

  std::atomic<uint64_t> run_seq_{0};
  std::atomic<uint64_t> runs_{0};
  std::atomic<uint64_t> infra_errors_{0};
};

// ---- scoring

enum class CodeVerdict {
  kPass,     // exit status 0 within the limits
  kFail,     // any other end: an assertion, an exception, a signal, too much output
  kTimeout,  // wall-clock or CPU limit
  kError,    // the sandbox itself failed on every attempt: not the sample's fault, do not score
};

// "pass", "fail", "timeout", "error".
const char* code_verdict_name(CodeVerdict verdict);

struct CodeScore {
  CodeVerdict verdict = CodeVerdict::kError;
  RunResult run;     // the last attempt
  int attempts = 0;  // 1 + retries after kInfraError
};

// The HumanEval program: prompt + completion + "\n" + test + "\n" + "check(entry_point)\n".
std::string humaneval_program(const std::string& prompt, const std::string& completion,
                              const std::string& test, const std::string& entry_point);

// Runs `program` and maps the result to a verdict; kInfraError is retried up to 3 more times
// (after 20, 40, 80 ms) before kError. Invalid limits give kError at once.
CodeScore score_program(SandboxPool& pool, const std::string& program,
                        const SandboxLimits& limits = {});

// score_program(pool, humaneval_program(prompt, completion, test, entry_point), limits).
CodeScore score_humaneval(SandboxPool& pool, const std::string& prompt,
                          const std::string& completion, const std::string& test,
                          const std::string& entry_point, const SandboxLimits& limits = {});

// The code term of runtime/rewards.h backed by this pool: the completion runs in the HumanEval
// layout; kPass passes, kFail and kTimeout fail (detail "fail" / "timeout"), kError (an
// infrastructure fault after retries) sets CodeOutcome::error. The pool must outlive the scorer;
// the scorer is thread-safe.
CodeScorer make_code_scorer(SandboxPool& pool, const SandboxLimits& limits = {});

}  // namespace grpo::runtime
