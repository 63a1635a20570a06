#include "kernels/cpu/decode_attention.h"

#include "kernels/cpu/vec_math.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace grpo::kernels {
namespace {

using vec::load8;
using vec::store8;
using vec::V8f;
__attribute__((always_inline)) inline float exp_approx(float x) { return vec::exp_poly(x); }
__attribute__((always_inline)) inline V8f exp8(V8f x) { return vec::exp_poly(x); }

// In place: sc[0, len) <- exp(sc - max(sc)); returns the sum.
__attribute__((always_inline)) inline float softmax_numerators(float* __restrict sc, int64_t len) {
  float mx = sc[0];
  int64_t s = 0;
  if (len >= 8) {
    V8f m = load8(sc);
    for (s = 8; s + 8 <= len; s += 8) {
      const V8f v = load8(sc + s);
      m = v > m ? v : m;
    }
    for (int i = 0; i < 8; ++i) mx = std::max(mx, m[i]);
  }
  for (; s < len; ++s) mx = std::max(mx, sc[s]);
  V8f acc = V8f{};
  int64_t i = 0;
  for (; i + 8 <= len; i += 8) {
    const V8f e = exp8(load8(sc + i) - mx);
    store8(sc + i, e);
    acc += e;
  }
  float total = 0.f;
  for (int k = 0; k < 8; ++k) total += acc[k];
  for (; i < len; ++i) {
    sc[i] = exp_approx(sc[i] - mx);
    total += sc[i];
  }
  return total;
}

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
    const float inv = 1.f / softmax_numerators(sc, len);
    for (int64_t s = 0; s < len; ++s) sc[s] *= inv;
  }
  if (hd % 8 == 0) {
    // Eight output dimensions at a time, accumulated in registers (two chains to hide latency).
    for (int64_t g = 0; g < group; ++g) {
      const float* __restrict p = scores + g * len;
      for (int64_t d0 = 0; d0 < hd; d0 += 8) {
        V8f a0 = V8f{}, a1 = V8f{};
        int64_t s = 0;
        for (; s + 2 <= len; s += 2) {
          a0 += p[s] * load8(v + s * hd + d0);
          a1 += p[s + 1] * load8(v + (s + 1) * hd + d0);
        }
        if (s < len) a0 += p[s] * load8(v + s * hd + d0);
        store8(out + g * hd + d0, a0 + a1);
      }
    }
    return;
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

namespace {

GRPO_KERNEL_CLONES void sample_row(const float* __restrict l, int64_t vocab, float inv_t, float log_min_p,
                                   float u, float* __restrict z, int64_t* token, float* logprob) {
  float mx = l[0];
  for (int64_t i = 1; i < vocab; ++i) mx = std::max(mx, l[i]);
  // z = scaled logit relative to the top token; excluded tokens get -inf weight below.
  int64_t i = 0;
  V8f acc = V8f{};
  for (; i + 8 <= vocab; i += 8) {
    const V8f zi = (load8(l + i) - mx) * inv_t;
    store8(z + i, zi);
    V8f e = exp8(zi);
    e = zi >= log_min_p ? e : V8f{};
    acc += e;
  }
  float total = 0.f;
  for (int k = 0; k < 8; ++k) total += acc[k];
  for (; i < vocab; ++i) {
    z[i] = (l[i] - mx) * inv_t;
    if (z[i] >= log_min_p) total += exp_approx(z[i]);
  }
  const float target = u * total;
  float cum = 0.f;
  int64_t pick = -1, last_kept = 0;
  for (int64_t j = 0; j < vocab; ++j) {
    if (z[j] < log_min_p) continue;
    last_kept = j;
    cum += exp_approx(z[j]);
    if (cum > target) {
      pick = j;
      break;
    }
  }
  if (pick < 0) pick = last_kept;
  *token = pick;
  *logprob = z[pick] - std::log(total);
}

}  // namespace

void sample_rows(const float* logits, int64_t rows, int64_t vocab, float temperature, float min_p,
                 const float* uniforms, int64_t* tokens, float* logprobs) {
  const float inv_t = 1.f / temperature;
  const float log_min_p = min_p > 0.f ? std::log(min_p) : -INFINITY;
#pragma omp parallel if (rows * vocab > 65536)
  {
    std::vector<float> z(static_cast<size_t>(vocab));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      sample_row(logits + r * vocab, vocab, inv_t, log_min_p, uniforms[r], z.data(), tokens + r, logprobs + r);
  }
}

}  // namespace grpo::kernels
