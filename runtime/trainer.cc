#include "runtime/trainer.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <cstring>
#include <map>

#include "runtime/fused_logprobs.h"
#include "runtime/model.h"
#include "runtime/objectives.h"
#include "runtime/safetensors.h"

namespace grpo::runtime {

namespace {

torch::Tensor bytes_tensor(const void* data, const std::vector<int64_t>& shape, torch::Dtype dt) {
  auto t = torch::empty(shape, torch::TensorOptions().dtype(dt));
  std::memcpy(t.data_ptr(), data, t.nbytes());
  return t;
}

// Sums of the per-token metrics over a step's micro-batches (and, with a reducer, replicas).
enum StatSlot { kLoss, kTokens, kKl, kEntropy, kRatio, kClip, kWeight, kCapped, kNumSlots };

}  // namespace

BatchTotals batch_totals(const std::vector<TrainSample>& batch) {
  BatchTotals t;
  t.sequences = static_cast<int64_t>(batch.size());
  for (const auto& s : batch) {
    const int64_t r = static_cast<int64_t>(s.response_ids.size());
    t.tokens += r;
    t.max_response = std::max(t.max_response, r);
  }
  return t;
}

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

  // An empty batch is allowed only as a data-parallel shard (whole-batch totals given).
  Status validate(const std::vector<TrainSample>& batch, bool with_behaviour, const BatchTotals* totals) const {
    if (batch.empty() && totals == nullptr) return invalid_argument("train: empty batch");
    const int64_t vocab = model->config().vocab_size;
    for (size_t i = 0; i < batch.size(); ++i) {
      const auto& s = batch[i];
      if (s.prompt_ids.empty() || s.response_ids.empty())
        return invalid_argument("train: sample " + std::to_string(i) + " has an empty prompt or response");
      if (with_behaviour && s.behaviour_logprobs.size() != s.response_ids.size())
        return invalid_argument("train: sample " + std::to_string(i) +
                                " has a behaviour logprob count that differs from its response");
      for (const auto* ids : {&s.prompt_ids, &s.response_ids})
        for (int32_t id : *ids)
          if (id < 0 || id >= vocab)
            return invalid_argument("train: sample " + std::to_string(i) + " has token " +
                                    std::to_string(id) + " outside the vocabulary [0, " +
                                    std::to_string(vocab) + ")");
      const int64_t len = static_cast<int64_t>(s.prompt_ids.size() + s.response_ids.size());
      if (len > model->config().max_seq_len)
        return invalid_argument("train: sample " + std::to_string(i) + " has " + std::to_string(len) +
                                " tokens, more than max_seq_len " +
                                std::to_string(model->config().max_seq_len));
    }
    return ok_status();
  }

