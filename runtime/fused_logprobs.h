// Per-token log-probabilities of target tokens straight from the last hidden states and the lm_head
// (or tied embedding) weight, without materialising the [tokens, vocab] logits or probabilities:
//
//   fused_token_logprobs(hidden, weight, targets, T)
//     == torch::log_softmax(hidden.matmul(weight.t()) / T, -1).gather(-1, targets[:, None])[:, 0]
//
// in value and in gradient (w.r.t. hidden and weight). The forward computes the logits `chunk`
// vocabulary rows at a time and folds each chunk into a per-token online logsumexp
// (kernels/cpu/token_logprobs.h); the backward recomputes each chunk's logits, turns them into the
// gradient of the logits in place and accumulates grad_hidden += G_c W_c and grad_weight[c] = G_c^T H.
// Peak extra memory is one [N, chunk] block plus O(N) state, against several [N, V] tensors for the
// unfused expression (at Qwen2's V = 151,936 and N = 4,096: 2.5 GB per [N, V] f32 tensor).
//
// On CUDA tensors (builds with GRPO_HAVE_CUDA) the same function runs on the kernels of
// kernels/cuda/token_logprobs.h (cuBLAS per chunk + online logsumexp kernels, default stream).
// Internal to runtime/ (it includes LibTorch). Stateless; callable from any thread (each call builds
// its own autograd node).
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace grpo::runtime {

inline constexpr int64_t kFusedLogprobsDefaultChunk = 4096;

// hidden [N, D] f32, weight [V, D] f32, targets [N] int64 in [0, V), temperature > 0, chunk >= 1.
// Returns logprobs [N] f32, differentiable w.r.t. hidden and weight. Non-contiguous inputs are
// copied once.
torch::Tensor fused_token_logprobs(const torch::Tensor& hidden, const torch::Tensor& weight,
                                   const torch::Tensor& targets, double temperature = 1.0,
                                   int64_t chunk = kFusedLogprobsDefaultChunk);

// The same, plus the entropy [N] (nats) of softmax(hidden W^T / T) per token, from the same
// chunked pass (a metric: detached, no gradient flows through it).
struct LogprobsAndEntropy {
  torch::Tensor logprobs;
  torch::Tensor entropy;
};
LogprobsAndEntropy fused_token_logprobs_entropy(const torch::Tensor& hidden,
                                                const torch::Tensor& weight,
                                                const torch::Tensor& targets,
                                                double temperature = 1.0,
                                                int64_t chunk = kFusedLogprobsDefaultChunk);

// The autograd function behind both (apply(hidden, weight, targets, T, chunk, with_entropy)
// returns {logprobs, entropy}; entropy has 0 elements unless with_entropy).
class FusedTokenLogprobs : public torch::autograd::Function<FusedTokenLogprobs> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const torch::Tensor& hidden,
                                                const torch::Tensor& weight,
                                                const torch::Tensor& targets, double temperature,
                                                int64_t chunk, bool with_entropy);
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs);
};

}  // namespace grpo::runtime
