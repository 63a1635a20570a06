#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "runtime/checkpoint.h"
#include "runtime/trainer.h"

namespace grpo::runtime {
namespace {

ModelConfig tiny() {
  ModelConfig c;
  c.vocab_size = 26;
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 4;
  c.ffn_hidden = 64;
  c.max_seq_len = 32;
  return c;
}

std::vector<TrainSample> batch() {
  std::vector<TrainSample> b;
  for (int i = 0; i < 4; ++i) {
    TrainSample s;
    s.prompt_ids = {1, 7 + i, 8};
    s.response_ids = {9, 10 + i, 11, 2};
    s.behaviour_logprobs = {-3.2f, -3.3f, -3.1f, -3.25f};
    s.advantage = i % 2 ? 1.0f : -1.0f;
    b.push_back(s);
  }
  return b;
}

TEST(TrainerTest, SftReducesLossOnAFixedBatch) {
  OptimizerOptions o;
  o.lr = 3e-3;
  auto t = std::move(Trainer::create(tiny(), o, 1).value());
  double first = t->sft_step(batch())->loss;
  double last = first;
  for (int i = 0; i < 30; ++i) last = t->sft_step(batch())->loss;
  EXPECT_LT(last, first * 0.5);
  EXPECT_EQ(t->optimizer_step(), 31);
}

TEST(TrainerTest, GrpoStepReportsRatioKlAndClipping) {
  OptimizerOptions o;
  o.lr = 1e-3;
  auto t = std::move(Trainer::create(tiny(), o, 1).value());
  // Behaviour logprobs far from the policy's: ratios leave [0.8, 1.2] and get clipped.
  auto s = t->grpo_step(batch(), GrpoOptions{0.2, 0.04});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->skipped);
  EXPECT_GT(s->clip_fraction, 0.0);
  EXPECT_NEAR(s->kl, 0.0, 1e-6);  // reference == policy before the first update
  EXPECT_EQ(s->tokens, 16);
  auto s2 = t->grpo_step(batch(), GrpoOptions{0.2, 0.04});
  EXPECT_GT(s2->kl, 0.0);  // the policy has moved away from the frozen reference
}

TEST(TrainerTest, NonFiniteLossSkipsTheUpdate) {
  auto t = std::move(Trainer::create(tiny(), OptimizerOptions{}, 1).value());
  WeightBlob before = t->export_weights();
  auto b = batch();
  b[0].advantage = std::nanf("");
  auto s = t->grpo_step(b, GrpoOptions{});
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->skipped);
  EXPECT_EQ(t->export_weights().bytes, before.bytes);
  EXPECT_EQ(t->optimizer_step(), 0);
}

TEST(TrainerTest, MalformedBatchesAreRejected) {
  auto t = std::move(Trainer::create(tiny(), OptimizerOptions{}, 1).value());
  auto b = batch();
  b[1].behaviour_logprobs.pop_back();
  EXPECT_EQ(t->grpo_step(b, GrpoOptions{}).status().code(), StatusCode::kInvalidArgument);
  b = batch();
  b[2].response_ids[0] = 500;
  EXPECT_EQ(t->sft_step(b).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(t->sft_step({}).ok());
}

TEST(TrainerTest, CheckpointRoundTripRestoresWeightsAndContinuesIdentically) {
  std::string dir = ::testing::TempDir() + "/grpo_ckpt_test";
  std::filesystem::remove_all(dir);
  OptimizerOptions o;
  o.lr = 1e-3;
  auto a = std::move(Trainer::create(tiny(), o, 1).value());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(a->grpo_step(batch(), GrpoOptions{}).ok());
  CheckpointInfo info;
  info.step = 3;
  info.sft_pass_at_1 = 0.25;
  ASSERT_TRUE(save_checkpoint(*a, dir, info, 2).ok());
  auto b = std::move(Trainer::create(tiny(), o, 99).value());
  auto latest = latest_checkpoint(dir);
  ASSERT_TRUE(latest.ok() && latest->has_value());
  EXPECT_EQ((*latest)->step, 3);
  EXPECT_DOUBLE_EQ((*latest)->sft_pass_at_1, 0.25);
  ASSERT_TRUE(load_checkpoint(*b, **latest).ok());
  EXPECT_EQ(b->export_weights().bytes, a->export_weights().bytes);
  EXPECT_EQ(b->optimizer_step(), 3);
  // Same next step from the same state (optimizer moments included) -> same weights.
  ASSERT_TRUE(a->grpo_step(batch(), GrpoOptions{}).ok());
  ASSERT_TRUE(b->grpo_step(batch(), GrpoOptions{}).ok());
  EXPECT_EQ(b->export_weights().bytes, a->export_weights().bytes);
  // Only the newest `keep` survive.
  for (int64_t s : {4, 5, 6}) {
    info.step = s;
    ASSERT_TRUE(save_checkpoint(*a, dir, info, 2).ok());
  }
  int count = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/checkpoints")) count += !e.path().empty();
  EXPECT_EQ(count, 2);
  EXPECT_EQ((*latest_checkpoint(dir))->step, 6);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace grpo::runtime
