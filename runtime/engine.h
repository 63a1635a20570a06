// The batched KV-cache decoding loop behind Policy::generate (internal to runtime/).
#pragma once

#include <vector>

#include "base/status.h"
#include "runtime/model.h"
#include "runtime/policy.h"

namespace grpo::runtime {

StatusOr<std::vector<std::vector<GeneratedSample>>> generate_batch(
    LlamaForCausalLM& model, const std::vector<GenerationRequest>& requests,
    const SamplingOptions& options, uint64_t seed);

// Samples one token per row of logits [B,V]; writes the token ids and their logprobs under the
// sampling distribution.
void sample_tokens(const torch::Tensor& logits, const SamplingOptions& options,
                   at::Generator& gen, torch::Tensor* tokens, torch::Tensor* logprobs);

}  // namespace grpo::runtime
