// Per-token log-probabilities of target tokens, computed one vocabulary chunk at a time (CPU
// reference numerics for the fused lm_head + log-softmax + gather in runtime/fused_logprobs.h).
//
// The caller produces the logits of tokens [0, n) for vocabulary columns [col0, col0 + cols) (a
// row-major [n, cols] block with leading dimension ld >= cols) and feeds the chunks in any order:
//
//   forward   token_logprobs_init(n, state)                     // max = -inf, sum = 0, target = 0
//             token_logprobs_chunk_forward(chunk k, ...)        // for every chunk of the vocabulary
//             token_logprobs_finalize(n, state, out_logprobs)   // logprob = target - logsumexp
//   backward  token_logprobs_chunk_backward(chunk k, ...)       // logits -> d loss / d logits
//
// With x = logit / temperature, logprob_i = x_{i,t_i} - logsumexp_j x_{i,j}. The forward keeps per
// token a running max and a running sum of exp(x - max) (online logsumexp), so no [n, vocab] matrix
// ever exists. The backward turns a logits chunk, in place, into the gradient of
// sum_i grad_out_i * logprob_i with respect to the raw logits:
//   d/d logit_{i,j} = grad_out_i * ([j == t_i] - softmax_{i,j}) / temperature.
// Targets must lie in [0, vocab). Rows are independent: the functions parallelise over tokens with
// OpenMP. The state arrays are owned by the caller; one call at a time per state.
#pragma once

#include <cstdint>

namespace grpo::kernels {

// Running per-token state of the online logsumexp; caller-owned arrays of n floats.
struct TokenLogprobState {
  float* run_max;       // max of x seen so far (-inf before the first chunk)
  float* run_sum;       // sum of exp(x - run_max) seen so far
  float* target_logit;  // x at the target column, once its chunk has been seen
  // Optional (null: not tracked): sum of exp(x - run_max) * x, for the entropy of softmax(x),
  // entropy = logsumexp - run_xsum / run_sum (a metric: it has no backward).
  float* run_xsum = nullptr;
};

void token_logprobs_init(int64_t n, TokenLogprobState state);

// Folds one logits chunk (columns [col0, col0 + cols)) into the state.
void token_logprobs_chunk_forward(const float* logits, int64_t n, int64_t cols, int64_t ld,
                                  int64_t col0, const int64_t* targets, float inv_temperature,
                                  TokenLogprobState state);

// out_logprobs[i] = target_logit - logsumexp; out_lse[i] = logsumexp (of x = logit / temperature),
// kept for the backward. Either output may be null.
void token_logprobs_finalize(int64_t n, TokenLogprobState state, float* out_logprobs,
                             float* out_lse);

// out_entropy[i] = entropy of softmax(x_i) in nats; needs state.run_xsum.
void token_logprobs_entropy(int64_t n, TokenLogprobState state, float* out_entropy);

// Overwrites the logits chunk with d(sum_i grad_out_i * logprob_i) / d logits (see above), using the
// logsumexp from the forward.
void token_logprobs_chunk_backward(float* logits_to_grad, int64_t n, int64_t cols, int64_t ld,
                                   int64_t col0, const int64_t* targets, const float* lse,
                                   const float* grad_out, float inv_temperature);

}  // namespace grpo::kernels
