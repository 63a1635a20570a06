#include "actors/admission.h"

#include <gtest/gtest.h>

namespace grpo::actors {
namespace {

AdmissionState state(uint64_t step, uint64_t issued, uint64_t retired, int32_t k) {
  AdmissionState s;
  s.learner_step = step;
  s.issued = issued;
  s.retired = retired;
  s.groups_per_step = 4;
  s.max_staleness = k;
  s.total_steps = 100;
  return s;
}

TEST(AdmissionTest, OnPolicyWaitsForTheLearner) {
  // k = 0: a generator at version 0 fills exactly the batch of the next step, then waits.
  auto a = admit(state(0, 0, 0, 0), 0, 10);
  EXPECT_EQ(a, std::vector<uint64_t>({0, 0, 0, 0}));
  EXPECT_TRUE(admit(state(0, 4, 0, 0), 0, 1).empty());
  // Once the learner consumed them and the generator holds version 1, the next batch opens.
  EXPECT_TRUE(admit(state(1, 4, 4, 0), 0, 1).empty());  // stale weights: wait for the broadcast
  EXPECT_EQ(admit(state(1, 4, 4, 0), 1, 10).size(), 4u);
}

TEST(AdmissionTest, StalenessOneAllowsOneBatchAhead) {
  auto a = admit(state(0, 0, 0, 1), 0, 20);
  ASSERT_EQ(a.size(), 8u);  // batches consumed at versions 0 and 1
  EXPECT_EQ(a.front(), 0u);
  EXPECT_EQ(a.back(), 1u);
  // Every admitted group is consumed at most k versions after the weights that generate it.
  for (uint64_t v = 0; v < 5; ++v)
    for (uint64_t at : admit(state(v, 4 * v, 4 * v, 1), v, 50)) EXPECT_LE(at - v, 1u);
}

TEST(AdmissionTest, EvictedGroupsReopenThePipeline) {
  EXPECT_TRUE(admit(state(0, 8, 0, 1), 0, 1).empty());
  EXPECT_EQ(admit(state(0, 8, 2, 1), 0, 5).size(), 2u);
}

TEST(AdmissionTest, NothingBeyondTheLastStep) {
  AdmissionState s = state(98, 392, 392, 1);
  EXPECT_EQ(admit(s, 98, 20).size(), 8u);  // versions 98 and 99 feed steps 99 and 100
  s.learner_step = 100;
  EXPECT_TRUE(admit(s, 100, 20).empty());
}

}  // namespace
}  // namespace grpo::actors
