#include <gtest/gtest.h>

#include <cmath>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <torch/torch.h>

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
  // The loss covers the 4 x 4 response tokens only, never the prompts.
  EXPECT_EQ(t->sft_step(batch())->tokens, 16);
}

TEST(TrainerTest, SftLossIsTheMeanNegativeLogprobOfResponseTokens) {
  // With lr = 0 nothing moves, so steps on different batches see the same model.
  OptimizerOptions o;
  o.lr = 0;
  auto t = std::move(Trainer::create(tiny(), o, 4).value());
  auto b = batch();
  const double base = t->sft_step(b)->loss;
  // Doubling each sample leaves the token mean unchanged.
  auto doubled = b;
  doubled.insert(doubled.end(), b.begin(), b.end());
  EXPECT_NEAR(t->sft_step(doubled)->loss, base, 1e-6);
  // A uniform model would give log(V); a random init is close to it.
  EXPECT_NEAR(base, std::log(26.0), 0.5);
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

// A draw from LibTorch's default CPU generator (part of the checkpointed state).
float random_probe() { return torch::rand({1}).item<float>(); }

// Samples of different prompt and response lengths, so packing and normalisers matter.
std::vector<TrainSample> ragged_batch(int n) {
  std::vector<TrainSample> b;
  for (int i = 0; i < n; ++i) {
    TrainSample s;
    for (int k = 0; k <= i % 3; ++k) s.prompt_ids.push_back(1 + (i + k) % 20);
    for (int k = 0; k < 2 + (i * 5) % 7; ++k) {
      s.response_ids.push_back(3 + (i * 7 + k * 3) % 22);
      s.behaviour_logprobs.push_back(-3.0f - 0.05f * static_cast<float>((i + k) % 5));
    }
    s.advantage = static_cast<float>((i % 4) - 1.5) / 1.5f;
    b.push_back(s);
  }
  return b;
}

double max_weight_diff(const Trainer& a, const Trainer& b) {
  WeightBlob x = a.export_weights(), y = b.export_weights();
  EXPECT_EQ(x.bytes.size(), y.bytes.size());
  const float* p = reinterpret_cast<const float*>(x.bytes.data());
  const float* q = reinterpret_cast<const float*>(y.bytes.data());
  double d = 0;
  for (size_t i = 0; i < x.bytes.size() / sizeof(float); ++i) d = std::max(d, std::fabs(double(p[i]) - q[i]));
  return d;
}

TEST(TrainerTest, MicroBatchesGiveTheUpdateOfTheWholeBatch) {
  for (const char* aggregation : {"seq_mean", "token_mean", "seq_sum_norm"}) {
    SCOPED_TRACE(aggregation);
    OptimizerOptions whole_opts;
    whole_opts.lr = 1e-2;
    OptimizerOptions micro_opts = whole_opts;
    micro_opts.micro_batch_tokens = 24;  // a few sequences per pass
    auto whole = std::move(Trainer::create(tiny(), whole_opts, 3).value());
    auto micro = std::move(Trainer::create(tiny(), micro_opts, 3).value());
    GrpoOptions g;
    g.aggregation = aggregation;
    g.kl_coef = 0.05;
    auto batch = ragged_batch(10);
    for (int step = 0; step < 3; ++step) {
      auto a = whole->grpo_step(batch, g);
      auto b = micro->grpo_step(batch, g);
      ASSERT_TRUE(a.ok() && b.ok());
      EXPECT_EQ(a->micro_batches, 1);
      EXPECT_GT(b->micro_batches, 2);
      EXPECT_NEAR(a->loss, b->loss, 1e-5);
      EXPECT_NEAR(a->entropy, b->entropy, 1e-5);
      EXPECT_NEAR(a->grad_norm, b->grad_norm, 1e-5 * std::max(1.0, a->grad_norm));
      EXPECT_EQ(a->tokens, b->tokens);
    }
    EXPECT_LE(max_weight_diff(*whole, *micro), 1e-5);
  }
}

// An in-process sum all-reduce for `world` threads (the unit-test stand-in for the ZeroMQ ring).
class ThreadReducer {
 public:
  explicit ThreadReducer(int world) : world_(world) {}
  Status reduce(float* data, size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    const int gen = generation_;
    if (arrived_ == 0) sum_.assign(n, 0.0f);
    for (size_t i = 0; i < n; ++i) sum_[i] += data[i];
    if (++arrived_ == world_) {
      arrived_ = 0;
      result_ = sum_;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != gen; });
    }
    std::memcpy(data, result_.data(), n * sizeof(float));
    return ok_status();
  }

 private:
  int world_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0, generation_ = 0;
  std::vector<float> sum_, result_;
};

