#include "runtime/bench_generate.h"

#include <algorithm>
#include <chrono>

#include "runtime/engine.h"
#include "runtime/model.h"
#include "runtime/policy.h"

namespace grpo::runtime {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

ModelConfig stories_shape() {
  ModelConfig c;
  c.vocab_size = 512;
  c.dim = 64;
  c.n_layers = 5;
  c.n_heads = 8;
  c.n_kv_heads = 4;
  c.ffn_hidden = 172;
  c.max_seq_len = 512;
  c.tie_embeddings = true;
  return c;
}

// The baseline: every step runs the model over the whole sequence so far.
double run_baseline(LlamaForCausalLM& model, int32_t batch, const GenerateBenchOptions& o) {
  torch::NoGradGuard ng;
  torch::manual_seed(1234);
  const auto opts = torch::TensorOptions().dtype(torch::kInt64).device(model->model->embed_tokens->weight.device());
  auto t0 = std::chrono::steady_clock::now();
  auto seq = torch::full({batch, 1}, static_cast<int64_t>(o.bos_id), opts);
  for (int32_t i = 0; i < o.new_tokens; ++i) {
    const int64_t len = seq.size(1);
    auto pos = torch::arange(len, opts).unsqueeze(0).expand({batch, len});
    auto logits = model->forward(seq, pos, torch::Tensor()).select(1, len - 1);
    auto probs = torch::softmax(logits / o.temperature, -1);
    auto next = torch::multinomial(probs, 1, false);
    seq = torch::cat({seq, next}, 1);
  }
  (void)seq.to(torch::kCPU);  // wait for the device
  return seconds_since(t0);
}

double run_engine(LlamaForCausalLM& model, int32_t batch, const GenerateBenchOptions& o) {
  EngineOptions eo;
  eo.max_batch = batch;
  Engine engine(model, eo);
  SamplingOptions s;
  s.temperature = o.temperature;
  s.max_new_tokens = o.new_tokens;
  s.eos_id = -1;
  auto t0 = std::chrono::steady_clock::now();
  for (int32_t i = 0; i < batch; ++i) {
    Status st = engine.submit(static_cast<uint64_t>(i), {{o.bos_id}, 1}, s, static_cast<uint64_t>(i));
    if (!st.ok()) return -1;
  }
  while (!engine.idle())
    if (!engine.step().ok()) return -1;
  return seconds_since(t0);
}

}  // namespace

StatusOr<std::vector<GenerateBenchRow>> bench_generate(const GenerateBenchOptions& o) {
  if (o.new_tokens < 1 || o.repeats < 1) return invalid_argument("bench: new_tokens and repeats must be positive");
  for (int32_t b : o.batches)
    if (b < 1 || b > 4096) return invalid_argument("bench: batch sizes must be in [1, 4096]");
  try {
    LlamaForCausalLM model(nullptr);
    if (o.model_dir.empty()) {
      torch::manual_seed(0);
      model = LlamaForCausalLM(stories_shape());
      model->eval();
    } else {
      GRPO_ASSIGN_OR_RETURN(model, load_hf_model(o.model_dir));
    }
    {
      Status st = check_device(o.device);
      if (!st.ok()) return invalid_argument("bench: " + st.message());
      model->to(torch::Device(o.device));
    }
    if (o.bos_id < 0 || o.bos_id >= model->config().vocab_size) return invalid_argument("bench: bos id outside the vocabulary");
    if (1 + o.new_tokens > model->config().max_seq_len)
      return invalid_argument("bench: new_tokens exceeds the model's max_seq_len");
    std::vector<GenerateBenchRow> rows;
    run_engine(model, 2, o);  // warm-up (allocator, thread pools)
    for (int32_t b : o.batches) {
      double best_engine = 1e30, best_base = 1e30;
      for (int32_t r = 0; r < o.repeats; ++r) {
        double e = run_engine(model, b, o);
        if (e < 0) return internal_error("bench: the engine failed");
        best_engine = std::min(best_engine, e);
        if (o.baseline) best_base = std::min(best_base, run_baseline(model, b, o));
      }
      GenerateBenchRow row;
      row.batch = b;
      row.tokens = static_cast<int64_t>(b) * o.new_tokens;
      row.engine_tokens_per_s = static_cast<double>(row.tokens) / best_engine;
      row.baseline_tokens_per_s = o.baseline ? static_cast<double>(row.tokens) / best_base : 0.0;
      rows.push_back(row);
    }
    return rows;
  } catch (const c10::Error& e) {
    return internal_error(std::string("bench: ") + e.what_without_backtrace());
  }
}

}  // namespace grpo::runtime
