// Checkpoint directories of a run: <run_dir>/checkpoints/step-00000050/ holding what Trainer::save
// writes (config.json + model.safetensors, a Hugging Face checkpoint any tool can load;
// reference.safetensors; state.safetensors with the optimiser, schedule and RNG state) + meta.json
// (run step, buffer cursor, the SFT baseline). A checkpoint is written into a temporary directory, every file fsynced,
// then renamed into place, so a crash leaves either the old or the new checkpoint, never half of one.
// Only the newest `keep` are kept. Called by the learner's thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/status.h"
#include "runtime/trainer.h"

namespace grpo::runtime {

struct CheckpointInfo {
  int64_t step = 0;       // GRPO learner steps done (0: right after cold-start SFT)
  std::string path;
  double sft_pass_at_1 = -1;  // held-out pass@1 where GRPO started (recorded at step 0)
  uint64_t buffer_cursor = 0;  // groups the learner has consumed from the rollout buffer
};

Status save_checkpoint(const Trainer& trainer, const std::string& run_dir, const CheckpointInfo& info,
                       int64_t keep);
// The newest complete checkpoint, or nullopt when the run has none.
StatusOr<std::optional<CheckpointInfo>> latest_checkpoint(const std::string& run_dir);
Status load_checkpoint(Trainer& trainer, const CheckpointInfo& info);

}  // namespace grpo::runtime