  // Micro-batches of sample indices: longest first, each holding at most micro_batch_tokens padded
  // tokens (but at least one sequence). Deterministic in the batch.
  std::vector<std::vector<size_t>> plan(const std::vector<TrainSample>& batch) const {
    std::vector<size_t> order(batch.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    auto len = [&](size_t i) {
      return static_cast<int64_t>(batch[i].prompt_ids.size() + batch[i].response_ids.size()) - 1;
    };
    if (order.empty()) return {};
    if (options.micro_batch_tokens <= 0) return {order};
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return len(a) > len(b); });
    std::vector<std::vector<size_t>> out;
    int64_t width = 0;
    for (size_t i : order) {
      if (!out.empty()) {
        const int64_t count = static_cast<int64_t>(out.back().size()) + 1;
        if (count * width <= options.micro_batch_tokens) {
          out.back().push_back(i);
          continue;
        }
      }
      out.push_back({i});
      width = len(i);
    }
    return out;
  }

  // Packs samples `idx` into right-padded inputs/targets; mask marks response targets.
  void pack(const std::vector<TrainSample>& batch, const std::vector<size_t>& idx, bool with_behaviour,
            torch::Tensor* inputs, torch::Tensor* targets, torch::Tensor* mask, torch::Tensor* behaviour,
            torch::Tensor* advantages) const {
    const int64_t n = static_cast<int64_t>(idx.size());
    int64_t len = 0;
    for (size_t i : idx)
      len = std::max<int64_t>(len, static_cast<int64_t>(batch[i].prompt_ids.size() + batch[i].response_ids.size()) - 1);
    *inputs = torch::zeros({n, len}, torch::kInt64);
    *targets = torch::zeros({n, len}, torch::kInt64);
    *mask = torch::zeros({n, len}, torch::kFloat32);
    *behaviour = torch::zeros({n, len}, torch::kFloat32);
    *advantages = torch::zeros({n}, torch::kFloat32);
    auto in_a = inputs->accessor<int64_t, 2>();
    auto tg_a = targets->accessor<int64_t, 2>();
    auto m_a = mask->accessor<float, 2>();
    auto b_a = behaviour->accessor<float, 2>();
    auto adv_a = advantages->accessor<float, 1>();
    for (int64_t r = 0; r < n; ++r) {
      const auto& s = batch[idx[static_cast<size_t>(r)]];
      const int64_t p = static_cast<int64_t>(s.prompt_ids.size());
      const int64_t total = p + static_cast<int64_t>(s.response_ids.size());
      auto token = [&](int64_t t) {
        return t < p ? s.prompt_ids[static_cast<size_t>(t)] : s.response_ids[static_cast<size_t>(t - p)];
      };
      adv_a[r] = s.advantage;
      for (int64_t t = 0; t + 1 < total; ++t) {
        in_a[r][t] = token(t);
        tg_a[r][t] = token(t + 1);
        if (t + 1 >= p) {
          m_a[r][t] = 1.0f;
          if (with_behaviour) b_a[r][t] = s.behaviour_logprobs[static_cast<size_t>(t + 1 - p)];
        }
      }
    }
  }

  // Per-token logprobs [B, T] of the targets (zero where mask is 0) from the fused lm_head + log-
  // softmax + gather, evaluated at the masked positions only; entropy (optional) likewise.
  torch::Tensor token_logprobs(LlamaForCausalLM& m, const torch::Tensor& inputs,
                               const torch::Tensor& targets, const torch::Tensor& mask,
                               torch::Tensor* entropy, double temperature = 1.0) {
    const int64_t n = inputs.size(0), len = inputs.size(1);
    auto positions = torch::arange(len, torch::kInt64).unsqueeze(0).expand({n, len});
    auto hidden = m->hidden(inputs, positions, AttentionCall{});
    const torch::Tensor& head = m->lm_head ? m->lm_head->weight : m->model->embed_tokens->weight;
    auto where = mask.view({-1}).nonzero().view({-1});
    auto h = hidden.reshape({n * len, -1}).index_select(0, where);
    auto t = targets.view({-1}).index_select(0, where);
    auto zeros = torch::zeros({n * len}, torch::kFloat32);
    if (entropy != nullptr) {
      auto out = fused_token_logprobs_entropy(h, head, t, temperature);
      *entropy = zeros.scatter(0, where, out.entropy).view({n, len});
      return zeros.scatter(0, where, out.logprobs).view({n, len});
    }
    return zeros.scatter(0, where, fused_token_logprobs(h, head, t, temperature)).view({n, len});
  }

  // Flattens every parameter's gradient (plus the stats) into one buffer for the reducer, and back.
  Status reduce(std::vector<double>* sums) {
    if (!reducer) return ok_status();
    auto params = model->parameters();
    int64_t total = 0;
    for (const auto& p : params) total += p.numel();
    std::vector<float> flat(static_cast<size_t>(total) + sums->size());
    int64_t off = 0;
    for (auto& p : params) {
      auto view = torch::from_blob(flat.data() + off, p.sizes(), torch::kFloat32);
      if (p.grad().defined()) view.copy_(p.grad());
      else view.zero_();
      off += p.numel();
    }
    for (size_t i = 0; i < sums->size(); ++i) flat[static_cast<size_t>(total) + i] = static_cast<float>((*sums)[i]);
    GRPO_RETURN_IF_ERROR(reducer(flat.data(), flat.size()));
    off = 0;
    torch::NoGradGuard no_grad;
    for (auto& p : params) {
      auto view = torch::from_blob(flat.data() + off, p.sizes(), torch::kFloat32);
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      p.mutable_grad().copy_(view);
      off += p.numel();
    }
    for (size_t i = 0; i < sums->size(); ++i) (*sums)[i] = flat[static_cast<size_t>(total) + i];
    return ok_status();
  }

  // After the micro-batches' backward passes: reduce, check, clip, step.
  Status finish(std::vector<double> sums, StepStats* stats) {
    GRPO_RETURN_IF_ERROR(reduce(&sums));
    const double tokens = std::max(1.0, sums[kTokens]);
    stats->loss = sums[kLoss];
    stats->tokens = static_cast<int64_t>(std::llround(sums[kTokens]));
    stats->kl = sums[kKl] / tokens;
    stats->entropy = sums[kEntropy] / tokens;
    stats->ratio_mean = sums[kRatio] / tokens;
    stats->clip_fraction = sums[kClip] / tokens;
    stats->weight_mean = sums[kWeight] / tokens;
    stats->weight_capped_fraction = sums[kCapped] / tokens;
    stats->lr = current_lr();
    if (!std::isfinite(stats->loss)) {
      stats->skipped = true;
      optimizer->zero_grad();
      return ok_status();
    }
    stats->grad_norm = torch::nn::utils::clip_grad_norm_(model->parameters(), options.max_grad_norm);
    if (!std::isfinite(stats->grad_norm)) {
      stats->skipped = true;
      optimizer->zero_grad();
      return ok_status();
    }
    for (auto& group : optimizer->param_groups())
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(stats->lr);
    optimizer->step();
    optimizer->zero_grad();
    ++step;
    return ok_status();
  }

  LlamaForCausalLM model;
  LlamaForCausalLM reference;
  OptimizerOptions options;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  int64_t step = 0;
  GradientReducer reducer;
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

