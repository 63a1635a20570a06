#include "runtime/bench_learner.h"

#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <vector>

#include "runtime/alloc_counter.h"
#include "runtime/fused_logprobs.h"
#include "runtime/model.h"
#include "runtime/objectives.h"
#include "runtime/tokenizer.h"
#include "runtime/trainer.h"

namespace grpo::runtime {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The plain LibTorch GRPO step a user would write: logits at every position, log_softmax + gather,
// the same objective (runtime/objectives.h), entropy metric, global-norm clip, AdamW.
class PlainStep {
 public:
  PlainStep(const ModelConfig& cfg, const WeightBlob& init, const OptimizerOptions& o)
      : model_(cfg), reference_(cfg), options_(o) {
    GRPO_CHECK(model_->import_weights(init).ok());
    GRPO_CHECK(reference_->import_weights(init).ok());
    for (auto& p : reference_->parameters()) p.set_requires_grad(false);
    optimizer_ = std::make_unique<torch::optim::AdamW>(
        model_->parameters(),
        torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).weight_decay(o.weight_decay));
  }

  void step(const std::vector<TrainSample>& batch, const GrpoOptions& g) {
    const int64_t n = static_cast<int64_t>(batch.size());
    int64_t len = 0;
    for (const auto& s : batch) len = std::max<int64_t>(len, static_cast<int64_t>(s.prompt_ids.size() + s.response_ids.size()) - 1);
    auto inputs = torch::zeros({n, len}, torch::kInt64), targets = torch::zeros({n, len}, torch::kInt64);
    auto mask = torch::zeros({n, len}), behaviour = torch::zeros({n, len}), adv = torch::zeros({n});
    auto in_a = inputs.accessor<int64_t, 2>(), tg_a = targets.accessor<int64_t, 2>();
    auto m_a = mask.accessor<float, 2>(), b_a = behaviour.accessor<float, 2>();
    auto adv_a = adv.accessor<float, 1>();
    for (int64_t i = 0; i < n; ++i) {
      const auto& s = batch[static_cast<size_t>(i)];
      std::vector<int32_t> seq(s.prompt_ids);
      seq.insert(seq.end(), s.response_ids.begin(), s.response_ids.end());
      const int64_t p = static_cast<int64_t>(s.prompt_ids.size());
      adv_a[i] = s.advantage;
      for (int64_t t = 0; t + 1 < static_cast<int64_t>(seq.size()); ++t) {
        in_a[i][t] = seq[static_cast<size_t>(t)];
        tg_a[i][t] = seq[static_cast<size_t>(t + 1)];
        if (t + 1 >= p) {
          m_a[i][t] = 1.0f;
          b_a[i][t] = s.behaviour_logprobs[static_cast<size_t>(t + 1 - p)];
        }
      }
    }
    auto positions = torch::arange(len, torch::kInt64).unsqueeze(0).expand({n, len});
    torch::Tensor ref_logp;
    {
      torch::NoGradGuard no_grad;
      auto ref_all = torch::log_softmax(reference_->forward(inputs, positions, AttentionCall{}) / g.temperature, -1);
      ref_logp = ref_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1);
    }
    auto logp_all = torch::log_softmax(model_->forward(inputs, positions, AttentionCall{}) / g.temperature, -1);
    auto logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1);
    auto entropy = -(logp_all.exp() * logp_all).sum(-1).detach();
    // The learner reports this metric every step, so the baseline computes it too.
    const double entropy_mean = ((entropy * mask).sum() / mask.sum()).item<double>();
    (void)entropy_mean;
    ObjectiveResult obj = grpo_objective(logp, behaviour, ref_logp, mask, adv, g);
    optimizer_->zero_grad();
    obj.loss.backward();
    torch::nn::utils::clip_grad_norm_(model_->parameters(), options_.max_grad_norm);
    for (auto& group : optimizer_->param_groups())
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(options_.lr);
    optimizer_->step();
  }

  WeightBlob weights() const { return model_->export_weights(); }

 private:
  LlamaForCausalLM model_, reference_;
  OptimizerOptions options_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
};

std::vector<TrainSample> make_batch(const LearnerBenchOptions& o, int64_t vocab, std::mt19937_64& rng) {
  std::uniform_int_distribution<int32_t> token(3, static_cast<int32_t>(vocab - 1));
  std::uniform_int_distribution<int64_t> resp_len(std::max<int64_t>(1, o.response_tokens / 2), o.response_tokens);
  std::normal_distribution<float> noise(0.0f, 0.1f), adv(0.0f, 1.0f);
  const float uniform_logp = -std::log(static_cast<float>(vocab));
  std::vector<TrainSample> batch(static_cast<size_t>(o.sequences));
  for (auto& s : batch) {
    for (int64_t i = 0; i < o.prompt_tokens; ++i) s.prompt_ids.push_back(token(rng));
    const int64_t r = resp_len(rng);
    for (int64_t i = 0; i < r; ++i) {
      s.response_ids.push_back(token(rng));
      s.behaviour_logprobs.push_back(uniform_logp + noise(rng));
    }
    s.advantage = adv(rng);
  }
  return batch;
}

