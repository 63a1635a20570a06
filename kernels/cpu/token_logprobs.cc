#include "kernels/cpu/token_logprobs.h"

#include "kernels/cpu/vec_math.h"

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

namespace {

using vec::exp_poly;
using vec::load8;
using vec::store8;
using vec::V8f;

// max of row[0, cols).
__attribute__((always_inline)) inline float row_max(const float* row, int64_t cols) {
  float mx = -std::numeric_limits<float>::infinity();
  int64_t j = 0;
  if (cols >= 8) {
    V8f m = load8(row);
    for (j = 8; j + 8 <= cols; j += 8) {
      const V8f v = load8(row + j);
      m = v > m ? v : m;
    }
    mx = vec::hmax(m);
  }
  for (; j < cols; ++j) mx = std::max(mx, row[j]);
  return mx;
}

// sum_j exp(row_j * s - m) and, when xsum != null, sum_j exp(row_j * s - m) * (row_j * s).
__attribute__((always_inline)) inline float exp_sums(const float* row, int64_t cols, float s, float m,
                                                     float* xsum) {
  V8f acc = V8f{}, xacc = V8f{};
  int64_t j = 0;
  if (xsum != nullptr) {
    for (; j + 8 <= cols; j += 8) {
      const V8f x = load8(row + j) * s;
      const V8f e = exp_poly(x - m);
      acc += e;
      xacc += e * x;
    }
  } else {
    for (; j + 8 <= cols; j += 8) acc += exp_poly(load8(row + j) * s - m);
  }
  float sum = vec::hsum(acc), xs = vec::hsum(xacc);
  for (; j < cols; ++j) {
    const float x = row[j] * s;
    const float e = exp_poly(x - m);
    sum += e;
    xs += e * x;
  }
  if (xsum != nullptr) *xsum = xs;
  return sum;
}

GRPO_KERNEL_CLONES void forward_row(const float* row, int64_t cols, int64_t t, float inv_temperature,
                                    float* run_max, float* run_sum, float* target_logit, float* run_xsum) {
  const float chunk_max = row_max(row, cols) * inv_temperature;  // inv_t > 0: max commutes with it
  const float old_max = *run_max;
  const float new_max = std::max(old_max, chunk_max);
  if (new_max != -std::numeric_limits<float>::infinity()) {
    const float rescale =
        old_max == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(old_max - new_max);
    float xsum = 0.0f;
    const float sum = exp_sums(row, cols, inv_temperature, new_max, run_xsum != nullptr ? &xsum : nullptr);
    if (run_xsum != nullptr) *run_xsum = *run_xsum * rescale + xsum;
    *run_sum = *run_sum * rescale + sum;
    *run_max = new_max;
  }
  if (t >= 0 && t < cols) *target_logit = row[t] * inv_temperature;
}

GRPO_KERNEL_CLONES void backward_row(float* row, int64_t cols, int64_t t, float g, float l, float inv_temperature) {
  int64_t j = 0;
  for (; j + 8 <= cols; j += 8) store8(row + j, exp_poly(load8(row + j) * inv_temperature - l) * -g);
  for (; j < cols; ++j) row[j] = -g * exp_poly(row[j] * inv_temperature - l);
  if (t >= 0 && t < cols) row[t] += g;
}

}  // namespace

void token_logprobs_chunk_forward(const float* logits, int64_t n, int64_t cols, int64_t ld,
                                  int64_t col0, const int64_t* targets, float inv_temperature,
                                  TokenLogprobState state) {
  if (cols <= 0) return;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    forward_row(logits + i * ld, cols, targets[i] - col0, inv_temperature, state.run_max + i,
                state.run_sum + i, state.target_logit + i,
                state.run_xsum != nullptr ? state.run_xsum + i : nullptr);
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
    backward_row(logits_to_grad + i * ld, cols, targets[i] - col0, grad_out[i] * inv_temperature,
                 lse[i], inv_temperature);
  }
}

}  // namespace grpo::kernels
