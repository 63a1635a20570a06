// The continuous-batching engine: KV-cache decoding equals full recomputation, samplers, per-request
// seeds independent of batch composition, requests joining a running batch, stop strings, EOS, and
// weights swapped between decode steps.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "runtime/engine.h"
#include "runtime/model.h"
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
  c.max_seq_len = 48;
  return c;
}

LlamaForCausalLM make_model(uint64_t seed, ModelConfig cfg = tiny()) {
  torch::manual_seed(seed);
  LlamaForCausalLM m(cfg);
  m->eval();
  return m;
}

// Logits of the last position, recomputing the whole sequence (no cache).
torch::Tensor full_logits(LlamaForCausalLM& m, const std::vector<int32_t>& seq) {
  torch::NoGradGuard ng;
  std::vector<int64_t> ids(seq.begin(), seq.end());
  auto t = torch::tensor(ids, torch::kInt64).unsqueeze(0);
  auto pos = torch::arange(static_cast<int64_t>(ids.size()), torch::kInt64).unsqueeze(0);
  return m->forward(t, pos, torch::Tensor())[0][-1];
}

std::vector<int32_t> greedy_reference(LlamaForCausalLM& m, std::vector<int32_t> seq, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    int32_t next = static_cast<int32_t>(full_logits(m, seq).argmax().item<int64_t>());
    out.push_back(next);
    seq.push_back(next);
  }
  return out;
}

std::map<uint64_t, std::vector<GeneratedSample>> drain(Engine& e) {
  std::map<uint64_t, std::vector<GeneratedSample>> out;
  while (!e.idle()) {
    auto done = e.step();
    EXPECT_TRUE(done.ok()) << done.status();
    if (!done.ok()) break;
    for (auto& f : *done) out[f.id] = std::move(f.samples);
  }
  return out;
}

SamplingOptions greedy(int n) {
  SamplingOptions o;
  o.temperature = 0;
  o.max_new_tokens = n;
  o.eos_id = -1;  // never stop early
  return o;
}

TEST(EngineTest, CachedGreedyDecodingMatchesFullRecompute) {
  auto model = make_model(3);
  Engine engine(model, EngineOptions{8, 0});
  std::vector<std::vector<int32_t>> prompts = {{1, 5, 9, 13}, {1, 7, 8, 9, 10, 11, 12}, {4}};
  for (size_t i = 0; i < prompts.size(); ++i)
    ASSERT_TRUE(engine.submit(i, {prompts[i], i == 1 ? 2 : 1}, greedy(12), 0).ok());
  auto out = drain(engine);
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(out[i][0].ids, greedy_reference(model, prompts[i], 12)) << "request " << i;
  EXPECT_EQ(out[1][1].ids, out[1][0].ids);
}

TEST(EngineTest, LogprobsAreThoseOfTheSamplingDistribution) {
  auto model = make_model(5);
  Engine engine(model, EngineOptions{4, 0});
  SamplingOptions o;
  o.temperature = 0.8;
  o.max_new_tokens = 10;
  o.eos_id = -1;
  std::vector<int32_t> prompt = {1, 2, 3};
  ASSERT_TRUE(engine.submit(0, {prompt, 3}, o, 17).ok());
  auto out = drain(engine);
  for (const auto& s : out[0]) {
    ASSERT_EQ(s.ids.size(), 10u);
    std::vector<int32_t> seq = prompt;
    for (size_t t = 0; t < s.ids.size(); ++t) {
      auto lp = torch::log_softmax(full_logits(model, seq) / 0.8, -1)[s.ids[t]].item<float>();
      EXPECT_NEAR(s.logprobs[t], lp, 1e-4) << "token " << t;
      seq.push_back(s.ids[t]);
    }
  }
}

TEST(EngineTest, SeededSamplingDoesNotDependOnTheBatch) {
  auto model = make_model(7);
  SamplingOptions o;
  o.temperature = 1.0;
  o.top_p = 0.95;
  o.max_new_tokens = 15;
  o.eos_id = -1;
  Engine alone(model, EngineOptions{8, 0});
  ASSERT_TRUE(alone.submit(0, {{1, 2, 3}, 2}, o, 99).ok());
  auto a = drain(alone);
  Engine crowded(model, EngineOptions{8, 0});
  ASSERT_TRUE(crowded.submit(10, {{5, 6, 7, 8, 9}, 3}, o, 1).ok());
  ASSERT_TRUE(crowded.submit(11, {{1, 2, 3}, 2}, o, 99).ok());
  ASSERT_TRUE(crowded.submit(12, {{4}, 1}, o, 2).ok());
  auto b = drain(crowded);
  EXPECT_EQ(a[0][0].ids, b[11][0].ids);
  EXPECT_EQ(a[0][1].ids, b[11][1].ids);
  EXPECT_NE(a[0][0].ids, a[0][1].ids);  // the samples of one request differ
  Engine other_seed(model, EngineOptions{8, 0});
  ASSERT_TRUE(other_seed.submit(0, {{1, 2, 3}, 2}, o, 100).ok());
  EXPECT_NE(drain(other_seed)[0][0].ids, a[0][0].ids);
}

