#include "kernels/cpu/token_logprobs.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace grpo::kernels {
namespace {

struct Case {
  int64_t n, vocab, chunk;
  float temperature;
};

// Runs the chunked forward and backward over a full [n, vocab] logits matrix (chunks taken as
// column blocks with leading dimension vocab, in reverse order to show order does not matter) and
// checks both against a direct double evaluation.
void check_case(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<int64_t> pick(0, c.vocab - 1);
  std::vector<float> logits(c.n * c.vocab), grad_out(c.n);
  std::vector<int64_t> targets(c.n);
  for (auto& x : logits) x = normal(rng);
  for (auto& g : grad_out) g = normal(rng);
  for (auto& t : targets) t = pick(rng);
  const float inv_t = 1.0f / c.temperature;

  std::vector<float> mx(c.n), sm(c.n), tl(c.n), xs(c.n), lp(c.n), lse(c.n), ent(c.n);
  TokenLogprobState st{mx.data(), sm.data(), tl.data(), xs.data()};
  token_logprobs_init(c.n, st);
  std::vector<int64_t> starts;
  for (int64_t c0 = 0; c0 < c.vocab; c0 += c.chunk) starts.push_back(c0);
  for (auto it = starts.rbegin(); it != starts.rend(); ++it) {
    const int64_t cols = std::min(c.chunk, c.vocab - *it);
    token_logprobs_chunk_forward(logits.data() + *it, c.n, cols, c.vocab, *it, targets.data(),
                                 inv_t, st);
  }
  token_logprobs_finalize(c.n, st, lp.data(), lse.data());
  token_logprobs_entropy(c.n, st, ent.data());

  std::vector<float> grad = logits;
  for (int64_t c0 : starts) {
    const int64_t cols = std::min(c.chunk, c.vocab - c0);
    token_logprobs_chunk_backward(grad.data() + c0, c.n, cols, c.vocab, c0, targets.data(),
                                  lse.data(), grad_out.data(), inv_t);
  }

  for (int64_t i = 0; i < c.n; ++i) {
    const float* row = logits.data() + i * c.vocab;
    double m = -INFINITY;
    for (int64_t j = 0; j < c.vocab; ++j) m = std::max(m, double(row[j]) / c.temperature);
    double s = 0.0;
    for (int64_t j = 0; j < c.vocab; ++j) s += std::exp(double(row[j]) / c.temperature - m);
    const double ref_lse = m + std::log(s);
    const double ref_lp = double(row[targets[i]]) / c.temperature - ref_lse;
    EXPECT_NEAR(lp[i], ref_lp, 1e-5 * std::max(1.0, std::fabs(ref_lp))) << "token " << i;
    EXPECT_NEAR(lse[i], ref_lse, 1e-5 * std::max(1.0, std::fabs(ref_lse)));
    double ref_entropy = 0.0;
    for (int64_t j = 0; j < c.vocab; ++j) {
      const double x = double(row[j]) / c.temperature;
      ref_entropy -= std::exp(x - ref_lse) * (x - ref_lse);
    }
    EXPECT_NEAR(ent[i], ref_entropy, 2e-5 * std::max(1.0, std::fabs(ref_lse))) << "token " << i;
    for (int64_t j = 0; j < c.vocab; ++j) {
      const double p = std::exp(double(row[j]) / c.temperature - ref_lse);
      const double ref_g = double(grad_out[i]) * ((j == targets[i] ? 1.0 : 0.0) - p) / c.temperature;
      ASSERT_NEAR(grad[i * c.vocab + j], ref_g, 1e-6 + 1e-5 * std::fabs(ref_g))
          << "token " << i << " column " << j;
    }
  }
}

TEST(TokenLogprobsTest, MatchesDirectDoubleEvaluation) {
  const Case cases[] = {
      {1, 1, 1, 1.0f},          // a single token over a single-word vocabulary: logprob 0
      {1, 1000, 128, 1.0f},     // N = 1, V not a multiple of the chunk
      {7, 513, 64, 0.7f},       // temperature below 1
      {16, 2048, 2048, 1.3f},   // one chunk covers the vocabulary
      {33, 3001, 1000, 1.0f},   // ragged last chunk of one column
      {5, 300, 4096, 2.0f},     // chunk larger than the vocabulary
  };
  uint32_t seed = 1;
  for (const auto& c : cases) {
    SCOPED_TRACE(testing::Message() << "n=" << c.n << " vocab=" << c.vocab << " chunk=" << c.chunk
                                    << " T=" << c.temperature);
    check_case(c, seed++);
  }
}

TEST(TokenLogprobsTest, LargeLogitsDoNotOverflow) {
  // Logits of +-1e4 overflow exp() unless the running max is subtracted first.
  const int64_t vocab = 10;
  std::vector<float> logits(vocab, -1e4f);
  logits[3] = 1e4f;
  logits[7] = 1e4f - 1.0f;
  const int64_t target = 7;
  float mx, sm, tl, lp, lse;
  TokenLogprobState st{&mx, &sm, &tl};
  token_logprobs_init(1, st);
  for (int64_t c0 = 0; c0 < vocab; c0 += 4) {
    token_logprobs_chunk_forward(logits.data() + c0, 1, std::min<int64_t>(4, vocab - c0), vocab, c0,
                                 &target, 1.0f, st);
  }
  token_logprobs_finalize(1, st, &lp, &lse);
  // Exact up to float rounding of lse ~ 1e4 (one ulp there is ~1e-3).
  EXPECT_NEAR(lp, -1.0 - std::log1p(std::exp(-1.0)), 2e-3);
  EXPECT_TRUE(std::isfinite(lse));
}

}  // namespace
}  // namespace grpo::kernels
