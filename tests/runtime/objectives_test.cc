// The GRPO-family objectives against values worked out by hand (runtime/objectives.h).
//
// Fixture: two sequences, behaviour logprobs 0, current ratios r = [1.5, 0.9] and [1.0, 0.5, 1.1],
// advantages A = [1, -1], clip epsilon 0.2. Per-token surrogates min(rA, clip(r)A):
//   seq 0 (A = 1):  min(1.5, 1.2) = 1.2 (clipped), min(0.9, 0.9) = 0.9
//   seq 1 (A = -1): min(-1, -1) = -1, min(-0.5, -0.8) = -0.8 (clipped), min(-1.1, -1.1) = -1.1
// so the per-token losses are [-1.2, -0.9] and [1, 0.8, 1.1].
#include <gtest/gtest.h>

#include <cmath>

#include "runtime/objectives.h"

namespace grpo::runtime {
namespace {

struct Fixture {
  torch::Tensor logp, behaviour, mask, adv;
  Fixture() {
    logp = torch::tensor({{std::log(1.5f), std::log(0.9f), 0.f}, {0.f, std::log(0.5f), std::log(1.1f)}})
               .requires_grad_(true);
    behaviour = torch::zeros({2, 3});
    mask = torch::tensor({{1.f, 1.f, 0.f}, {1.f, 1.f, 1.f}});
    adv = torch::tensor({1.f, -1.f});
  }
};

GrpoOptions no_kl() {
  GrpoOptions o;
  o.clip_eps = 0.2;
  o.kl_coef = 0;
  return o;
}

TEST(ObjectivesTest, GrpoSequenceMeanWithClipping) {
  Fixture f;
  auto r = grpo_objective(f.logp, f.behaviour, torch::Tensor(), f.mask, f.adv, no_kl());
  EXPECT_NEAR(r.loss.item<double>(), (-1.05 + 2.9 / 3) / 2, 1e-6);
  EXPECT_NEAR(r.clip_fraction, 2.0 / 5, 1e-9);
  EXPECT_EQ(r.tokens, 5);
  EXPECT_NEAR(r.ratio_max, 1.5, 1e-6);
  // Gradient: clipped tokens get none; elsewhere d(-rA)/dlogp = -rA, over the sequence's tokens
  // and the two sequences.
  r.loss.backward();
  auto g = f.logp.grad();
  EXPECT_NEAR(g[0][0].item<double>(), 0.0, 1e-7);
  EXPECT_NEAR(g[0][1].item<double>(), -0.9 / 2 / 2, 1e-6);
  EXPECT_NEAR(g[1][0].item<double>(), 1.0 / 3 / 2, 1e-6);
  EXPECT_NEAR(g[1][1].item<double>(), 0.0, 1e-7);
  EXPECT_NEAR(g[1][2].item<double>(), 1.1 / 3 / 2, 1e-6);
  EXPECT_EQ(g[0][2].item<double>(), 0.0);  // padding
}

TEST(ObjectivesTest, DapoTokenMeanAndClipHigher) {
  Fixture f;
  GrpoOptions o = no_kl();
  o.aggregation = "token_mean";
  EXPECT_NEAR(grpo_objective(f.logp, f.behaviour, torch::Tensor(), f.mask, f.adv, o).loss.item<double>(),
              (-2.1 + 2.9) / 5, 1e-6);
  o.aggregation = "seq_mean";
  o.clip_high = 0.6;  // 1.5 is now inside [0.8, 1.6]
  auto r = grpo_objective(f.logp, f.behaviour, torch::Tensor(), f.mask, f.adv, o);
  EXPECT_NEAR(r.loss.item<double>(), (-1.2 + 2.9 / 3) / 2, 1e-6);
  EXPECT_NEAR(r.clip_fraction, 1.0 / 5, 1e-9);
}

TEST(ObjectivesTest, DrGrpoConstantLengthNormaliser) {
  Fixture f;
  GrpoOptions o = no_kl();
  o.aggregation = "seq_sum_norm";
  o.length_norm = 4;
  EXPECT_NEAR(grpo_objective(f.logp, f.behaviour, torch::Tensor(), f.mask, f.adv, o).loss.item<double>(),
              (-2.1 / 4 + 2.9 / 4) / 2, 1e-6);
  o.length_norm = 0;  // the longest response: 3 tokens
  EXPECT_NEAR(grpo_objective(f.logp, f.behaviour, torch::Tensor(), f.mask, f.adv, o).loss.item<double>(),
              (-2.1 / 3 + 2.9 / 3) / 2, 1e-6);
}

TEST(ObjectivesTest, KlEstimators) {
  Fixture f;
  auto ref = (f.logp.detach() + 0.5) * f.mask;  // ref - logp = 0.5 on every response token
  const double base = (-1.05 + 2.9 / 3) / 2;
  const double x = 0.5;
  for (auto [name, k] : std::vector<std::pair<std::string, double>>{
           {"k1", -x}, {"k2", x * x / 2}, {"k3", std::exp(x) - x - 1}}) {
    GrpoOptions o = no_kl();
    o.kl_coef = 0.1;
    o.kl_estimator = name;
    auto r = grpo_objective(f.logp, f.behaviour, ref, f.mask, f.adv, o);
    EXPECT_NEAR(r.loss.item<double>(), base + 0.1 * k, 1e-6) << name;
    EXPECT_NEAR(r.kl, k, 1e-6) << name;
  }
}

TEST(ObjectivesTest, ZeroVarianceGroupContributesNoPolicyGradient) {
  Fixture f;
  auto r = grpo_objective(f.logp, f.behaviour, torch::Tensor(), f.mask, torch::zeros({2}), no_kl());
  EXPECT_EQ(r.loss.item<double>(), 0.0);
  r.loss.backward();
  EXPECT_EQ(f.logp.grad().abs().sum().item<double>(), 0.0);
}

TEST(ObjectivesTest, TruncatedImportanceWeightInDecoupledMode) {
  // One token: current logp 0, behaviour log(1/3): weight exp(0 - log(1/3)) = 3, capped at 2.
  auto logp = torch::zeros({1, 1}).requires_grad_(true);
  auto behaviour = torch::full({1, 1}, std::log(1.0f / 3));
  auto mask = torch::ones({1, 1});
  GrpoOptions o = no_kl();
  o.importance = "decoupled";
  o.is_cap = 2;
  auto r = grpo_objective(logp, behaviour, torch::Tensor(), mask, torch::ones({1}), o);
  EXPECT_NEAR(r.loss.item<double>(), -2.0, 1e-6);
  EXPECT_NEAR(r.weight_max, 2.0, 1e-6);
  EXPECT_NEAR(r.weight_capped_fraction, 1.0, 1e-9);
  r.loss.backward();
  EXPECT_NEAR(logp.grad().item<double>(), -2.0, 1e-6);
  // Uncapped: the full weight 3.
  o.is_cap = 0;
  auto logp2 = torch::zeros({1, 1}).requires_grad_(true);
  EXPECT_NEAR(grpo_objective(logp2, behaviour, torch::Tensor(), mask, torch::ones({1}), o).loss.item<double>(),
              -3.0, 1e-5);
}

TEST(ObjectivesTest, BadOptionsAreRefused) {
  GrpoOptions o;
  o.kl_estimator = "k4";
  EXPECT_FALSE(validate_objective(o).ok());
  o = GrpoOptions();
  o.aggregation = "sum";
  EXPECT_FALSE(validate_objective(o).ok());
  o = GrpoOptions();
  o.importance = "tis";
  EXPECT_FALSE(validate_objective(o).ok());
  EXPECT_TRUE(validate_objective(GrpoOptions()).ok());
}

}  // namespace
}  // namespace grpo::runtime
