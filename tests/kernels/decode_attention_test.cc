// The fused decode kernels against direct double-precision evaluations of their definitions: rotary
// embedding, cache write and grouped-query attention over rows of different lengths; RMSNorm; SwiGLU.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/decode_attention.h"

namespace grpo::kernels {
namespace {

TEST(DecodeAttentionTest, MatchesDefinitionOverRaggedRowsAndGroupedHeads) {
  const int64_t rows = 3, heads = 6, kv_heads = 2, hd = 8, cap = 11, half = hd / 2;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t width = (heads + 2 * kv_heads) * hd;
  std::vector<float> qkv(static_cast<size_t>(rows * width)), cosv(rows * half), sinv(rows * half);
  for (auto& x : qkv) x = nd(rng);
  const std::vector<int64_t> pos = {0, 10, 5};  // row r attends to [0, pos[r]]
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < half; ++i) {
      double ang = pos[static_cast<size_t>(r)] * std::pow(10000.0, -2.0 * i / hd);
      cosv[r * half + i] = static_cast<float>(std::cos(ang));
      sinv[r * half + i] = static_cast<float>(std::sin(ang));
    }
  // Standard-layout history (already rotated keys) for positions before each row's own.
  std::vector<float> khist(static_cast<size_t>(rows * kv_heads * cap * hd)), vhist(khist.size());
  for (auto& x : khist) x = nd(rng);
  for (auto& x : vhist) x = nd(rng);
  // The kernel's cache: transposed keys; positions past each row's own poisoned.
  std::vector<float> kc(khist.size(), NAN), vc(vhist.size(), NAN);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < kv_heads; ++h)
      for (int64_t s = 0; s < pos[static_cast<size_t>(r)]; ++s)
        for (int64_t d = 0; d < hd; ++d) {
          const int64_t blk = (r * kv_heads + h) * cap * hd;
          kc[static_cast<size_t>(blk + d * cap + s)] = khist[static_cast<size_t>(blk + s * hd + d)];
          vc[static_cast<size_t>(blk + s * hd + d)] = vhist[static_cast<size_t>(blk + s * hd + d)];
        }
  const std::vector<float> raw = qkv;
  std::vector<float> out(static_cast<size_t>(rows * heads * hd));
  RopeDecodeArgs a;
  a.qkv = qkv.data();
  a.cos = cosv.data();
  a.sin = sinv.data();
  a.k_cache = kc.data();
  a.v_cache = vc.data();
  a.row_stride = kv_heads * cap * hd;
  a.head_stride = cap * hd;
  a.capacity = cap;
  a.positions = pos.data();
  a.rows = rows;
  a.heads = heads;
  a.kv_heads = kv_heads;
  a.head_dim = hd;
  a.scale = 1.f / std::sqrt(static_cast<float>(hd));
  a.out = out.data();
  rope_decode_attention(a);
  auto rotated = [&](int64_t r, int64_t h, int64_t d) {  // head h of the fused projection, rotated
    const float* x = raw.data() + r * width + h * hd;
    const int64_t i = d % half;
    const double c = cosv[r * half + i], s = sinv[r * half + i];
    return d < half ? x[i] * c - x[i + half] * s : x[i + half] * c + x[i] * s;
  };
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t p = pos[static_cast<size_t>(r)];
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t kvh = h / (heads / kv_heads), blk = (r * kv_heads + kvh) * cap * hd;
      std::vector<double> w(static_cast<size_t>(p + 1));
      double mx = -1e300, sum = 0;
      for (int64_t s = 0; s <= p; ++s) {
        double dot = 0;
        for (int64_t d = 0; d < hd; ++d) {
          double k = s < p ? khist[static_cast<size_t>(blk + s * hd + d)] : rotated(r, heads + kvh, d);
          dot += rotated(r, h, d) * k;
        }
        w[static_cast<size_t>(s)] = dot * a.scale;
        mx = std::max(mx, dot * a.scale);
      }
      for (auto& x : w) sum += (x = std::exp(x - mx));
      for (int64_t d = 0; d < hd; ++d) {
        double want = 0;
        for (int64_t s = 0; s <= p; ++s) {
          double v = s < p ? vhist[static_cast<size_t>(blk + s * hd + d)]
                           : raw[static_cast<size_t>(r * width + (heads + kv_heads + kvh) * hd + d)];
          want += w[static_cast<size_t>(s)] / sum * v;
        }
        EXPECT_NEAR(out[static_cast<size_t>((r * heads + h) * hd + d)], want, 1e-4) << r << " " << h << " " << d;
      }
    }
    // The new key (rotated, transposed) and value landed at the row's position.
    for (int64_t h = 0; h < kv_heads; ++h)
      for (int64_t d = 0; d < hd; ++d) {
        const int64_t blk = (r * kv_heads + h) * cap * hd;
        EXPECT_NEAR(kc[static_cast<size_t>(blk + d * cap + p)], rotated(r, heads + h, d), 1e-5);
        EXPECT_EQ(vc[static_cast<size_t>(blk + p * hd + d)], raw[static_cast<size_t>(r * width + (heads + kv_heads + h) * hd + d)]);
      }
  }
}

}  // namespace
}  // namespace grpo::kernels

namespace grpo::kernels {
namespace {

TEST(DecodeKernelsTest, RmsNormAndSwigluMatchTheirDefinitions) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 2.f);
  const int64_t rows = 3, dim = 37, hidden = 29;
  std::vector<float> x(rows * dim), w(dim), out(rows * dim);
  for (auto& v : x) v = nd(rng);
  for (auto& v : w) v = nd(rng);
  rms_norm(x.data(), w.data(), rows, dim, 1e-5f, out.data());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t d = 0; d < dim; ++d) ss += double(x[r * dim + d]) * x[r * dim + d];
    double inv = 1.0 / std::sqrt(ss / dim + 1e-5);
    for (int64_t d = 0; d < dim; ++d) EXPECT_NEAR(out[r * dim + d], x[r * dim + d] * inv * w[d], 1e-4);
  }
  std::vector<float> gu(rows * 2 * hidden), act(rows * hidden);
  for (auto& v : gu) v = nd(rng) * 20;  // exercise exp far from 0, both signs
  swiglu(gu.data(), rows, hidden, act.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < hidden; ++i) {
      double g = gu[r * 2 * hidden + i], u = gu[r * 2 * hidden + hidden + i];
      double want = g / (1 + std::exp(-g)) * u;
      EXPECT_NEAR(act[r * hidden + i], want, 1e-5 * std::max(1.0, std::abs(want))) << g;
    }
}

}  // namespace
}  // namespace grpo::kernels