StatusOr<std::unique_ptr<Trainer>> Trainer::load_hf(const std::string& dir,
                                                    const OptimizerOptions& options) {
  GRPO_ASSIGN_OR_RETURN(ModelConfig cfg, load_hf_config(dir + "/config.json"));
  GRPO_ASSIGN_OR_RETURN(auto files, SafetensorsCheckpoint::open(dir));
  GRPO_ASSIGN_OR_RETURN(auto t, create(cfg, options, 0));
  try {
    GRPO_RETURN_IF_ERROR(t->impl_->model->load_safetensors(*files));
  } catch (const c10::Error& e) {
    return internal_error(dir + ": " + e.what_without_backtrace());
  }
  t->freeze_reference();
  return t;
}

Status Trainer::save_hf(const std::string& dir, const std::string& dtype) const {
  try {
    return impl_->model->save_hf_checkpoint(dir, dtype);
  } catch (const c10::Error& e) {
    return internal_error("save to " + dir + ": " + e.what_without_backtrace());
  }
}

StatusOr<StepStats> Trainer::sft_step(const std::vector<TrainSample>& batch,
                                      const BatchTotals* totals) {
  GRPO_RETURN_IF_ERROR(impl_->validate(batch, false, totals));
  const BatchTotals whole = totals != nullptr ? *totals : batch_totals(batch);
  try {
    impl_->model->train();
    impl_->optimizer->zero_grad();
    std::vector<double> sums(kNumSlots, 0.0);
    StepStats stats;
    for (const auto& idx : impl_->plan(batch)) {
      torch::Tensor inputs, targets, mask, behaviour, advantages;
      impl_->pack(batch, idx, false, &inputs, &targets, &mask, &behaviour, &advantages);
      auto logp = impl_->token_logprobs(impl_->model, inputs, targets, mask, nullptr);
      auto loss = -(logp * mask).sum() / std::max<double>(1.0, static_cast<double>(whole.tokens));
      loss.backward();
      sums[kLoss] += loss.item<double>();
      sums[kTokens] += mask.sum().item<double>();
      ++stats.micro_batches;
    }
    GRPO_RETURN_IF_ERROR(impl_->finish(std::move(sums), &stats));
    return stats;
  } catch (const c10::Error& e) {
    return internal_error(std::string("sft_step: ") + e.what_without_backtrace());
  }
}

