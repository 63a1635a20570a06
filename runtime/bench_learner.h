// The learner benchmark behind `grpo bench learner`:
//  1. tokens/s of one GRPO step (Trainer::grpo_step: fused logprobs at response positions, KL to the
//     reference, AdamW) on the demo model, next to a plain LibTorch implementation of the same step
//     (full logits, log_softmax + gather over every position, the same objective and optimiser),
//     both on the same weights and batches, measured in the same run;
//  2. the peak extra memory of the logprob computation (forward + backward) fused vs unfused at
//     the given vocabulary and token count, counted in LibTorch's CPU allocator.
// Pure interface (no LibTorch); call from one thread.
#pragma once

#include <cstdint>

#include "base/status.h"

namespace grpo::runtime {

struct LearnerBenchOptions {
  // The demo model (configs/local.toml's defaults) and a demo-sized batch.
  int64_t dim = 128, layers = 3, heads = 4, kv_heads = 4, ffn_hidden = 384;
  int64_t sequences = 128;        // groups_per_step x group_size
  int64_t prompt_tokens = 12;
  int64_t response_tokens = 48;   // responses are drawn in [response_tokens / 2, response_tokens]
  int32_t steps = 8;              // timed steps per side (after one warm-up step each); the median counts
  int64_t micro_batch_tokens = 0; // the learner's packing (OptimizerOptions::micro_batch_tokens)
  // The memory measurement.
  int64_t memory_vocab = 151936;
  int64_t memory_tokens = 4096;
  int64_t memory_hidden = 64;
  bool memory = true;             // false: skip it (it allocates about 2 x tokens x vocab x 4 bytes unfused)
  uint64_t seed = 1;
};

struct LearnerBenchResult {
  double tokens_per_s = 0;           // response tokens trained per second, GRPO step
  double baseline_tokens_per_s = 0;  // the plain LibTorch step
  int64_t vocab = 0;                 // the demo model's
  int64_t tokens_per_step = 0;
  double max_weight_diff = 0;        // fused vs plain weights after the timed steps (same update)
  int64_t fused_peak_bytes = 0;
  int64_t unfused_peak_bytes = 0;
  double fused_seconds = 0;          // forward + backward of the memory measurement
  double unfused_seconds = 0;
};

StatusOr<LearnerBenchResult> bench_learner(const LearnerBenchOptions& options);

}  // namespace grpo::runtime
