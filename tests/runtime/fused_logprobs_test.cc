#include "runtime/fused_logprobs.h"

#include <c10/core/CPUAllocator.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "runtime/alloc_counter.h"

namespace grpo::runtime {
namespace {

torch::Tensor reference_logprobs(const torch::Tensor& hidden, const torch::Tensor& weight,
                                 const torch::Tensor& targets, double temperature) {
  return torch::log_softmax(hidden.matmul(weight.t()) / temperature, -1)
      .gather(-1, targets.unsqueeze(-1))
      .squeeze(-1);
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

// Max abs difference in units of the reference's scale (its largest magnitude, at least 1): both
// sides are f32 with different summation orders, so gradients summed over thousands of vocabulary
// rows agree to ~1e-5 relative, not absolute.
double scaled_diff(const torch::Tensor& got, const torch::Tensor& ref) {
  return max_abs_diff(got, ref) / std::max(1.0, ref.abs().max().item<double>());
}

struct Shape {
  int64_t n, vocab, dim, chunk;
  double temperature;
};

TEST(FusedLogprobsTest, MatchesLogSoftmaxGatherInValueAndGradient) {
  const Shape shapes[] = {
      {1, 1000, 16, 128, 1.0},    // N = 1, V not a multiple of the chunk
      {37, 5003, 32, 1024, 0.8},  // ragged last chunk, temperature below 1
      {64, 4096, 64, 4096, 1.0},  // a single chunk
      {8, 300, 8, 4096, 1.5},     // chunk larger than the vocabulary
      {5, 777, 12, 1, 1.0},       // one vocabulary row per chunk
  };
  torch::manual_seed(0);
  for (const auto& s : shapes) {
    SCOPED_TRACE(testing::Message() << "n=" << s.n << " vocab=" << s.vocab << " dim=" << s.dim
                                    << " chunk=" << s.chunk << " T=" << s.temperature);
    const torch::Tensor h0 = torch::randn({s.n, s.dim});
    const torch::Tensor w0 = torch::randn({s.vocab, s.dim}) * 0.5;
    const torch::Tensor targets = torch::randint(0, s.vocab, {s.n}, torch::kLong);
    const torch::Tensor upstream = torch::randn({s.n});

    torch::Tensor h_ref = h0.clone().requires_grad_(true);
    torch::Tensor w_ref = w0.clone().requires_grad_(true);
    torch::Tensor ref = reference_logprobs(h_ref, w_ref, targets, s.temperature);
    (ref * upstream).sum().backward();

    torch::Tensor h = h0.clone().requires_grad_(true);
    torch::Tensor w = w0.clone().requires_grad_(true);
    torch::Tensor got = fused_token_logprobs(h, w, targets, s.temperature, s.chunk);
    ASSERT_EQ(got.sizes(), ref.sizes());
    (got * upstream).sum().backward();

    EXPECT_LE(scaled_diff(got, ref.detach()), 1e-5);
    EXPECT_LE(scaled_diff(h.grad(), h_ref.grad()), 1e-5);
    EXPECT_LE(scaled_diff(w.grad(), w_ref.grad()), 1e-5);
  }
}

TEST(FusedLogprobsTest, FrozenWeightAndNonContiguousHidden) {
  torch::manual_seed(1);
  // hidden as a transposed view; only hidden requires a gradient (a frozen, tied embedding).
  const torch::Tensor h_t = torch::randn({24, 10});
  const torch::Tensor w = torch::randn({1500, 24}) * 0.5;
  const torch::Tensor targets = torch::randint(0, 1500, {10}, torch::kLong);

  torch::Tensor h_ref = h_t.t().detach().requires_grad_(true);
  reference_logprobs(h_ref, w, targets, 1.0).sum().backward();

  torch::Tensor h_base = h_t.clone().requires_grad_(true);
  torch::Tensor h = h_base.t();
  ASSERT_FALSE(h.is_contiguous());
  torch::Tensor got = fused_token_logprobs(h, w, targets, 1.0, 512);
  got.sum().backward();
  EXPECT_LE(max_abs_diff(got, reference_logprobs(h_t.t(), w, targets, 1.0)), 1e-5);
  EXPECT_LE(scaled_diff(h_base.grad().t(), h_ref.grad()), 1e-5);
  EXPECT_FALSE(w.grad().defined());
}

TEST(FusedLogprobsTest, NoGradModeGivesPlainLogprobs) {
  torch::manual_seed(2);
  const torch::Tensor h = torch::randn({6, 16});
  const torch::Tensor w = torch::randn({999, 16});
  const torch::Tensor targets = torch::randint(0, 999, {6}, torch::kLong);
  torch::NoGradGuard no_grad;
  EXPECT_LE(max_abs_diff(fused_token_logprobs(h, w, targets, 0.6, 100),
                         reference_logprobs(h, w, targets, 0.6)),
            1e-5);
}

TEST(FusedLogprobsTest, EntropyMatchesSoftmaxEntropyAndLeavesGradientUnchanged) {
  torch::manual_seed(5);
  const torch::Tensor h0 = torch::randn({9, 12});
  const torch::Tensor w0 = torch::randn({777, 12});
  const torch::Tensor targets = torch::randint(0, 777, {9}, torch::kLong);
  const double temperature = 0.8;
  auto h = h0.clone().requires_grad_(true);
  auto out = fused_token_logprobs_entropy(h, w0, targets, temperature, 100);
  auto logp_all = torch::log_softmax(h0.matmul(w0.t()) / temperature, -1);
  auto want_entropy = -(logp_all.exp() * logp_all).sum(-1);
  EXPECT_LE(max_abs_diff(out.entropy, want_entropy), 1e-4);
  EXPECT_FALSE(out.entropy.requires_grad());
  out.logprobs.sum().backward();
  auto h_plain = h0.clone().requires_grad_(true);
  fused_token_logprobs(h_plain, w0, targets, temperature, 100).sum().backward();
  EXPECT_LE(max_abs_diff(h.grad(), h_plain.grad()), 1e-7);
}

TEST(FusedLogprobsTest, PeakExtraMemoryIsAFractionOfUnfused) {
  // The figure is V = 151,936 and N = 4,096 (2.5 GB per [N, V] f32 tensor); this is the same
  // measurement at a size a unit test can afford: one [N, V] f32 tensor is 65.5 MB here, one
  // [N, 4096] chunk 8.4 MB, and both sides also allocate grad_weight [V, D] (8.2 MB).
  const int64_t n = 512, vocab = 32000, dim = 64;
  torch::manual_seed(3);
  torch::Tensor h = torch::randn({n, dim}).requires_grad_(true);
  torch::Tensor w = (torch::randn({vocab, dim}) * 0.1).requires_grad_(true);
  const torch::Tensor targets = torch::randint(0, vocab, {n}, torch::kLong);
  const torch::Tensor upstream = torch::randn({n});

  static CountingAllocator counter(c10::GetCPUAllocator());
  c10::Allocator* previous = c10::GetCPUAllocator();
  c10::SetCPUAllocator(&counter, /*priority=*/255);
  ASSERT_EQ(c10::GetCPUAllocator(), &counter);

  const int64_t unfused = counter.peak_extra_bytes([&] {
    (reference_logprobs(h, w, targets, 1.0) * upstream).sum().backward();
    h.mutable_grad().reset();
    w.mutable_grad().reset();
  });
  const int64_t fused = counter.peak_extra_bytes([&] {
    (fused_token_logprobs(h, w, targets, 1.0, 4096) * upstream).sum().backward();
    h.mutable_grad().reset();
    w.mutable_grad().reset();
  });
  c10::SetCPUAllocator(previous, /*priority=*/255);

  const int64_t nv_bytes = n * vocab * 4;
  std::printf("peak extra bytes: unfused %lld (%.2f x [N,V]), fused %lld (%.2f x [N,V])\n",
              static_cast<long long>(unfused), double(unfused) / nv_bytes,
              static_cast<long long>(fused), double(fused) / nv_bytes);
  EXPECT_GE(unfused, nv_bytes);  // the hook saw at least the logits
  EXPECT_LE(fused * 8, unfused);
  // Fused: one [N, chunk] block (forward and backward in turn), grad_weight, grad_hidden, O(N).
  EXPECT_LE(fused, n * 4096 * 4 + vocab * dim * 4 + n * dim * 4 + (1 << 20));
}

}  // namespace
}  // namespace grpo::runtime
