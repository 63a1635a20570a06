#include "runtime/trainer.h"

#include "runtime/objectives.h"

#include <cmath>

#include "runtime/model.h"

namespace grpo::runtime {

struct Trainer::Impl {
  Impl(const ModelConfig& cfg, const OptimizerOptions& opts)
      : model(cfg), reference(cfg), options(opts) {
    make_optimizer();
    reference->eval();
    for (auto& p : reference->parameters()) p.set_requires_grad(false);
  }

  void make_optimizer() {
    optimizer = std::make_unique<torch::optim::AdamW>(
        model->parameters(), torch::optim::AdamWOptions(options.lr)
                                 .betas({options.beta1, options.beta2})
                                 .weight_decay(options.weight_decay));
    step = 0;
  }

  double current_lr() const {
    double s = static_cast<double>(step);
    if (options.warmup_steps > 0 && step < options.warmup_steps)
      return options.lr * (s + 1) / static_cast<double>(options.warmup_steps);
    if (options.schedule == "cosine" && options.total_steps > options.warmup_steps) {
      double progress = (s - static_cast<double>(options.warmup_steps)) /
                        static_cast<double>(options.total_steps - options.warmup_steps);
      progress = std::min(1.0, std::max(0.0, progress));
      double floor = options.lr * options.min_lr_ratio;
      return floor + 0.5 * (options.lr - floor) * (1 + std::cos(M_PI * progress));
    }
    return options.lr;
  }

  // Packs prompt+response into right-padded inputs/targets; mask marks response targets.
  Status pack(const std::vector<TrainSample>& batch, bool with_behaviour, torch::Tensor* inputs,
              torch::Tensor* targets, torch::Tensor* mask, torch::Tensor* behaviour) const {
    int64_t n = static_cast<int64_t>(batch.size());
    if (n == 0) return invalid_argument("train: empty batch");
    int64_t len = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      const auto& s = batch[i];
      if (s.prompt_ids.empty() || s.response_ids.empty())
        return invalid_argument("train: sample " + std::to_string(i) + " has an empty prompt or response");
      if (with_behaviour && s.behaviour_logprobs.size() != s.response_ids.size())
        return invalid_argument("train: sample " + std::to_string(i) +
                                " has a behaviour logprob count that differs from its response");
      for (int32_t id : s.prompt_ids)
        if (id < 0 || id >= model->config().vocab_size) return invalid_argument("train: sample " + std::to_string(i) + " has a token outside the vocabulary");
      for (int32_t id : s.response_ids)
        if (id < 0 || id >= model->config().vocab_size) return invalid_argument("train: sample " + std::to_string(i) + " has a token outside the vocabulary");
      len = std::max<int64_t>(len, static_cast<int64_t>(s.prompt_ids.size() + s.response_ids.size()) - 1);
    }
    if (len + 1 > model->config().max_seq_len)
      return invalid_argument("train: a sequence of " + std::to_string(len + 1) +
                              " tokens exceeds max_seq_len " + std::to_string(model->config().max_seq_len));
    *inputs = torch::zeros({n, len}, torch::kInt64);
    *targets = torch::zeros({n, len}, torch::kInt64);
    *mask = torch::zeros({n, len}, torch::kFloat32);
    *behaviour = torch::zeros({n, len}, torch::kFloat32);
    auto in_a = inputs->accessor<int64_t, 2>();
    auto tg_a = targets->accessor<int64_t, 2>();
    auto m_a = mask->accessor<float, 2>();
    auto b_a = behaviour->accessor<float, 2>();
    for (int64_t i = 0; i < n; ++i) {
      const auto& s = batch[static_cast<size_t>(i)];
      std::vector<int32_t> seq(s.prompt_ids);
      seq.insert(seq.end(), s.response_ids.begin(), s.response_ids.end());
      int64_t p = static_cast<int64_t>(s.prompt_ids.size());
      for (int64_t t = 0; t + 1 < static_cast<int64_t>(seq.size()); ++t) {
        in_a[i][t] = seq[static_cast<size_t>(t)];
        tg_a[i][t] = seq[static_cast<size_t>(t + 1)];
        if (t + 1 >= p) {
          m_a[i][t] = 1.0f;
          if (with_behaviour) b_a[i][t] = s.behaviour_logprobs[static_cast<size_t>(t + 1 - p)];
        }
      }
    }
    return ok_status();
  }

  torch::Tensor token_logprobs(LlamaForCausalLM& m, const torch::Tensor& inputs,
                               const torch::Tensor& targets, torch::Tensor* entropy,
                               double temperature = 1.0) {
    int64_t n = inputs.size(0), len = inputs.size(1);
    auto positions = torch::arange(len, torch::kInt64).unsqueeze(0).expand({n, len});
    auto logits = m->forward(inputs, positions, causal_bias(1, len, torch::Tensor()));
    if (temperature != 1.0) logits = logits / temperature;
    auto logp_all = torch::log_softmax(logits, -1);
    if (entropy) *entropy = -(logp_all.exp() * logp_all).sum(-1).detach();
    return logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  }

  StepStats apply(const torch::Tensor& loss, StepStats stats) {
    stats.lr = current_lr();
    stats.loss = loss.item<double>();
    if (!std::isfinite(stats.loss)) {
      stats.skipped = true;
      optimizer->zero_grad();
      return stats;
    }
    optimizer->zero_grad();
    loss.backward();
    stats.grad_norm = torch::nn::utils::clip_grad_norm_(model->parameters(), options.max_grad_norm);
    if (!std::isfinite(stats.grad_norm)) {
      stats.skipped = true;
      optimizer->zero_grad();
      return stats;
    }
    for (auto& group : optimizer->param_groups())
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(stats.lr);
    optimizer->step();
    ++step;
    return stats;
  }

