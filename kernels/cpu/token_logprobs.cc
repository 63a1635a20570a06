#include "kernels/cpu/token_logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace grpo::kernels {

void token_logprobs_init(int64_t n, TokenLogprobState state) {
  for (int64_t i = 0; i < n; ++i) {
    state.run_max[i] = -std::numeric_limits<float>::infinity();
    state.run_sum[i] = 0.0f;
    state.target_logit[i] = 0.0f;
    if (state.run_xsum != nullptr) state.run_xsum[i] = 0.0f;
  }
}

void token_logprobs_chunk_forward(const float* logits, int64_t n, int64_t cols, int64_t ld,
                                  int64_t col0, const int64_t* targets, float inv_temperature,
                                  TokenLogprobState state) {
  if (cols <= 0) return;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float* row = logits + i * ld;
    float chunk_max = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < cols; ++j) chunk_max = std::max(chunk_max, row[j]);
    chunk_max *= inv_temperature;  // inv_temperature > 0, so the max commutes with the scaling
    const float old_max = state.run_max[i];
    const float new_max = std::max(old_max, chunk_max);
    float sum = 0.0f;
    if (new_max != -std::numeric_limits<float>::infinity()) {
      const float rescale =
          old_max == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(old_max - new_max);
      if (state.run_xsum != nullptr) {
        float xsum = 0.0f;
        for (int64_t j = 0; j < cols; ++j) {
          const float x = row[j] * inv_temperature;
          const float e = std::exp(x - new_max);
          sum += e;
          xsum += e * x;
        }
        state.run_xsum[i] = state.run_xsum[i] * rescale + xsum;
      } else {
        for (int64_t j = 0; j < cols; ++j) sum += std::exp(row[j] * inv_temperature - new_max);
      }
      state.run_sum[i] = state.run_sum[i] * rescale + sum;
      state.run_max[i] = new_max;
    }
    const int64_t t = targets[i] - col0;
    if (t >= 0 && t < cols) state.target_logit[i] = row[t] * inv_temperature;
  }
}

void token_logprobs_finalize(int64_t n, TokenLogprobState state, float* out_logprobs,
                             float* out_lse) {
  for (int64_t i = 0; i < n; ++i) {
    const float lse = state.run_max[i] + std::log(state.run_sum[i]);
    if (out_lse != nullptr) out_lse[i] = lse;
    if (out_logprobs != nullptr) out_logprobs[i] = state.target_logit[i] - lse;
  }
}

void token_logprobs_entropy(int64_t n, TokenLogprobState state, float* out_entropy) {
  for (int64_t i = 0; i < n; ++i) {
    const float lse = state.run_max[i] + std::log(state.run_sum[i]);
    out_entropy[i] = lse - state.run_xsum[i] / state.run_sum[i];
  }
}

void token_logprobs_chunk_backward(float* logits_to_grad, int64_t n, int64_t cols, int64_t ld,
                                   int64_t col0, const int64_t* targets, const float* lse,
                                   const float* grad_out, float inv_temperature) {
  if (cols <= 0) return;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float* row = logits_to_grad + i * ld;
    const float g = grad_out[i] * inv_temperature;
    const float l = lse[i];
    for (int64_t j = 0; j < cols; ++j) row[j] = -g * std::exp(row[j] * inv_temperature - l);
    const int64_t t = targets[i] - col0;
    if (t >= 0 && t < cols) row[t] += g;
  }
}

}  // namespace grpo::kernels