TEST(EngineTest, TopKOneAndTightMinPAreGreedy) {
  auto model = make_model(9);
  std::vector<int32_t> prompt = {3, 1, 4, 1, 5};
  auto want = greedy_reference(model, prompt, 10);
  SamplingOptions k1;
  k1.temperature = 1.5;
  k1.top_k = 1;
  k1.max_new_tokens = 10;
  k1.eos_id = -1;
  SamplingOptions minp = k1;
  minp.top_k = 0;
  minp.min_p = 0.999;
  for (const auto& o : {k1, minp}) {
    Engine e(model, EngineOptions{4, 0});
    ASSERT_TRUE(e.submit(0, {prompt, 2}, o, 5).ok());
    auto out = drain(e);
    EXPECT_EQ(out[0][0].ids, want);
    for (float lp : out[0][0].logprobs) EXPECT_NEAR(lp, 0.0f, 1e-6);  // the only token left
  }
}

TEST(EngineTest, SamplerFiltersKeepOnlyAllowedTokens) {
  torch::Tensor logits = torch::tensor({{0.0f, 1.0f, 2.0f, 3.0f}});
  torch::Tensor tok, lp;
  SamplingOptions o;
  o.temperature = 1.0;
  o.top_k = 2;
  for (double u : {0.0, 0.3, 0.6, 0.999}) {
    sample_tokens(logits, o, torch::tensor({static_cast<float>(u)}), &tok, &lp);
    EXPECT_GE(tok.item<int64_t>(), 2) << u;
  }
  o.top_k = 0;
  o.min_p = 0.3;  // keeps tokens with p >= 0.3 p_max: logits 3 and 2 (e^-1 = 0.37)
  sample_tokens(logits, o, torch::tensor({0.0f}), &tok, &lp);
  EXPECT_EQ(tok.item<int64_t>(), 2);
  EXPECT_NEAR(lp.item<float>(), std::log(std::exp(2.0) / (std::exp(2.0) + std::exp(3.0))), 1e-5);
  o.min_p = 0;
  o.top_p = 0.5;  // the top token alone has p = 0.64
  sample_tokens(logits, o, torch::tensor({0.0f}), &tok, &lp);
  EXPECT_EQ(tok.item<int64_t>(), 3);
  EXPECT_NEAR(lp.item<float>(), 0.0f, 1e-6);
  // Inverse CDF: with no filter, u just below the first token's mass picks token 0.
  o.top_p = 1.0;
  const float p0 = std::exp(0.0f) / (1 + std::exp(1.0f) + std::exp(2.0f) + std::exp(3.0f));
  sample_tokens(logits, o, torch::tensor({p0 * 0.99f}), &tok, &lp);
  EXPECT_EQ(tok.item<int64_t>(), 0);
  sample_tokens(logits, o, torch::tensor({p0 * 1.01f}), &tok, &lp);
  EXPECT_EQ(tok.item<int64_t>(), 1);
}

TEST(EngineTest, QueuedRequestsJoinARunningBatch) {
  auto model = make_model(11);
  Engine engine(model, EngineOptions{4, 0});
  // Request 0 is long; requests 1..5 are short and must flow through the other 3 slots while it
  // runs, instead of waiting for the batch to drain.
  ASSERT_TRUE(engine.submit(0, {{1, 2}, 1}, greedy(30), 0).ok());
  for (uint64_t i = 1; i <= 5; ++i) ASSERT_TRUE(engine.submit(i, {{3, 4, static_cast<int32_t>(i)}, 1}, greedy(3), i).ok());
  std::vector<uint64_t> order;
  int steps = 0;
  bool long_running_when_last_short_done = false;
  while (!engine.idle()) {
    auto done = engine.step();
    ASSERT_TRUE(done.ok());
    ++steps;
    EXPECT_LE(engine.running(), 4);
    for (auto& f : *done) {
      order.push_back(f.id);
      if (f.id == 5) long_running_when_last_short_done = engine.running() > 0;
    }
  }
  ASSERT_EQ(order.size(), 6u);
  EXPECT_EQ(order.back(), 0u);
  EXPECT_TRUE(long_running_when_last_short_done);
  EXPECT_EQ(steps, 30);  // the short ones never extended the run
  // Each short request still decodes exactly as it would alone.
  EXPECT_EQ(order.size(), 6u);
}

