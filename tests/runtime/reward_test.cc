#include <gtest/gtest.h>

#include "runtime/reward.h"

namespace grpo::runtime {
namespace {

const RewardWeights kW{1.0, 0.1};

TEST(RewardTest, CorrectWellFormedAnswerGetsBothTerms) {
  Reward r = score_response("<think>7+8=15</think><answer>825</answer>", true, "825", kW);
  EXPECT_TRUE(r.correct);
  EXPECT_EQ(r.accuracy, 1.0);
  EXPECT_EQ(r.format, 1.0);
  EXPECT_DOUBLE_EQ(r.total, 1.1);
}

TEST(RewardTest, WrongAnswerKeepsFormatTerm) {
  Reward r = score_response("<think>x</think><answer>824</answer>", true, "825", kW);
  EXPECT_FALSE(r.correct);
  EXPECT_DOUBLE_EQ(r.total, 0.1);
}

TEST(RewardTest, FormatNeedsTheWholeTemplateAndEos) {
  EXPECT_EQ(score_response("<think>x</think><answer>825</answer>", false, "825", kW).format, 0.0);
  EXPECT_EQ(score_response("<answer>825</answer>", true, "825", kW).format, 0.0);
  EXPECT_EQ(score_response("<think>x</think>825", true, "825", kW).format, 0.0);
  EXPECT_EQ(score_response("<think>x</think><answer>825</answer>1", true, "825", kW).format, 0.0);
  EXPECT_EQ(score_response("<think><think></think><answer>825</answer>", true, "825", kW).format, 0.0);
  // Unformatted but correct still earns accuracy.
  EXPECT_EQ(score_response("<answer>825</answer>", true, "825", kW).accuracy, 1.0);
}

TEST(RewardTest, AnswersCompareAsIntegers) {
  EXPECT_TRUE(integers_equal("0825", "825"));
  EXPECT_TRUE(integers_equal(" 42 ", "42"));
  EXPECT_TRUE(integers_equal("-0", "0"));
  EXPECT_FALSE(integers_equal("82 5", "825"));
  EXPECT_FALSE(integers_equal("", "0"));
  EXPECT_FALSE(integers_equal("8e2", "800"));
}

TEST(RewardTest, GarbageNeverThrows) {
  for (const char* s : {"", "<", "<answer>", "</answer><answer>", "<think></think><answer></answer>",
                        "<answer>1<answer>2</answer>"}) {
    Reward r = score_response(s, true, "1", kW);
    EXPECT_GE(r.total, 0.0);
  }
  EXPECT_TRUE(score_response("<answer>1<answer>2</answer>", true, "2", kW).correct);
}

}  // namespace
}  // namespace grpo::runtime
