// The continuous-batching decoder behind Policy (internal to runtime/; includes LibTorch).
//
// Slots are the rows of one preallocated KV cache [max_batch, kv_heads, capacity, head_dim] per
// layer. Running sequences always occupy rows [0, running): a finished sequence's row is refilled by
// moving the last running row into it, so every decode step works on a prefix view without
// gathering. A step (1) decodes one token for every running sequence (each writes its key/value at
// its own column and attends to columns up to it), (2) admits queued requests in order while slots
// and capacity allow — their prompts are prefilled together (right-padded, causal) into a scratch
// cache whose rows are copied to the request's num_samples slots — and (3) samples the next token of
// all rows at once. One thread at a time.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <vector>

#include "base/status.h"
#include "runtime/model.h"
#include "runtime/policy.h"

namespace grpo::runtime {

// The uniform number in [0,1) that drives sampling of token `index` of sample `sample` of a request
// with `seed`: counter-based, so independent of batch composition.
double sampling_uniform(uint64_t seed, int32_t sample, int64_t index);

// Samples one token per row of logits [B,V] with `options`, inverting the CDF at `uniforms` [B]
// (ignored for greedy). Writes token ids [B] (int64) and their logprobs under the sampling
// distribution [B] (f32).
void sample_tokens(const torch::Tensor& logits, const SamplingOptions& options,
                   const torch::Tensor& uniforms, torch::Tensor* tokens, torch::Tensor* logprobs);

class Engine {
 public:
  Engine(LlamaForCausalLM model, EngineOptions options);

  Status submit(uint64_t id, const GenerationRequest& request, const SamplingOptions& options,
                uint64_t seed);
  StatusOr<std::vector<FinishedRequest>> step();
  bool idle() const { return queue_.empty() && rows_.empty(); }
  int32_t running() const { return static_cast<int32_t>(rows_.size()); }
  int32_t queued() const { return static_cast<int32_t>(queue_.size()); }
  void set_version(uint64_t v) { version_ = v; }
  uint64_t version() const { return version_; }
  void set_options(const EngineOptions& options);
  void set_decoder(std::function<std::string(const std::vector<int32_t>&)> d) { decoder_ = std::move(d); }

 private:
  struct Request {
    uint64_t id = 0;
    std::vector<int32_t> prompt;
    SamplingOptions sampling;
    uint64_t seed = 0;
    std::vector<GeneratedSample> samples;
    int32_t unfinished = 0;
    size_t stop_window = 0;  // tokens to decode when checking stop strings
  };
  struct Row {
    uint64_t request = 0;
    int32_t sample = 0;
    int64_t length = 0;      // tokens in the cache (prompt + generated so far, the last fed)
    int64_t last_token = 0;  // sampled, not yet fed
  };

  Status ensure_capacity(int64_t need);
  void move_row(size_t from, size_t to);
  torch::Tensor decode_running(int64_t n);
  torch::Tensor admit();
  bool record(Row& row, int64_t token, float logprob);

  LlamaForCausalLM model_;
  EngineOptions options_;
  std::function<std::string(const std::vector<int32_t>&)> decoder_;
  KVCache cache_;
  std::deque<uint64_t> queue_;
  std::map<uint64_t, Request> requests_;
  std::vector<Row> rows_;
  uint64_t version_ = 0;
  // Decode on the fused CPU kernels; the cache then holds transposed key blocks.
  bool fast_ = false;
};

}  // namespace grpo::runtime
