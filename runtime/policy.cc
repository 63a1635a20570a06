#include "runtime/policy.h"

#include "runtime/engine.h"
#include "runtime/model.h"

namespace grpo::runtime {

struct Policy::Impl {
  explicit Impl(const ModelConfig& cfg) : model(cfg) {}
  LlamaForCausalLM model;
};

Policy::Policy() = default;
Policy::~Policy() = default;

std::unique_ptr<Policy> Policy::create(const ModelConfig& config, uint64_t init_seed) {
  torch::manual_seed(init_seed);
  std::unique_ptr<Policy> p(new Policy());
  p->impl_ = std::make_unique<Impl>(config);
  p->impl_->model->eval();
  return p;
}

StatusOr<std::vector<std::vector<GeneratedSample>>> Policy::generate(
    const std::vector<GenerationRequest>& requests, const SamplingOptions& options, uint64_t seed) {
  try {
    return generate_batch(impl_->model, requests, options, seed);
  } catch (const c10::Error& e) {
    return internal_error(std::string("generate: ") + e.what_without_backtrace());
  }
}

Status Policy::load_weights(const WeightBlob& blob) { return impl_->model->import_weights(blob); }
WeightBlob Policy::export_weights() const { return impl_->model->export_weights(); }
const ModelConfig& Policy::config() const { return impl_->model->config(); }

int set_compute_threads(int threads) {
  if (threads > 0) torch::set_num_threads(threads);
  return torch::get_num_threads();
}

}  // namespace grpo::runtime
