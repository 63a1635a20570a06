// Fused CPU kernels of one decode step (one new token per sequence) of a Llama-family decoder, used
// by the generation engine. Each replaces a chain of small LibTorch ops whose dispatch and
// allocation overhead, not arithmetic, bounds a small model's decode speed.
//
//   rms_norm:               out = x * rsqrt(mean(x^2) + eps) * w, per row.
//   swiglu:                 out = silu(gate) * up, from the fused [gate | up] projection.
//   sample_rows:            temperature / min-p sampling by CDF inversion, one pass per row.
//   rope_decode_attention:  applies rotary embeddings (rotate-half layout) to the q and k parts of
//                           the fused [q | k | v] projection, stores k and v in the KV cache at each
//                           row's position, and attends: row b, query head h reads key/value head
//                           h / (heads/kv_heads) (grouped-query attention) at positions
//                           [0, positions[b]] only, so rows of different lengths share one cache
//                           without a mask and never pay for each other's padding.
//
// The decode cache layout: per layer two buffers of [batch, kv_heads, capacity, head_dim] floats.
// Values are stored as that shape says (position-major). Keys are stored TRANSPOSED within each
// (row, head) block, as [head_dim, capacity], so that the query-key products run over contiguous
// positions and vectorize. rows/heads/positions are addressed by the strides given (in elements).
// Rows and heads run in parallel with OpenMP when available. Pure C++, float32.
#pragma once

#include <cstdint>

namespace grpo::kernels {

void rms_norm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out);

// gate_up: [rows, 2 * hidden] (gate then up); out: [rows, hidden].
void swiglu(const float* gate_up, int64_t rows, int64_t hidden, float* out);

struct RopeDecodeArgs {
  float* qkv = nullptr;           // [rows, (heads + 2 * kv_heads) * head_dim]; q, k rotated in place
  const float* cos = nullptr;     // [rows, head_dim / 2]
  const float* sin = nullptr;     // [rows, head_dim / 2]
  float* k_cache = nullptr;       // transposed keys: (row, head, d, pos) at row*row_stride +
                                  //   head*head_stride + d*capacity + pos
  float* v_cache = nullptr;       // values: (row, head, pos, d) at ... + pos*head_dim + d
  int64_t row_stride = 0, head_stride = 0, capacity = 0;
  const int64_t* positions = nullptr;  // [rows]: write column; the row attends to [0, position]
  int64_t rows = 0, heads = 0, kv_heads = 0, head_dim = 0;
  float scale = 1.f;
  float* out = nullptr;           // [rows, heads * head_dim]
};
void rope_decode_attention(const RopeDecodeArgs& args);

// Temperature (and min-p) sampling of one token per row of logits [rows, vocab]: the token is
// the first whose cumulative probability under softmax(logits / temperature), restricted to
// tokens with p >= min_p * p_max (min_p = 0: all), exceeds uniforms[row] * total; logprobs[row]
// is its log-probability under that restricted, renormalised distribution. temperature > 0.
void sample_rows(const float* logits, int64_t rows, int64_t vocab, float temperature, float min_p,
                 const float* uniforms, int64_t* tokens, float* logprobs);

}  // namespace grpo::kernels