TEST(EngineTest, JoinedRequestsDecodeAsIfAlone) {
  auto model = make_model(13);
  Engine engine(model, EngineOptions{3, 0});
  std::vector<std::vector<int32_t>> prompts = {{1, 2}, {7, 7, 7, 7, 7}, {9}, {2, 4, 6, 8}, {5, 3}};
  for (size_t i = 0; i < prompts.size(); ++i)
    ASSERT_TRUE(engine.submit(i, {prompts[i], 1}, greedy(static_cast<int>(4 + 3 * i)), 0).ok());
  auto out = drain(engine);
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(out[i][0].ids, greedy_reference(model, prompts[i], static_cast<int>(4 + 3 * i))) << i;
}

TEST(EngineTest, EosAndStopStringsEndSequences) {
  auto model = make_model(15);
  std::vector<int32_t> prompt = {1, 2, 3};
  auto ref = greedy_reference(model, prompt, 12);
  // EOS: the greedy continuation's 5th token, declared as an extra EOS id.
  {
    Engine e(model, EngineOptions{2, 0});
    SamplingOptions o = greedy(12);
    o.extra_eos_ids = {ref[4]};
    ASSERT_TRUE(e.submit(0, {prompt, 1}, o, 0).ok());
    auto s = drain(e)[0][0];
    auto first = std::find(ref.begin(), ref.end(), ref[4]) - ref.begin();
    EXPECT_EQ(static_cast<int64_t>(s.ids.size()), first + 1);
    EXPECT_TRUE(s.finished);
    EXPECT_EQ(s.reason, FinishReason::kEos);
  }
  // Stop string: letters a..z for ids 0..25; stop at the text of tokens 3..4 of the reference.
  {
    Engine e(model, EngineOptions{2, 0});
    e.set_decoder([](const std::vector<int32_t>& ids) {
      std::string s;
      for (int32_t id : ids) s.push_back(static_cast<char>('a' + id));
      return s;
    });
    SamplingOptions o = greedy(12);
    std::string stop = {static_cast<char>('a' + ref[3]), static_cast<char>('a' + ref[4])};
    o.stop = {stop};
    ASSERT_TRUE(e.submit(0, {prompt, 1}, o, 0).ok());
    auto s = drain(e)[0][0];
    std::string text;
    for (int32_t id : ref) text.push_back(static_cast<char>('a' + id));
    EXPECT_EQ(s.ids.size(), text.find(stop) + 2);
    EXPECT_EQ(s.reason, FinishReason::kStop);
    EXPECT_TRUE(s.finished);
  }
  // Budget.
  {
    Engine e(model, EngineOptions{2, 0});
    ASSERT_TRUE(e.submit(0, {prompt, 1}, greedy(6), 0).ok());
    auto s = drain(e)[0][0];
    EXPECT_EQ(s.ids.size(), 6u);
    EXPECT_FALSE(s.finished);
    EXPECT_EQ(s.reason, FinishReason::kLength);
  }
}

TEST(EngineTest, WeightsSwapBetweenStepsWithoutDroppingSequences) {
  auto model = make_model(17);
  auto other = make_model(18);
  Engine engine(model, EngineOptions{4, 0});
  engine.set_version(3);
  ASSERT_TRUE(engine.submit(0, {{1, 2, 3}, 2}, greedy(10), 0).ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(engine.step().ok());
  WeightBlob w = other->export_weights();
  ASSERT_TRUE(model->import_weights(w).ok());
  engine.set_version(4);
  auto out = drain(engine);
  ASSERT_EQ(out[0].size(), 2u);
  for (const auto& s : out[0]) {
    ASSERT_EQ(s.ids.size(), 10u);
    ASSERT_EQ(s.versions.size(), 10u);
    for (int t = 0; t < 10; ++t) EXPECT_EQ(s.versions[static_cast<size_t>(t)], t < 4 ? 3u : 4u);
  }
  // Tokens 0..3 came from the old weights: the first four of the old greedy continuation.
  auto old_model = make_model(17);
  auto ref = greedy_reference(old_model, {1, 2, 3}, 4);
  EXPECT_EQ(std::vector<int32_t>(out[0][0].ids.begin(), out[0][0].ids.begin() + 4), ref);
}

TEST(EngineTest, BadRequestsAreRefusedWithReasons) {
  auto model = make_model(19);
  Engine e(model, EngineOptions{2, 0});
  SamplingOptions o = greedy(4);
  EXPECT_FALSE(e.submit(0, {{}, 1}, o, 0).ok());
  EXPECT_FALSE(e.submit(0, {{1, 99}, 1}, o, 0).ok());
  EXPECT_FALSE(e.submit(0, {{1}, 3}, o, 0).ok());  // more samples than slots
  EXPECT_FALSE(e.submit(0, {{1}, 0}, o, 0).ok());
  SamplingOptions bad = o;
  bad.top_p = 0;
  EXPECT_FALSE(e.submit(0, {{1}, 1}, bad, 0).ok());
  bad = o;
  bad.stop = {"x"};  // no decoder
  EXPECT_FALSE(e.submit(0, {{1}, 1}, bad, 0).ok());
  bad = o;
  bad.max_new_tokens = 48;
  auto st = e.submit(0, {{1}, 1}, bad, 0);
  EXPECT_NE(st.message().find("max_seq_len"), std::string::npos) << st;
  ASSERT_TRUE(e.submit(0, {{1}, 1}, o, 0).ok());
  EXPECT_FALSE(e.submit(0, {{1}, 1}, o, 0).ok());  // id in use
  EXPECT_EQ(drain(e).size(), 1u);
}

}  // namespace
}  // namespace grpo::runtime

