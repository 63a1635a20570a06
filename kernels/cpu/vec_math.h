// Shared inner-loop helpers of the CPU kernels (internal to kernels/cpu): eight-float vectors with
// GCC's generic vector extensions (lowered to SSE or AVX by the function clone being compiled), and
// one branch-free exponential written once for scalars and vectors.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace grpo::kernels::vec {

typedef float V8f __attribute__((vector_size(32)));
typedef int32_t V8i __attribute__((vector_size(32)));

__attribute__((always_inline)) inline V8f load8(const float* p) {
  V8f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
__attribute__((always_inline)) inline void store8(float* p, V8f v) { std::memcpy(p, &v, sizeof(v)); }

__attribute__((always_inline)) inline float splat(float v, float) { return v; }
__attribute__((always_inline)) inline V8f splat(float v, V8f) { return V8f{} + v; }
__attribute__((always_inline)) inline int32_t to_int(float v) { return static_cast<int32_t>(v); }
__attribute__((always_inline)) inline V8i to_int(V8f v) { return __builtin_convertvector(v, V8i); }
__attribute__((always_inline)) inline float to_float(int32_t v) { return static_cast<float>(v); }
__attribute__((always_inline)) inline V8f to_float(V8i v) { return __builtin_convertvector(v, V8f); }

inline float hmax(V8f v) {
  float m = v[0];
  for (int i = 1; i < 8; ++i) m = std::max(m, v[i]);
  return m;
}
inline float hsum(V8f v) {
  float s = 0.f;
  for (int i = 0; i < 8; ++i) s += v[i];
  return s;
}

// exp(x) for x clamped to [-87, 88], elementwise for F = float or V8f: 2^n * 2^f with f in
// [-0.5, 0.5] ln 2, 2^f by its degree-7 Taylor polynomial (relative error below 1e-7, under float
// rounding). Branch-free, so loops over it vectorize.
template <typename F>
__attribute__((always_inline)) inline F exp_poly(F x) {
  const F lo = splat(-87.0f, x), hi = splat(88.0f, x);
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const F t = x * 1.44269504088896341f;
  // Round to nearest by truncating t +- 0.5 (a conversion, so it survives reassociation).
  const auto ni = to_int(t + (t >= 0.f ? splat(0.5f, x) : splat(-0.5f, x)));
  const F f = (t - to_float(ni)) * 0.693147180559945309f;
  F p = splat(1.0f / 5040.0f, x);
  p = p * f + 1.0f / 720.0f;
  p = p * f + 1.0f / 120.0f;
  p = p * f + 1.0f / 24.0f;
  p = p * f + 1.0f / 6.0f;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  const auto bits = (ni + 127) << 23;  // 2^n
  F scale;
  static_assert(sizeof(scale) == sizeof(bits));
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

}  // namespace grpo::kernels::vec

// AVX2/FMA machines run a clone of the hot loops built for them; others the baseline x86-64 one.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GRPO_KERNEL_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define GRPO_KERNEL_CLONES
#endif
