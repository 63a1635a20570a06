#include "kernels/cpu/advantages.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace grpo::kernels {
namespace {

std::vector<float> run(const std::vector<float>& r, int64_t groups, AdvantageMode mode) {
  std::vector<float> a(r.size(), -99.0f);
  group_advantages(r.data(), groups, static_cast<int64_t>(r.size()) / groups, mode, 0.0f, a.data());
  return a;
}

TEST(AdvantagesTest, GroupNormMatchesHandComputedValues) {
  // Group {1,0,0,1}: mean 0.5, population std 0.5 -> +1, -1, -1, +1.
  // Group {1,0,0,0}: mean 0.25, std sqrt(3)/4 -> 0.75/0.4330 = 1.7321, -0.25/0.4330 = -0.5774.
  auto a = run({1, 0, 0, 1, 1, 0, 0, 0}, 2, AdvantageMode::kGroupNorm);
  EXPECT_NEAR(a[0], 1.0f, 1e-6);
  EXPECT_NEAR(a[1], -1.0f, 1e-6);
  EXPECT_NEAR(a[3], 1.0f, 1e-6);
  EXPECT_NEAR(a[4], 1.7320508f, 1e-5);
  EXPECT_NEAR(a[5], -0.5773503f, 1e-5);
}

TEST(AdvantagesTest, ZeroVarianceGroupGetsZeroInEveryMode) {
  for (auto mode : {AdvantageMode::kGroupNorm, AdvantageMode::kMeanOnly, AdvantageMode::kRloo}) {
    auto a = run({0.3f, 0.3f, 0.3f}, 1, mode);
    for (float x : a) EXPECT_EQ(x, 0.0f);
  }
}

TEST(AdvantagesTest, MeanOnlyAndLeaveOneOut) {
  auto m = run({1, 0, 0, 0}, 1, AdvantageMode::kMeanOnly);
  EXPECT_NEAR(m[0], 0.75f, 1e-6);
  EXPECT_NEAR(m[1], -0.25f, 1e-6);
  auto l = run({1, 0, 0, 0}, 1, AdvantageMode::kRloo);
  EXPECT_NEAR(l[0], 1.0f, 1e-6);          // 1 - mean(0,0,0)
  EXPECT_NEAR(l[1], -1.0f / 3.0f, 1e-6);  // 0 - mean(1,0,0)
}

TEST(AdvantagesTest, GroupsAreIndependent) {
  auto a = run({5, 5, 0, 1}, 2, AdvantageMode::kGroupNorm);
  EXPECT_EQ(a[0], 0.0f);
  EXPECT_EQ(a[1], 0.0f);
  EXPECT_NEAR(a[2], -1.0f, 1e-6);
  EXPECT_NEAR(a[3], 1.0f, 1e-6);
}

}  // namespace
}  // namespace grpo::kernels