namespace grpo::runtime {
namespace {

// The fused CPU decode step against the generic LibTorch path, on a Qwen2-style model (q/k/v
// biases, grouped-query heads, scaled RoPE) with rows at different positions.
TEST(EngineTest, FusedDecodeStepMatchesGenericPath) {
  ModelConfig cfg = tiny();
  cfg.arch = "qwen2";
  cfg.qkv_bias = true;
  cfg.mlp_bias = true;
  cfg.rope_scaling.type = "linear";
  cfg.rope_scaling.factor = 2.0;
  torch::manual_seed(21);
  LlamaForCausalLM m(cfg);
  m->eval();
  {
    torch::NoGradGuard ng;
    for (auto& p : m->named_parameters())
      if (p.key().find("bias") != std::string::npos) p.value().normal_(0, 0.1);
  }
  ASSERT_TRUE(m->fast_decode_available());
  torch::NoGradGuard ng;
  auto prompt = torch::randint(0, cfg.vocab_size, {3, 6}, torch::kInt64);
  auto ppos = torch::arange(6, torch::kInt64).unsqueeze(0).expand({3, 6});
  KVCache a = m->make_cache(3, 16), b = m->make_cache(3, 16);
  m->forward(prompt, ppos, torch::Tensor(), &a, 0);
  m->forward(prompt, ppos, torch::Tensor(), &b, 0);
  for (auto& k : a.k) k = to_decode_layout(k);
  auto tok = torch::tensor({4, 9, 17}, torch::kInt64);
  auto pos = torch::tensor({6, 3, 5}, torch::kInt64);  // row 1 and 2 rewrite earlier columns
  auto fast = m->decode_step(tok, pos, a);
  AttentionCall call;
  call.cache = &b;
  call.write_pos = pos;
  call.read_len = 7;
  auto generic = m->forward(tok.view({3, 1}), pos.view({3, 1}), call).select(1, 0);
  EXPECT_LT((fast - generic).abs().max().item<float>(), 1e-4);
  for (size_t l = 0; l < a.k.size(); ++l) {
    EXPECT_LT((from_decode_layout(a.k[l]) - b.k[l]).abs().max().item<float>(), 1e-5);
    EXPECT_LT((a.v[l] - b.v[l]).abs().max().item<float>(), 1e-5);
  }
  // After a weight change the fused weights are rebuilt.
  {
    for (auto& p : m->named_parameters())
      if (p.key().find("q_proj.weight") != std::string::npos) p.value().mul_(1.5);
  }
  auto tok2 = torch::tensor({1, 2, 3}, torch::kInt64);
  auto pos2 = pos + 1;
  call.write_pos = pos2;
  call.read_len = 8;
  auto fast2 = m->decode_step(tok2, pos2, a);
  auto generic2 = m->forward(tok2.view({3, 1}), pos2.view({3, 1}), call).select(1, 0);
  EXPECT_LT((fast2 - generic2).abs().max().item<float>(), 1e-4);
}

}  // namespace
}  // namespace grpo::runtime

namespace grpo::runtime {
namespace {

TEST(EngineTest, DevicesAreCheckedAndPoliciesMove) {
  EXPECT_TRUE(check_device("cpu").ok());
  EXPECT_FALSE(check_device("gpu").ok());
  EXPECT_FALSE(check_device("cuda:x").ok());
  auto p = Policy::create(tiny(), 1);
  if (!torch::cuda::is_available()) {
    Status st = check_device("cuda");
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find("CUDA"), std::string::npos) << st;
    EXPECT_FALSE(p->to_device("cuda").ok());
  }
  ASSERT_TRUE(p->to_device("cpu").ok());
  EXPECT_EQ(p->device(), "cpu");
  SamplingOptions o;
  o.temperature = 0;
  o.max_new_tokens = 5;
  EXPECT_TRUE(p->generate({{{1, 2, 3}, 2}}, o, 0).ok());
}

}  // namespace
}  // namespace grpo::runtime
