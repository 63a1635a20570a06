#include "kernels/cpu/decode_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace grpo::kernels {
namespace {

// exp(x) for x in [-87, 88]: 2^n * 2^f with f in [-0.5, 0.5], 2^f by its degree-7 Taylor polynomial
// (relative error below 1e-8, under float rounding). Branch-free, so loops over it vectorize.
inline float exp_approx(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float t = x * 1.44269504088896341f;
  // Round to nearest by truncating t +- 0.5 (a conversion, so it survives reassociation and
  // vectorizes on every x86-64).
  const int32_t ni = static_cast<int32_t>(t + (t >= 0.f ? 0.5f : -0.5f));
  const float f = (t - static_cast<float>(ni)) * 0.693147180559945309f;
  float p = 1.0f / 5040.0f;
  p = p * f + 1.0f / 720.0f;
  p = p * f + 1.0f / 120.0f;
  p = p * f + 1.0f / 24.0f;
  p = p * f + 1.0f / 6.0f;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  const int32_t scale_bits = (ni + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &scale_bits, 4);
  return p * scale;
}

// AVX2/FMA machines run a clone of the hot loops built for them; others the baseline x86-64 one.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GRPO_KERNEL_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define GRPO_KERNEL_CLONES
#endif

// Attention of the `group` query heads sharing one key/value head over positions [0, len).
// kt: transposed keys [head_dim, capacity]; v: values [capacity, head_dim]; scores: group * len.
GRPO_KERNEL_CLONES void attend_group(const float* __restrict q, int64_t group, int64_t hd, const float* __restrict kt,
                  int64_t capacity, const float* __restrict v, int64_t len, float scale,
                  float* __restrict scores, float* __restrict out) {
  for (int64_t g = 0; g < group; ++g) {
    float* __restrict sc = scores + g * len;
    const float* __restrict qg = q + g * hd;
    for (int64_t s = 0; s < len; ++s) sc[s] = 0.f;
    for (int64_t d = 0; d < hd; ++d) {
      const float qd = qg[d] * scale;
      const float* __restrict kd = kt + d * capacity;
      for (int64_t s = 0; s < len; ++s) sc[s] += qd * kd[s];
    }
    float mx = sc[0];
    for (int64_t s = 1; s < len; ++s) mx = sc[s] > mx ? sc[s] : mx;
    for (int64_t s = 0; s < len; ++s) sc[s] = exp_approx(sc[s] - mx);
    float total = 0.f;
    for (int64_t s = 0; s < len; ++s) total += sc[s];
    const float inv = 1.f / total;
    for (int64_t s = 0; s < len; ++s) sc[s] *= inv;
  }
  for (int64_t i = 0; i < group * hd; ++i) out[i] = 0.f;
  for (int64_t s = 0; s < len; ++s) {
    const float* __restrict vr = v + s * hd;
    for (int64_t g = 0; g < group; ++g) {
      const float p = scores[g * len + s];
      float* __restrict o = out + g * hd;
      for (int64_t d = 0; d < hd; ++d) o[d] += p * vr[d];
    }
  }
}

void rope_and_store(const RopeDecodeArgs& a, int64_t r) {
  const int64_t hd = a.head_dim, half = hd / 2;
  float* __restrict row = a.qkv + r * (a.heads + 2 * a.kv_heads) * hd;
  const float* __restrict c = a.cos + r * half;
  const float* __restrict s = a.sin + r * half;
  for (int64_t h = 0; h < a.heads + a.kv_heads; ++h) {
    float* __restrict x = row + h * hd;
    for (int64_t i = 0; i < half; ++i) {
      const float x1 = x[i], x2 = x[i + half];
      x[i] = x1 * c[i] - x2 * s[i];
      x[i + half] = x2 * c[i] + x1 * s[i];
    }
  }
  const int64_t pos = a.positions[r];
  for (int64_t h = 0; h < a.kv_heads; ++h) {
    const int64_t base = r * a.row_stride + h * a.head_stride;
    const float* k = row + (a.heads + h) * hd;
    for (int64_t d = 0; d < hd; ++d) a.k_cache[base + d * a.capacity + pos] = k[d];
    std::memcpy(a.v_cache + base + pos * hd, row + (a.heads + a.kv_heads + h) * hd,
                static_cast<size_t>(hd) * sizeof(float));
  }
}

GRPO_KERNEL_CLONES void rms_norm_row(const float* __restrict xr, const float* __restrict weight,
                                     int64_t dim, float eps, float* __restrict o) {
  float ss = 0.f;
  for (int64_t d = 0; d < dim; ++d) ss += xr[d] * xr[d];
  const float inv = 1.f / std::sqrt(ss / static_cast<float>(dim) + eps);
  for (int64_t d = 0; d < dim; ++d) o[d] = xr[d] * inv * weight[d];
}

GRPO_KERNEL_CLONES void swiglu_row(const float* __restrict g, const float* __restrict u,
                                   int64_t hidden, float* __restrict o) {
  for (int64_t i = 0; i < hidden; ++i) o[i] = g[i] / (1.f + exp_approx(-g[i])) * u[i];
}

}  // namespace

void rms_norm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out) {
#pragma omp parallel for schedule(static) if (rows * dim > 65536)
  for (int64_t r = 0; r < rows; ++r) rms_norm_row(x + r * dim, weight, dim, eps, out + r * dim);
}

void swiglu(const float* gate_up, int64_t rows, int64_t hidden, float* out) {
#pragma omp parallel for schedule(static) if (rows * hidden > 65536)
  for (int64_t r = 0; r < rows; ++r)
    swiglu_row(gate_up + r * 2 * hidden, gate_up + r * 2 * hidden + hidden, hidden, out + r * hidden);
}

void rope_decode_attention(const RopeDecodeArgs& a) {
  const int64_t hd = a.head_dim, group = a.heads / a.kv_heads;
  const int64_t width = (a.heads + 2 * a.kv_heads) * hd;
  int64_t longest = 1, work = 0;
  for (int64_t r = 0; r < a.rows; ++r) {
    longest = std::max(longest, a.positions[r] + 1);
    work += a.positions[r] + 1;
  }
  const bool parallel = work * a.heads * hd > 200000;
#pragma omp parallel if (parallel)
  {
#pragma omp for schedule(static)
    for (int64_t r = 0; r < a.rows; ++r) rope_and_store(a, r);
    std::vector<float> scores(static_cast<size_t>(group * longest));
#pragma omp for schedule(dynamic, 4)
    for (int64_t w = 0; w < a.rows * a.kv_heads; ++w) {
      const int64_t r = w / a.kv_heads, kvh = w % a.kv_heads;
      const int64_t base = r * a.row_stride + kvh * a.head_stride;
      attend_group(a.qkv + r * width + kvh * group * hd, group, hd, a.k_cache + base, a.capacity,
                   a.v_cache + base, a.positions[r] + 1, a.scale, scores.data(),
                   a.out + (r * a.heads + kvh * group) * hd);
    }
  }
}

}  // namespace grpo::kernels
