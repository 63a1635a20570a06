#include <gtest/gtest.h>

#include "runtime/policy.h"

namespace grpo::runtime {
namespace {

ModelConfig tiny() {
  ModelConfig c;
  c.vocab_size = 26;
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;  // grouped-query attention
  c.ffn_hidden = 64;
  c.max_seq_len = 40;
  return c;
}

TEST(PolicyTest, SamplingIsSeededAndLogprobsAreValid) {
  auto p = Policy::create(tiny(), 1);
  SamplingOptions opts;
  opts.temperature = 1.0;
  opts.top_p = 0.9;
  opts.max_new_tokens = 10;
  opts.eos_id = 2;
  std::vector<GenerationRequest> reqs = {{{1, 4, 5}, 4}};
  auto a = p->generate(reqs, opts, 42);
  auto b = p->generate(reqs, opts, 42);
  auto c = p->generate(reqs, opts, 43);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  bool differs = false;
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ((*a)[0][i].ids, (*b)[0][i].ids);
    differs |= (*a)[0][i].ids != (*c)[0][i].ids;
    const auto& s = (*a)[0][i];
    ASSERT_EQ(s.ids.size(), s.logprobs.size());
    for (float lp : s.logprobs) {
      EXPECT_LE(lp, 1e-6f);
      EXPECT_GT(lp, -50.0f);
    }
    EXPECT_EQ(s.finished, !s.ids.empty() && s.ids.back() == 2);
  }
  EXPECT_TRUE(differs);
}

TEST(PolicyTest, WeightsRoundTripBetweenPolicies) {
  auto a = Policy::create(tiny(), 1);
  auto b = Policy::create(tiny(), 2);
  SamplingOptions opts;
  opts.temperature = 0;
  opts.max_new_tokens = 8;
  std::vector<GenerationRequest> reqs = {{{1, 3, 4, 5}, 1}};
  auto before = b->generate(reqs, opts, 0);
  WeightBlob w = a->export_weights();
  EXPECT_EQ(w.tensors.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(w.tensors.back().name, "lm_head.weight");
  ASSERT_TRUE(b->load_weights(w).ok());
  EXPECT_EQ((*a->generate(reqs, opts, 0))[0][0].ids, (*b->generate(reqs, opts, 0))[0][0].ids);
  EXPECT_EQ(b->export_weights().bytes, w.bytes);
  (void)before;
}

TEST(PolicyTest, BadRequestsAndWeightsFailCleanly) {
  auto p = Policy::create(tiny(), 1);
  SamplingOptions opts;
  opts.max_new_tokens = 8;
  EXPECT_FALSE(p->generate({{{1, 99}, 1}}, opts, 0).ok());     // token outside vocabulary
  EXPECT_FALSE(p->generate({{{}, 1}}, opts, 0).ok());          // empty prompt
  opts.max_new_tokens = 39;
  EXPECT_FALSE(p->generate({{{1, 2, 3}, 1}}, opts, 0).ok());   // exceeds max_seq_len
  WeightBlob w = p->export_weights();
  WeightBlob truncated = w;
  truncated.bytes.resize(w.bytes.size() / 2);
  EXPECT_FALSE(p->load_weights(truncated).ok());
  WeightBlob missing = w;
  missing.tensors.pop_back();
  EXPECT_FALSE(p->load_weights(missing).ok());
  EXPECT_EQ(p->export_weights().bytes, w.bytes);  // a rejected blob changed nothing
}

}  // namespace
}  // namespace grpo::runtime