TEST(TrainerTest, ShardsWithAGradientReducerMatchOneTrainerOnTheWholeBatch) {
  OptimizerOptions o;
  o.lr = 1e-3;
  auto single = std::move(Trainer::create(tiny(), o, 5).value());
  std::vector<std::unique_ptr<Trainer>> replicas;
  for (int r = 0; r < 2; ++r) replicas.push_back(std::move(Trainer::create(tiny(), o, 5).value()));
  ThreadReducer reducer(2);
  for (auto& t : replicas) t->set_gradient_reducer([&](float* d, size_t n) { return reducer.reduce(d, n); });
  GrpoOptions g;
  g.kl_coef = 0.05;
  auto batch = ragged_batch(9);
  const BatchTotals totals = batch_totals(batch);
  for (int step = 0; step < 3; ++step) {
    auto want = single->grpo_step(batch, g);
    ASSERT_TRUE(want.ok());
    std::vector<StatusOr<StepStats>> got(2, StatusOr<StepStats>(internal_error("not run")));
    std::vector<std::thread> threads;
    for (int r = 0; r < 2; ++r) {
      threads.emplace_back([&, r] {
        std::vector<TrainSample> shard;
        for (size_t i = static_cast<size_t>(r); i < batch.size(); i += 2) shard.push_back(batch[i]);
        got[static_cast<size_t>(r)] = replicas[static_cast<size_t>(r)]->grpo_step(shard, g, &totals);
      });
    }
    for (auto& th : threads) th.join();
    for (auto& s : got) {
      ASSERT_TRUE(s.ok()) << s.status();
      EXPECT_NEAR(s->loss, want->loss, 1e-5);
      EXPECT_EQ(s->tokens, want->tokens);
    }
    EXPECT_LE(max_weight_diff(*single, *replicas[0]), 1e-5) << "after step " << step;
  }
  EXPECT_EQ(replicas[0]->export_weights().bytes, replicas[1]->export_weights().bytes);
}

TEST(TrainerTest, StopAndResumeFromACheckpointIsBitExact) {
  Trainer::set_deterministic(true);
  const std::string dir = ::testing::TempDir() + "/grpo_resume_test";
  std::filesystem::remove_all(dir);
  OptimizerOptions o;
  o.lr = 5e-3;
  o.warmup_steps = 2;
  o.schedule = "cosine";
  o.total_steps = 8;
  o.micro_batch_tokens = 30;
  o.weight_decay = 0.01;
  GrpoOptions g;
  g.kl_coef = 0.02;
  auto batch_at = [](int step) {
    auto b = ragged_batch(6 + step % 3);
    for (auto& s : b) s.advantage *= (step % 2 ? -1.0f : 1.0f);
    return b;
  };
  const int n = 8;
  auto straight = std::move(Trainer::create(tiny(), o, 21).value());
  for (int i = 0; i < n; ++i) ASSERT_TRUE(straight->grpo_step(batch_at(i), g).ok());
  const float after_straight = random_probe();

  auto first = std::move(Trainer::create(tiny(), o, 21).value());
  for (int i = 0; i < n / 2; ++i) ASSERT_TRUE(first->grpo_step(batch_at(i), g).ok());
  CheckpointInfo info;
  info.step = n / 2;
  info.buffer_cursor = 123;
  ASSERT_TRUE(save_checkpoint(*first, dir, info, 3).ok());
  first.reset();  // stop
  // Resume in a fresh trainer (different seed, different random init, a different RNG position).
  auto resumed = std::move(Trainer::create(tiny(), o, 777).value());
  random_probe();
  auto latest = latest_checkpoint(dir);
  ASSERT_TRUE(latest.ok() && latest->has_value());
  EXPECT_EQ((*latest)->buffer_cursor, 123u);
  ASSERT_TRUE(load_checkpoint(*resumed, **latest).ok());
  EXPECT_EQ(resumed->optimizer_step(), n / 2);
  for (int i = n / 2; i < n; ++i) ASSERT_TRUE(resumed->grpo_step(batch_at(i), g).ok());
  EXPECT_EQ(resumed->export_weights().bytes, straight->export_weights().bytes)
      << "max difference " << max_weight_diff(*resumed, *straight);
  EXPECT_EQ(random_probe(), after_straight) << "the RNG state was not restored";
  // The model part is a Hugging Face checkpoint.
  EXPECT_TRUE(std::filesystem::exists((*latest)->path + "/config.json"));
  EXPECT_TRUE(std::filesystem::exists((*latest)->path + "/model.safetensors"));
  std::filesystem::remove_all(dir);
  Trainer::set_deterministic(false);
}

TEST(TrainerTest, ACorruptCheckpointIsAnErrorAndChangesNothing) {
  const std::string dir = ::testing::TempDir() + "/grpo_corrupt_ckpt_test";
  std::filesystem::remove_all(dir);
  auto a = std::move(Trainer::create(tiny(), OptimizerOptions{}, 1).value());
  ASSERT_TRUE(a->grpo_step(batch(), GrpoOptions{}).ok());
  CheckpointInfo info;
  info.step = 1;
  ASSERT_TRUE(save_checkpoint(*a, dir, info, 1).ok());
  auto latest = *latest_checkpoint(dir);
  {
    std::filesystem::resize_file(latest->path + "/state.safetensors", 20);
  }
  auto b = std::move(Trainer::create(tiny(), OptimizerOptions{}, 2).value());
  WeightBlob before = b->export_weights();
  Status st = load_checkpoint(*b, *latest);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("state.safetensors"), std::string::npos) << st;
  EXPECT_EQ(b->export_weights().bytes, before.bytes);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace grpo::runtime
