// The policy-gradient objectives of the GRPO family over one packed batch (internal to runtime/;
// includes LibTorch). Trainer::grpo_step calls grpo_objective(); tests check it against values
// worked out by hand.
//
// Inputs are [B, T] per-token tensors (zeros where mask is 0): logp (current policy, with grad),
// behaviour (what the generator recorded), ref (frozen reference; undefined when kl_coef == 0),
// mask (1 on response tokens), and advantages [B] (computed per group by the caller:
// kernels::group_advantages with kGroupNorm for GRPO/DAPO, kMeanOnly for Dr. GRPO, kRloo).
//
// Per token, with A the sequence's advantage:
//   importance "behaviour":  r = exp(logp - behaviour), w = 1
//   importance "decoupled":  r = exp(logp - prox), w = exp(prox - behaviour) (capped at is_cap when
//                            is_cap > 0: truncated importance sampling), prox = logp.detach()
//   surrogate = min(r A, clip(r, 1 - clip_low, 1 + clip_high) A)
//   kl (x = ref - logp): k1 = -x, k2 = x^2 / 2, k3 = exp(x) - x - 1
//   per_token = -(w * surrogate - kl_coef * kl)
// Aggregation: "seq_mean" (DeepSeek-R1 GRPO: mean over each sequence's tokens, then over
// sequences), "token_mean" (DAPO: sum over all tokens / token count), "seq_sum_norm" (Dr. GRPO:
// sum over each sequence's tokens / length_norm, then mean over sequences).
// The means are over the whole batch given by `totals` (its sequences, tokens and longest response)
// when the tensors hold only a micro-batch or a data-parallel shard of it; the losses of the parts
// then add up to the whole batch's loss. Null totals: the tensors are the whole batch.
#pragma once

#include <torch/torch.h>

#include "runtime/trainer.h"

namespace grpo::runtime {

struct ObjectiveResult {
  torch::Tensor loss;      // scalar, with grad
  double kl = 0;           // token mean of the KL estimate
  double clip_fraction = 0;  // share of tokens where the clipped branch was taken
  double ratio_mean = 0, ratio_max = 0;
  double weight_mean = 0, weight_max = 0, weight_min = 0;  // importance weights w
  double weight_capped_fraction = 0;
  int64_t tokens = 0;
};

Status validate_objective(const GrpoOptions& options);

ObjectiveResult grpo_objective(const torch::Tensor& logp, const torch::Tensor& behaviour,
                               const torch::Tensor& ref, const torch::Tensor& mask,
                               const torch::Tensor& advantages, const GrpoOptions& options,
                               const BatchTotals* totals = nullptr);

}  // namespace grpo::runtime
