#include "runtime/policy.h"

#include <dlfcn.h>

#include "runtime/engine.h"
#include "runtime/model.h"
#include "runtime/task.h"

namespace grpo::runtime {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kLength: return "length";
    case FinishReason::kEos: return "eos";
    case FinishReason::kStop: return "stop";
  }
  return "?";
}

struct Policy::Impl {
  explicit Impl(LlamaForCausalLM m) : model(std::move(m)), engine(model, EngineOptions()) {}
  LlamaForCausalLM model;
  Engine engine;
  EngineOptions options;
  std::function<std::string(const std::vector<int32_t>&)> decoder;
};

Policy::Policy() = default;
Policy::~Policy() = default;

std::unique_ptr<Policy> Policy::create(const ModelConfig& config, uint64_t init_seed) {
  torch::manual_seed(init_seed);
  std::unique_ptr<Policy> p(new Policy());
  LlamaForCausalLM model(config);
  model->eval();
  p->impl_ = std::make_unique<Impl>(model);
  return p;
}

StatusOr<std::unique_ptr<Policy>> Policy::load(const std::string& dir) {
  GRPO_ASSIGN_OR_RETURN(LlamaForCausalLM model, load_hf_model(dir));
  std::unique_ptr<Policy> p(new Policy());
  p->impl_ = std::make_unique<Impl>(model);
  return p;
}

StatusOr<std::vector<std::vector<GeneratedSample>>> Policy::generate(
    const std::vector<GenerationRequest>& requests, const SamplingOptions& options, uint64_t seed) {
  std::vector<std::vector<GeneratedSample>> out(requests.size());
  if (requests.empty()) return out;
  int64_t total = 0;
  for (const auto& r : requests) total += std::max(r.num_samples, 1);
  // A batch call decodes everything together on its own engine (and cache), leaving the
  // streaming engine's state alone.
  EngineOptions eo;
  eo.max_batch = static_cast<int32_t>(total);
  Engine engine(impl_->model, eo);
  engine.set_version(impl_->engine.version());
  engine.set_decoder(impl_->decoder);
  try {
    for (size_t i = 0; i < requests.size(); ++i) {
      const uint64_t s = requests[i].seed ? *requests[i].seed : mix64(seed + 0x632be59bd9b4e019ull * (i + 1));
      GRPO_RETURN_IF_ERROR(engine.submit(i, requests[i], options, s));
    }
    while (!engine.idle()) {
      GRPO_ASSIGN_OR_RETURN(auto done, engine.step());
      for (auto& f : done) out[f.id] = std::move(f.samples);
    }
  } catch (const c10::Error& e) {
    return internal_error(std::string("generate: ") + e.what_without_backtrace());
  }
  return out;
}

Status Policy::submit(uint64_t id, const GenerationRequest& request, const SamplingOptions& options) {
  const uint64_t s = request.seed ? *request.seed : mix64(id ^ 0x2545f4914f6cdd1dull);
  return impl_->engine.submit(id, request, options, s);
}

StatusOr<std::vector<FinishedRequest>> Policy::step() {
  try {
    return impl_->engine.step();
  } catch (const c10::Error& e) {
    return internal_error(std::string("generate: ") + e.what_without_backtrace());
  }
}

bool Policy::idle() const { return impl_->engine.idle(); }
int32_t Policy::running() const { return impl_->engine.running(); }
int32_t Policy::queued() const { return impl_->engine.queued(); }
void Policy::set_engine_options(const EngineOptions& options) {
  if (!impl_->engine.idle()) return;
  impl_->options = options;
  impl_->engine.set_options(options);
}

void Policy::set_decoder(std::function<std::string(const std::vector<int32_t>&)> decoder) {
  impl_->decoder = decoder;
  impl_->engine.set_decoder(std::move(decoder));
}

Status Policy::load_weights(const WeightBlob& blob) {
  GRPO_RETURN_IF_ERROR(impl_->model->import_weights(blob));
  impl_->engine.set_version(blob.version);
  return ok_status();
}

WeightBlob Policy::export_weights() const {
  WeightBlob b = impl_->model->export_weights();
  b.version = impl_->engine.version();
  return b;
}
const ModelConfig& Policy::config() const { return impl_->model->config(); }
uint64_t Policy::version() const { return impl_->engine.version(); }

Status Policy::save(const std::string& dir, const std::string& dtype) const {
  try {
    return impl_->model->save_hf_checkpoint(dir, dtype);
  } catch (const c10::Error& e) {
    return internal_error(std::string("save: ") + e.what_without_backtrace());
  }
}

bool set_blas_threads(int threads) {
  using SetThreads = void (*)(int);
  auto fn = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (fn == nullptr || threads < 1) return false;
  fn(threads);
  return true;
}

namespace {

StatusOr<torch::Device> parse_device(const std::string& name) {
  if (name == "cpu") return torch::Device(torch::kCPU);
  int index = 0;
  if (name == "cuda") {
    index = 0;
  } else if (name.rfind("cuda:", 0) == 0 && name.size() > 5 && name.size() < 9 &&
             name.find_first_not_of("0123456789", 5) == std::string::npos) {
    index = std::stoi(name.substr(5));
  } else {
    return invalid_argument("device '" + name + "': expected cpu, cuda or cuda:N");
  }
  if (!torch::cuda::is_available())
    return invalid_argument("device '" + name + "': no CUDA device is available to this LibTorch build");
  if (index >= static_cast<int>(torch::cuda::device_count()))
    return invalid_argument("device '" + name + "': only " + std::to_string(torch::cuda::device_count()) +
                            " CUDA device(s)");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

}  // namespace

Status check_device(const std::string& device) { return parse_device(device).status(); }

Status Policy::to_device(const std::string& device) {
  GRPO_ASSIGN_OR_RETURN(torch::Device d, parse_device(device));
  if (!impl_->engine.idle()) return failed_precondition("to_device: requests are running");
  try {
    impl_->model->to(d);
  } catch (const c10::Error& e) {
    return internal_error("to_device: " + std::string(e.what_without_backtrace()));
  }
  const uint64_t version = impl_->engine.version();
  impl_->engine = Engine(impl_->model, impl_->options);
  impl_->engine.set_version(version);
  impl_->engine.set_decoder(impl_->decoder);
  return ok_status();
}

std::string Policy::device() const { return impl_->model->model->embed_tokens->weight.device().str(); }

int set_compute_threads(int threads) {
  if (threads > 0) torch::set_num_threads(threads);
  return torch::get_num_threads();
}

}  // namespace grpo::runtime