double max_diff(const WeightBlob& a, const WeightBlob& b) {
  const float* p = reinterpret_cast<const float*>(a.bytes.data());
  const float* q = reinterpret_cast<const float*>(b.bytes.data());
  double d = 0;
  for (size_t i = 0; i < std::min(a.bytes.size(), b.bytes.size()) / sizeof(float); ++i)
    d = std::max(d, std::fabs(static_cast<double>(p[i]) - q[i]));
  return d;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

void measure_memory(const LearnerBenchOptions& o, LearnerBenchResult* r) {
  torch::manual_seed(static_cast<uint64_t>(o.seed));
  torch::Tensor h = torch::randn({o.memory_tokens, o.memory_hidden}).requires_grad_(true);
  torch::Tensor w = (torch::randn({o.memory_vocab, o.memory_hidden}) * 0.1).requires_grad_(true);
  const torch::Tensor targets = torch::randint(0, o.memory_vocab, {o.memory_tokens}, torch::kLong);
  const torch::Tensor upstream = torch::randn({o.memory_tokens});
  static CountingAllocator counter(c10::GetCPUAllocator());
  c10::Allocator* previous = c10::GetCPUAllocator();
  c10::SetCPUAllocator(&counter, /*priority=*/255);
  auto t0 = std::chrono::steady_clock::now();
  r->unfused_peak_bytes = counter.peak_extra_bytes([&] {
    auto logp = torch::log_softmax(h.matmul(w.t()), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
    (logp * upstream).sum().backward();
    h.mutable_grad().reset();
    w.mutable_grad().reset();
  });
  r->unfused_seconds = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  r->fused_peak_bytes = counter.peak_extra_bytes([&] {
    (fused_token_logprobs(h, w, targets) * upstream).sum().backward();
    h.mutable_grad().reset();
    w.mutable_grad().reset();
  });
  r->fused_seconds = seconds_since(t0);
  c10::SetCPUAllocator(previous, /*priority=*/255);
}

}  // namespace

StatusOr<LearnerBenchResult> bench_learner(const LearnerBenchOptions& o) {
  if (o.sequences < 1 || o.prompt_tokens < 1 || o.response_tokens < 1 || o.steps < 1)
    return invalid_argument("bench learner: sequences, prompt/response tokens and steps must be >= 1");
  if (o.memory && (o.memory_vocab < 1 || o.memory_tokens < 1 || o.memory_hidden < 1))
    return invalid_argument("bench learner: memory vocab, tokens and hidden must be >= 1");
  try {
    LearnerBenchResult r;
    ModelConfig cfg;
    cfg.vocab_size = TaskTokenizer().vocab_size();
    cfg.dim = o.dim;
    cfg.n_layers = o.layers;
    cfg.n_heads = o.heads;
    cfg.n_kv_heads = o.kv_heads;
    cfg.ffn_hidden = o.ffn_hidden;
    cfg.max_seq_len = o.prompt_tokens + o.response_tokens + 1;
    r.vocab = cfg.vocab_size;
    OptimizerOptions opt;  // the demo's GRPO optimiser
    opt.lr = 5e-5;
    opt.max_grad_norm = 1.0;
    GrpoOptions g;  // the demo's objective
    g.clip_eps = 0.2;
    g.kl_coef = 0.005;
    g.temperature = 0.7;

    OptimizerOptions learner_opt = opt;
    learner_opt.micro_batch_tokens = o.micro_batch_tokens;
    GRPO_ASSIGN_OR_RETURN(auto trainer, Trainer::create(cfg, learner_opt, o.seed));
    PlainStep plain(cfg, trainer->export_weights(), opt);
    std::mt19937_64 rng(o.seed);
    std::vector<std::vector<TrainSample>> batches;
    for (int32_t i = 0; i <= o.steps; ++i) batches.push_back(make_batch(o, cfg.vocab_size, rng));
    for (const auto& s : batches[1]) r.tokens_per_step += static_cast<int64_t>(s.response_ids.size());

    // One warm-up step each, then alternate so both sides see the same machine conditions.
    GRPO_RETURN_IF_ERROR(trainer->grpo_step(batches[0], g).status());
    plain.step(batches[0], g);
    std::vector<double> fused_s, plain_s;
    for (int32_t i = 1; i <= o.steps; ++i) {
      double tok = 0;
      for (const auto& s : batches[static_cast<size_t>(i)]) tok += static_cast<double>(s.response_ids.size());
      auto t0 = std::chrono::steady_clock::now();
      GRPO_RETURN_IF_ERROR(trainer->grpo_step(batches[static_cast<size_t>(i)], g).status());
      fused_s.push_back(seconds_since(t0) / tok);
      t0 = std::chrono::steady_clock::now();
      plain.step(batches[static_cast<size_t>(i)], g);
      plain_s.push_back(seconds_since(t0) / tok);
    }
    r.tokens_per_s = 1.0 / median(fused_s);
    r.baseline_tokens_per_s = 1.0 / median(plain_s);
    r.max_weight_diff = max_diff(trainer->export_weights(), plain.weights());
    if (o.memory) measure_memory(o, &r);
    return r;
  } catch (const c10::Error& e) {
    return internal_error(std::string("bench learner: ") + e.what_without_backtrace());
  }
}

}  // namespace grpo::runtime
