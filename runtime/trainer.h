// Trainer: a policy being optimised, its frozen reference, and its optimiser (LibTorch-free header).
//
// sft_step: cross-entropy on response tokens only (the cold start, rejection-sampling SFT, distillation).
// grpo_step: the DeepSeek-R1 GRPO objective on a batch whose advantages the caller computed:
//   per token  ratio = exp(logp - logp_behaviour),
//              surrogate = min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A),
//              kl = exp(ref - logp) - (ref - logp) - 1            (the k3 estimator),
//              loss = -(surrogate - beta * kl),
//   averaged over the tokens of each sequence, then over sequences; AdamW; global-norm clipping.
//   GrpoOptions selects the variants (DAPO clip-higher and token-mean, Dr. GRPO's constant length
//   normaliser, k1/k2/k3 KL, decoupled PPO with truncated importance sampling): see objectives.h.
//   The behaviour logprobs are what the generator recorded, so stale samples are corrected by the
//   ratio and its clip. A non-finite loss or gradient skips the update and says so in the stats.
//
// Micro-batches: a step's batch is packed into micro-batches of at most
// OptimizerOptions::micro_batch_tokens padded tokens (longest sequences first) whose gradients
// accumulate before the one optimiser update; every normaliser (sequence count, token count, longest
// response) is the whole batch's, so the update does not depend on the packing.
// Data parallelism: L trainers that start from the same weights each run grpo_step on their own
// shard with the whole batch's BatchTotals and a GradientReducer (a sum all-reduce across the L);
// they then apply the same summed gradient and stay identical, and the update equals one trainer's
// on the whole batch up to float summation order.
// Logprobs come from runtime/fused_logprobs (the [tokens, vocab] matrix is never materialised) and
// only at response positions.
// Owned and called by one thread (the learner).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "runtime/model_config.h"
#include "runtime/weights.h"

namespace grpo::runtime {

struct OptimizerOptions {
  double lr = 1e-3;
  double weight_decay = 0.0;
  double beta1 = 0.9;
  double beta2 = 0.99;
  double max_grad_norm = 1.0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;           // for the cosine schedule
  std::string schedule = "constant";  // "constant" | "cosine"
  double min_lr_ratio = 0.1;         // cosine floor as a fraction of lr
  // Padded tokens (sequences x longest sequence) per forward/backward pass; 0: the whole batch at
  // once. A single sequence longer than the budget still forms its own micro-batch.
  int64_t micro_batch_tokens = 0;
};

struct GrpoOptions {
  double clip_eps = 0.2;        // clip_low; also clip_high unless clip_high >= 0
  double clip_high = -1;        // DAPO clip-higher epsilon; < 0: same as clip_eps
  double kl_coef = 0.04;        // beta; 0 skips the reference model entirely
  std::string kl_estimator = "k3";        // "k1" | "k2" | "k3"
  std::string aggregation = "seq_mean";   // "seq_mean" (GRPO) | "token_mean" (DAPO) | "seq_sum_norm" (Dr. GRPO)
  double length_norm = 0;       // seq_sum_norm's constant; 0: the batch's longest response
  std::string importance = "behaviour";   // "behaviour" | "decoupled" (see runtime/objectives.h)
  double is_cap = 0;            // decoupled: cap of the behaviour importance weight (0: none)
  // Sampling temperature of the rollouts. Policy and reference logprobs are taken from logits / T,
  // the distribution the generators sampled from, so the ratio compares like with like.
  double temperature = 1.0;
};

struct TrainSample {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> response_ids;
  std::vector<float> behaviour_logprobs;  // GRPO only: one per response id
  float advantage = 0;                    // GRPO only
};

// Normalisers of a whole (possibly sharded) batch: its sequence count, response-token count and
// longest response. batch_totals() computes them for one batch.
struct BatchTotals {
  int64_t sequences = 0;
  int64_t tokens = 0;
  int64_t max_response = 0;
};
BatchTotals batch_totals(const std::vector<TrainSample>& batch);

// Sums `n` floats element-wise across every data-parallel replica, in place, leaving every replica
// with the same bytes (e.g. cluster::RingAllReduce::all_reduce_sum).
using GradientReducer = std::function<Status(float* data, size_t n)>;

struct StepStats {
  double loss = 0;
  double kl = 0;
  double clip_fraction = 0;
  double ratio_mean = 0;
  double ratio_max = 0;
  double entropy = 0;
  double grad_norm = 0;
  double lr = 0;
  int64_t tokens = 0;
  double weight_mean = 0;  // importance weights (decoupled mode; 1 otherwise)
  double weight_max = 0;
  double weight_capped_fraction = 0;
  int64_t micro_batches = 0;
  bool skipped = false;  // non-finite loss or gradient: no update was applied
};

class Trainer {
 public:
  static StatusOr<std::unique_ptr<Trainer>> create(const ModelConfig& config,
                                                   const OptimizerOptions& options, uint64_t seed);
  // A trainer whose policy and reference start from a Hugging Face checkpoint directory
  // (config.json + safetensors, f32/bf16/f16; trained in f32).
  static StatusOr<std::unique_ptr<Trainer>> load_hf(const std::string& dir, const OptimizerOptions& options);
  // Writes the policy as a Hugging Face checkpoint (config.json + model.safetensors) into `dir`,
  // in `dtype` ("float32" or "bfloat16").
  Status save_hf(const std::string& dir, const std::string& dtype = "float32") const;
  ~Trainer();

  // `totals`: the whole batch's normalisers when `batch` is this replica's shard (null: `batch`'s
  // own). With a reducer set, loss, token counts and the means in StepStats are the whole batch's.
  StatusOr<StepStats> sft_step(const std::vector<TrainSample>& batch,
                               const BatchTotals* totals = nullptr);
  StatusOr<StepStats> grpo_step(const std::vector<TrainSample>& batch, const GrpoOptions& options,
                                const BatchTotals* totals = nullptr);

  // Data-parallel gradient reduction (null: this trainer alone).
  void set_gradient_reducer(GradientReducer reducer);

  // Starts a new phase (fresh AdamW state, new schedule, step counter at 0).
  void reset_optimizer(const OptimizerOptions& options);
  // The reference policy becomes a frozen copy of the current weights.
  void freeze_reference();

  WeightBlob export_weights() const;
  Status import_weights(const WeightBlob& blob);
  const ModelConfig& config() const;
  int64_t optimizer_step() const;

  // Writes into `dir` (which must exist): the model as a Hugging Face checkpoint (config.json +
  // model.safetensors, f32), reference.safetensors, and state.safetensors (AdamW moments and step
  // per parameter, the LibTorch CPU generator state; the optimiser step and schedule in its
  // metadata). load() restores all of it, so training continues bit-exactly.
  Status save(const std::string& dir) const;
  Status load(const std::string& dir);
  // Makes LibTorch pick deterministic algorithms (process-wide).
  static void set_deterministic(bool on);

 private:
  Trainer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grpo::runtime
