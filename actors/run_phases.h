// The phases of a training run shared by the embedded run (actors/embedded_run.h) and the cluster
// services (actors/service.h): reading the configuration and datasets, the learner's starting
// policy (resume from the newest checkpoint, or cold-start SFT + held-out evaluation + checkpoint
// step 0), the durable stores, and the final evaluation table. Errors are printed as one
// "error: ..." line naming what failed; the functions return the process exit code to use.
// Called from the main thread of a process.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "actors/roles.h"
#include "actors/run_config.h"
#include "base/config.h"
#include "runtime/task.h"
#include "runtime/trainer.h"

namespace grpo::actors {

// Incremented by SIGINT/SIGTERM (install_interrupt_handlers); a second SIGINT exits at once.
extern std::atomic<int> g_interrupts;

struct RunInputs {
  RunSettings settings;                   // model.vocab_size set from the task tokenizer
  std::vector<runtime::Problem> dataset;  // task.train_file, or empty (synthetic stream)
  std::vector<runtime::Problem> held_out;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

// Settings, log level, datasets, run directory (with config.resolved.toml when write_resolved),
// compute threads, deterministic mode. nullopt: `*exit_code` says why (2 for bad input).
std::optional<RunInputs> load_run_inputs(const Config& config, bool write_resolved, int* exit_code);

struct PolicyStart {
  std::shared_ptr<runtime::Trainer> trainer;
  int64_t step = 0;        // GRPO step of the checkpoint it starts from
  double sft_pass = -1;    // held-out pass@1 after SFT
};

// Resume from the newest checkpoint, or (run_sft) cold-start SFT, evaluation and checkpoint step 0.
// Without run_sft a missing checkpoint is waited for (data-parallel learners 1..L-1 of a cluster).
std::optional<PolicyStart> prepare_policy(const RunInputs& in, bool run_sft, int* exit_code);

// A trainer loaded from the newest checkpoint (a data-parallel replica).
std::shared_ptr<runtime::Trainer> load_replica(const RunInputs& in, int rank, int* exit_code);

// The newest checkpoint's step (0 when none).
int64_t checkpoint_step(const RunSettings& st);

// The rollout store of run_dir/buffer, rewound to `step` (groups consumed after the checkpoint the
// learner resumes from become pending again: trained on exactly once across a restart).
std::shared_ptr<storage::RolloutStore> open_buffer_store(const RunSettings& st, int64_t step, int* exit_code);

// Waits for the learner's (done_atom, "learner", detail) — or another role's failure — turning a
// SIGINT/SIGTERM into a stop_atom for the learner (which checkpoints). Returns 0 completed,
// 130 interrupted, 1 failed.
int supervise_until_learner_done(caf::scoped_actor& supervisor, const caf::actor& learner);

// The actor system settings of every process of a run (2 scheduler threads, CAF's logger quiet).
caf::actor_system_config& configure_actor_system(caf::actor_system_config& cfg);

// The final held-out evaluation, the before/after table and eval.json. Returns the exit code.
int finish_run(const RunInputs& in, const runtime::Trainer& trainer, double sft_pass);

}  // namespace grpo::actors