  LlamaForCausalLM model;
  LlamaForCausalLM reference;
  OptimizerOptions options;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  int64_t step = 0;
};

Trainer::Trainer() = default;
Trainer::~Trainer() = default;

StatusOr<std::unique_ptr<Trainer>> Trainer::create(const ModelConfig& config,
                                                   const OptimizerOptions& options, uint64_t seed) {
  if (config.dim % config.n_heads != 0 || config.n_heads % config.n_kv_heads != 0 ||
      (config.dim / config.n_heads) % 2 != 0)
    return invalid_argument("model: dim must split into an even head_dim and n_heads into n_kv_heads");
  torch::manual_seed(seed);
  std::unique_ptr<Trainer> t(new Trainer());
  t->impl_ = std::make_unique<Impl>(config, options);
  t->freeze_reference();
  return t;
}

StatusOr<StepStats> Trainer::sft_step(const std::vector<TrainSample>& batch) {
  torch::Tensor inputs, targets, mask, behaviour;
  GRPO_RETURN_IF_ERROR(impl_->pack(batch, false, &inputs, &targets, &mask, &behaviour));
  try {
    impl_->model->train();
    auto logp = impl_->token_logprobs(impl_->model, inputs, targets, nullptr);
    auto tokens = mask.sum();
    auto loss = -(logp * mask).sum() / tokens.clamp_min(1);
    StepStats stats;
    stats.tokens = tokens.item<int64_t>();
    return impl_->apply(loss, stats);
  } catch (const c10::Error& e) {
    return internal_error(std::string("sft_step: ") + e.what_without_backtrace());
  }
}

StatusOr<StepStats> Trainer::grpo_step(const std::vector<TrainSample>& batch,
                                       const GrpoOptions& options) {
  if (!(options.temperature > 0)) return invalid_argument("grpo_step: temperature must be > 0");
  GRPO_RETURN_IF_ERROR(validate_objective(options));
  torch::Tensor inputs, targets, mask, behaviour;
  GRPO_RETURN_IF_ERROR(impl_->pack(batch, true, &inputs, &targets, &mask, &behaviour));
  try {
    impl_->model->train();
    std::vector<float> adv;
    for (const auto& s : batch) adv.push_back(s.advantage);
    auto advantages = torch::tensor(adv).unsqueeze(1);
    torch::Tensor ref_logp;
    if (options.kl_coef > 0) {  // beta = 0 never runs the reference model
      torch::NoGradGuard no_grad;
      ref_logp = impl_->token_logprobs(impl_->reference, inputs, targets, nullptr, options.temperature);
    }
    torch::Tensor entropy;
    auto logp = impl_->token_logprobs(impl_->model, inputs, targets, &entropy, options.temperature);
    ObjectiveResult obj = grpo_objective(logp, behaviour, ref_logp, mask, advantages.view({-1}), options);
    auto loss = obj.loss;

    StepStats stats;
    stats.tokens = obj.tokens;
    double denom = std::max<double>(1.0, static_cast<double>(stats.tokens));
    stats.kl = obj.kl;
    stats.entropy = ((entropy * mask).sum().item<double>()) / denom;
    stats.ratio_mean = obj.ratio_mean;
    stats.ratio_max = obj.ratio_max;
    stats.clip_fraction = obj.clip_fraction;
    stats.weight_mean = obj.weight_mean;
    stats.weight_max = obj.weight_max;
    stats.weight_capped_fraction = obj.weight_capped_fraction;
    return impl_->apply(loss, stats);
  } catch (const c10::Error& e) {
    return internal_error(std::string("grpo_step: ") + e.what_without_backtrace());
  }
}

void Trainer::reset_optimizer(const OptimizerOptions& options) {
  impl_->options = options;
  impl_->make_optimizer();
}

void Trainer::freeze_reference() {
  torch::NoGradGuard no_grad;
  auto src = impl_->model->named_parameters();
  auto dst = impl_->reference->named_parameters();
  for (auto& p : dst) p.value().copy_(src[p.key()]);
}

WeightBlob Trainer::export_weights() const { return impl_->model->export_weights(); }
Status Trainer::import_weights(const WeightBlob& blob) { return impl_->model->import_weights(blob); }
const ModelConfig& Trainer::config() const { return impl_->model->config(); }
int64_t Trainer::optimizer_step() const { return impl_->step; }

Status Trainer::save(const std::string& dir) const {
  try {
    torch::save(impl_->model, dir + "/model.pt");
    torch::save(impl_->reference, dir + "/reference.pt");
    torch::save(*impl_->optimizer, dir + "/optimizer.pt");
    torch::serialize::OutputArchive meta;
    meta.write("step", torch::tensor(impl_->step, torch::kInt64));
    meta.save_to(dir + "/trainer.pt");
  } catch (const c10::Error& e) {
    return internal_error("checkpoint save to " + dir + ": " + e.what_without_backtrace());
  }
  return ok_status();
}

Status Trainer::load(const std::string& dir) {
  try {
    torch::load(impl_->model, dir + "/model.pt");
    torch::load(impl_->reference, dir + "/reference.pt");
    impl_->make_optimizer();
    torch::load(*impl_->optimizer, dir + "/optimizer.pt");
    torch::serialize::InputArchive meta;
    meta.load_from(dir + "/trainer.pt");
    torch::Tensor step;
    meta.read("step", step);
    impl_->step = step.item<int64_t>();
  } catch (const c10::Error& e) {
    return data_loss("checkpoint " + dir + " cannot be read: " + e.what_without_backtrace());
  }
  return ok_status();
}

}  // namespace grpo::runtime