StatusOr<StepStats> Trainer::grpo_step(const std::vector<TrainSample>& batch,
                                       const GrpoOptions& options, const BatchTotals* totals) {
  if (!(options.temperature > 0)) return invalid_argument("grpo_step: temperature must be > 0");
  GRPO_RETURN_IF_ERROR(validate_objective(options));
  GRPO_RETURN_IF_ERROR(impl_->validate(batch, true, totals));
  const BatchTotals whole = totals != nullptr ? *totals : batch_totals(batch);
  try {
    impl_->model->train();
    impl_->optimizer->zero_grad();
    std::vector<double> sums(kNumSlots, 0.0);
    StepStats stats;
    for (const auto& idx : impl_->plan(batch)) {
      torch::Tensor inputs, targets, mask, behaviour, advantages;
      impl_->pack(batch, idx, true, &inputs, &targets, &mask, &behaviour, &advantages);
      torch::Tensor ref_logp;
      if (options.kl_coef > 0) {  // beta = 0 never runs the reference model
        torch::NoGradGuard no_grad;
        ref_logp = impl_->token_logprobs(impl_->reference, inputs, targets, mask, nullptr,
                                         options.temperature);
      }
      torch::Tensor entropy;
      auto logp = impl_->token_logprobs(impl_->model, inputs, targets, mask, &entropy, options.temperature);
      ObjectiveResult obj = grpo_objective(logp, behaviour, ref_logp, mask, advantages, options, &whole);
      obj.loss.backward();
      const double tok = static_cast<double>(obj.tokens);
      sums[kLoss] += obj.loss.item<double>();
      sums[kTokens] += tok;
      sums[kKl] += obj.kl * tok;
      sums[kEntropy] += (entropy * mask).sum().item<double>();
      sums[kRatio] += obj.ratio_mean * tok;
      sums[kClip] += obj.clip_fraction * tok;
      sums[kWeight] += obj.weight_mean * tok;
      sums[kCapped] += obj.weight_capped_fraction * tok;
      stats.ratio_max = std::max(stats.ratio_max, obj.ratio_max);
      stats.weight_max = std::max(stats.weight_max, obj.weight_max);
      ++stats.micro_batches;
    }
    GRPO_RETURN_IF_ERROR(impl_->finish(std::move(sums), &stats));
    return stats;
  } catch (const c10::Error& e) {
    return internal_error(std::string("grpo_step: ") + e.what_without_backtrace());
  }
}

void Trainer::set_gradient_reducer(GradientReducer reducer) { impl_->reducer = std::move(reducer); }

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
    GRPO_RETURN_IF_ERROR(impl_->model->save_hf_checkpoint(dir, "float32"));
    std::vector<torch::Tensor> keep;
    std::vector<TensorToWrite> ref;
    for (const auto& p : impl_->reference->named_parameters()) {
      keep.push_back(p.value().detach().contiguous());
      ref.push_back(TensorToWrite{p.key(), "F32", keep.back().sizes().vec(), keep.back().data_ptr()});
    }
    GRPO_RETURN_IF_ERROR(write_safetensors(dir + "/reference.safetensors", ref));

    std::vector<TensorToWrite> state;
    std::vector<int64_t> steps;  // reserved up front: `state` points into it
    const auto named = impl_->model->named_parameters();
    steps.reserve(named.size());
    auto& opt_state = impl_->optimizer->state();
    for (const auto& p : named) {
      auto it = opt_state.find(c10::guts::to_string(p.value().unsafeGetTensorImpl()));
      if (it == opt_state.end()) continue;
      auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
      keep.push_back(st.exp_avg().contiguous());
      state.push_back(TensorToWrite{p.key() + ".exp_avg", "F32", keep.back().sizes().vec(), keep.back().data_ptr()});
      keep.push_back(st.exp_avg_sq().contiguous());
      state.push_back(TensorToWrite{p.key() + ".exp_avg_sq", "F32", keep.back().sizes().vec(), keep.back().data_ptr()});
      steps.push_back(st.step());
      state.push_back(TensorToWrite{p.key() + ".step", "I64", {1}, &steps.back()});
    }
    keep.push_back(at::detail::getDefaultCPUGenerator().get_state().contiguous());
    state.push_back(TensorToWrite{"rng.torch_cpu", "U8", {keep.back().numel()}, keep.back().data_ptr()});
    std::map<std::string, std::string> meta = {
        {"optimizer_step", std::to_string(impl_->step)},
        {"lr", std::to_string(impl_->options.lr)},
        {"schedule", impl_->options.schedule},
        {"warmup_steps", std::to_string(impl_->options.warmup_steps)},
        {"total_steps", std::to_string(impl_->options.total_steps)}};
    GRPO_RETURN_IF_ERROR(write_safetensors(dir + "/state.safetensors", state, meta));
  } catch (const c10::Error& e) {
    return internal_error("checkpoint save to " + dir + ": " + e.what_without_backtrace());
  }
  return ok_status();
}

