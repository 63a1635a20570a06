#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <vector>

#include "runtime/recipe.h"
#include "runtime/task.h"
#include "runtime/tokenizer.h"

namespace grpo::runtime {
namespace {

TEST(AdditionTaskTest, SolutionShowsDigitSumsWithCarries) {
  EXPECT_EQ(AdditionTask::solution("357+468="),
            "<think>7+8=15,5+6+1=12,3+4+1=8</think><answer>825</answer>");
  EXPECT_EQ(AdditionTask::solution("957+468="),
            "<think>7+8=15,5+6+1=12,9+4+1=14</think><answer>1425</answer>");
  EXPECT_EQ(AdditionTask::solution("000+000="), "<think>0+0=0,0+0=0,0+0=0</think><answer>0</answer>");
  EXPECT_EQ(AdditionTask::solution("12x+3="), "");
}

TEST(AdditionTaskTest, SlipTracesStayConsistentWithTheirWrongSum) {
  // Slip in the middle step (+1): 5+6+1 = 13 instead of 12; the carry and answer follow from 13.
  EXPECT_EQ(AdditionTask::solution("357+468=", 1, 1),
            "<think>7+8=15,5+6+1=13,3+4+1=8</think><answer>835</answer>");
  // Slip in the first step (-1): 7+8 = 14; the last sum is clamped to stay a digit sum.
  EXPECT_EQ(AdditionTask::solution("357+468=", 0, -1),
            "<think>7+8=14,5+6+1=12,3+4+1=8</think><answer>824</answer>");
  EXPECT_EQ(AdditionTask::solution("000+000=", 0, -1), "<think>0+0=1,0+0=0,0+0=0</think><answer>1</answer>");
  EXPECT_EQ(AdditionTask::solution("357+468=", -1, 1, false), "<think>7+8=15,5+6+1=12,3+4+1=8</think>825");
}

TEST(AdditionTaskTest, ProblemsAreDeterministicAndCorrect) {
  AdditionTask task(3);
  EXPECT_EQ(task.problem(5, 17).prompt, task.problem(5, 17).prompt);
  std::set<std::string> seen;
  for (uint64_t i = 0; i < 200; ++i) {
    Problem p = task.problem(5, i);
    ASSERT_EQ(p.prompt.size(), 8u);
    int a = std::stoi(p.prompt.substr(0, 3)), b = std::stoi(p.prompt.substr(4, 3));
    EXPECT_EQ(p.answer, std::to_string(a + b));
    seen.insert(p.prompt);
  }
  EXPECT_GT(seen.size(), 190u);
  // A different seed gives a different stream.
  int same = 0;
  for (uint64_t i = 0; i < 100; ++i) same += task.problem(5, i).prompt == task.problem(6, i).prompt;
  EXPECT_LT(same, 3);
}

TEST(AdditionTaskTest, LoadJsonlReadsProblemsAndNamesBadLines) {
  std::string path = ::testing::TempDir() + "/grpo_task_test.jsonl";
  {
    std::ofstream out(path);
    out << "{\"question\": \"12+30\", \"answer\": \"42\"}\n\n{\"question\": \"1+1=\", \"answer\": 2}\n";
  }
  auto ok = AdditionTask::load_jsonl(path);
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_EQ(ok->size(), 2u);
  EXPECT_EQ((*ok)[0].prompt, "12+30=");
  EXPECT_EQ((*ok)[1].answer, "2");
  {
    std::ofstream out(path);
    out << "{\"question\": \"12+30\", \"answer\": \"42\"}\n{\"question\": \"twelve\", \"answer\": \"1\"}\n";
  }
  auto bad = AdditionTask::load_jsonl(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(path + ":2:"), std::string::npos) << bad.status();
  {
    std::ofstream out(path);
    out << "not json\n";
  }
  EXPECT_NE(AdditionTask::load_jsonl(path).status().message().find(":1: not a JSON object"), std::string::npos);
  std::remove(path.c_str());
  EXPECT_EQ(AdditionTask::load_jsonl(path).status().code(), StatusCode::kNotFound);
}

TEST(TaskTokenizerTest, RoundTripsTracesAndRejectsUnknownCharacters) {
  TaskTokenizer tok;
  std::string text = AdditionTask::solution("357+468=");
  auto ids = tok.encode(text);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ((*ids)[0], TaskTokenizer::kThinkOpen);
  EXPECT_EQ(ids->back(), TaskTokenizer::kAnswerClose);
  EXPECT_EQ(*tok.decode(*ids), text);
  auto bad = tok.encode("12?3");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'?' at position 2"), std::string::npos);
  EXPECT_FALSE(tok.decode({1, 999}).ok());
  EXPECT_EQ(*tok.decode({TaskTokenizer::kBos, tok.encode("7")->at(0)}), "7");
}

TEST(EvalStatsTest, StandardErrorIsSampleSdOverRootN) {
  EXPECT_EQ(standard_error({}), 0.0);
  EXPECT_EQ(standard_error({0.75}), 0.0);
  EXPECT_EQ(standard_error({1, 1, 1}), 0.0);
  EXPECT_NEAR(standard_error({0, 1}), 0.5, 1e-12);
  // mean 0.5, squares 0.625, variance 0.625 / 4, error sqrt(0.15625 / 5)
  EXPECT_NEAR(standard_error({0, 0.25, 0.5, 0.75, 1}), 0.1767766953, 1e-9);
  // Four times the prompts at the same spread halves the error.
  std::vector<double> many;
  for (int i = 0; i < 4; ++i) many.insert(many.end(), {0, 0.25, 0.5, 0.75, 1});
  EXPECT_NEAR(standard_error(many), 0.1767766953 / 2, 0.01);
}

}  // namespace
}  // namespace grpo::runtime
