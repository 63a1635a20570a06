// Policy: a language model that samples completions, behind a LibTorch-free interface.
//
// Generation is batched with a preallocated KV cache: prompts are left-padded and prefilled once per
// distinct prompt, the cache is then shared by that prompt's samples, and every decode step feeds one
// token per sequence. Each sampled token comes with its logprob under the sampling distribution
// (temperature, top-k, top-p applied), which the learner needs as the behaviour logprob.
// A Policy is used by one thread at a time (its owner, e.g. one generator actor).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "base/status.h"
#include "runtime/model_config.h"
#include "runtime/weights.h"

namespace grpo::runtime {

struct SamplingOptions {
  double temperature = 1.0;  // 0 = greedy
  double top_p = 1.0;
  int32_t top_k = 0;  // 0 = off
  int32_t max_new_tokens = 64;
  int32_t eos_id = 2;
  int32_t pad_id = 0;
};

struct GenerationRequest {
  std::vector<int32_t> prompt_ids;
  int32_t num_samples = 1;
};

struct GeneratedSample {
  std::vector<int32_t> ids;     // response ids, the EOS included when finished
  std::vector<float> logprobs;  // one per id
  bool finished = false;
};

class Policy {
 public:
  // A randomly initialised model (init_seed fixes the weights).
  static std::unique_ptr<Policy> create(const ModelConfig& config, uint64_t init_seed);
  ~Policy();

  // One vector of samples per request, in request order. Deterministic for a given seed.
  StatusOr<std::vector<std::vector<GeneratedSample>>> generate(
      const std::vector<GenerationRequest>& requests, const SamplingOptions& options,
      uint64_t seed);

  Status load_weights(const WeightBlob& blob);
  WeightBlob export_weights() const;
  const ModelConfig& config() const;

 private:
  Policy();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Sets LibTorch's intra-op thread count for the process; returns the count now in effect.
int set_compute_threads(int threads);

}  // namespace grpo::runtime