Status Trainer::load(const std::string& dir) {
  try {
    GRPO_ASSIGN_OR_RETURN(auto model_files, SafetensorsCheckpoint::open(dir));
    GRPO_ASSIGN_OR_RETURN(auto ref_file, SafetensorsFile::open(dir + "/reference.safetensors"));
    GRPO_ASSIGN_OR_RETURN(auto state_file, SafetensorsFile::open(dir + "/state.safetensors"));
    // Check everything before changing anything, so a bad checkpoint leaves the trainer as it was.
    auto find = [](const SafetensorsFile& f, const std::string& name, const std::string& dtype,
                   const std::vector<int64_t>& shape) -> StatusOr<const SafetensorInfo*> {
      const SafetensorInfo* t = f.find(name);
      if (t == nullptr) return data_loss(f.path() + ": missing tensor " + name);
      if (t->dtype != dtype || (!shape.empty() && t->shape != shape))
        return data_loss(f.path() + ": tensor " + name + " has the wrong dtype or shape");
      return t;
    };
    const auto named = impl_->model->named_parameters();
    for (const auto& p : impl_->reference->named_parameters())
      GRPO_RETURN_IF_ERROR(find(*ref_file, p.key(), "F32", p.value().sizes().vec()).status());
    const auto& meta = state_file->metadata();
    auto step_it = meta.find("optimizer_step");
    if (step_it == meta.end()) return data_loss(state_file->path() + ": no optimizer_step in its metadata");
    GRPO_ASSIGN_OR_RETURN(const SafetensorInfo* rng, find(*state_file, "rng.torch_cpu", "U8", {}));
    GRPO_RETURN_IF_ERROR(impl_->model->load_safetensors(*model_files));

    torch::NoGradGuard no_grad;
    for (auto& p : impl_->reference->named_parameters()) {
      const SafetensorInfo* t = ref_file->find(p.key());
      p.value().copy_(bytes_tensor(ref_file->data(*t), t->shape, torch::kFloat32));
    }
    impl_->make_optimizer();
    auto& opt_state = impl_->optimizer->state();
    for (const auto& p : named) {
      const SafetensorInfo* m = state_file->find(p.key() + ".exp_avg");
      if (m == nullptr) continue;  // no update has touched this parameter yet
      GRPO_ASSIGN_OR_RETURN(m, find(*state_file, p.key() + ".exp_avg", "F32", p.value().sizes().vec()));
      GRPO_ASSIGN_OR_RETURN(const SafetensorInfo* v,
                            find(*state_file, p.key() + ".exp_avg_sq", "F32", p.value().sizes().vec()));
      GRPO_ASSIGN_OR_RETURN(const SafetensorInfo* n, find(*state_file, p.key() + ".step", "I64", {1}));
      auto st = std::make_unique<torch::optim::AdamWParamState>();
      st->exp_avg(bytes_tensor(state_file->data(*m), m->shape, torch::kFloat32));
      st->exp_avg_sq(bytes_tensor(state_file->data(*v), v->shape, torch::kFloat32));
      int64_t count = 0;
      std::memcpy(&count, state_file->data(*n), sizeof(count));
      st->step(count);
      opt_state[c10::guts::to_string(p.value().unsafeGetTensorImpl())] = std::move(st);
    }
    impl_->step = std::stoll(step_it->second);
    auto gen = at::detail::getDefaultCPUGenerator();
    gen.set_state(bytes_tensor(state_file->data(*rng), rng->shape, torch::kUInt8));
  } catch (const c10::Error& e) {
    return data_loss("checkpoint " + dir + " cannot be read: " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return data_loss("checkpoint " + dir + " cannot be read: " + e.what());
  }
  return ok_status();
}

void Trainer::set_deterministic(bool on) { at::globalContext().setDeterministicAlgorithms(on, false); }

}  // namespace grpo::runtime
