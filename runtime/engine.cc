#include "runtime/engine.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

namespace grpo::runtime {

void sample_tokens(const torch::Tensor& logits, const SamplingOptions& options,
                   at::Generator& gen, torch::Tensor* tokens, torch::Tensor* logprobs) {
  auto lf = logits.to(torch::kFloat32);
  if (options.temperature <= 0.0) {
    auto logp = torch::log_softmax(lf, -1);
    *tokens = lf.argmax(-1);
    *logprobs = logp.gather(-1, tokens->unsqueeze(-1)).squeeze(-1);
    return;
  }
  auto scaled = lf / options.temperature;
  if (options.top_k > 0 && options.top_k < scaled.size(-1)) {
    auto kth = std::get<0>(scaled.topk(options.top_k, -1)).narrow(-1, options.top_k - 1, 1);
    scaled = scaled.masked_fill(scaled < kth, -std::numeric_limits<float>::infinity());
  }
  if (options.top_p < 1.0) {
    auto sorted = scaled.sort(-1, /*descending=*/true);
    auto sorted_logits = std::get<0>(sorted);
    auto sorted_idx = std::get<1>(sorted);
    auto probs = torch::softmax(sorted_logits, -1);
    auto cum = probs.cumsum(-1);
    // Drop a token when the mass before it already reaches top_p (the first token always stays).
    auto drop = (cum - probs) >= options.top_p;
    sorted_logits = sorted_logits.masked_fill(drop, -std::numeric_limits<float>::infinity());
    scaled = torch::full_like(scaled, -std::numeric_limits<float>::infinity())
                 .scatter(-1, sorted_idx, sorted_logits);
  }
  auto logp = torch::log_softmax(scaled, -1);
  auto probs = logp.exp();
  *tokens = torch::multinomial(probs, 1, /*replacement=*/false, gen).squeeze(-1);
  *logprobs = logp.gather(-1, tokens->unsqueeze(-1)).squeeze(-1);
}

StatusOr<std::vector<std::vector<GeneratedSample>>> generate_batch(
    LlamaForCausalLM& model, const std::vector<GenerationRequest>& requests,
    const SamplingOptions& options, uint64_t seed) {
  std::vector<std::vector<GeneratedSample>> out(requests.size());
  if (requests.empty()) return out;
  const ModelConfig& cfg = model->config();
  int64_t prompt_len = 0;
  int64_t total = 0;
  for (size_t r = 0; r < requests.size(); ++r) {
    const auto& req = requests[r];
    if (req.prompt_ids.empty()) return invalid_argument("generate: request " + std::to_string(r) + " has an empty prompt");
    if (req.num_samples < 1) return invalid_argument("generate: request " + std::to_string(r) + " asks for no samples");
    for (int32_t id : req.prompt_ids)
      if (id < 0 || id >= cfg.vocab_size)
        return invalid_argument("generate: request " + std::to_string(r) + " has token id " +
                                std::to_string(id) + " outside the vocabulary");
    prompt_len = std::max<int64_t>(prompt_len, static_cast<int64_t>(req.prompt_ids.size()));
    total += req.num_samples;
  }
  const int64_t max_new = options.max_new_tokens;
  if (prompt_len + max_new > cfg.max_seq_len)
    return invalid_argument("generate: prompt of " + std::to_string(prompt_len) + " tokens + " +
                            std::to_string(max_new) + " new tokens exceeds max_seq_len " +
                            std::to_string(cfg.max_seq_len));

  torch::NoGradGuard no_grad;
  const int64_t u = static_cast<int64_t>(requests.size());
  // Left-padded prompts.
  auto tokens = torch::full({u, prompt_len}, options.pad_id, torch::kInt64);
  auto valid = torch::zeros({u, prompt_len}, torch::kBool);
  std::vector<int64_t> expand;
  expand.reserve(static_cast<size_t>(total));
  for (int64_t r = 0; r < u; ++r) {
    const auto& ids = requests[static_cast<size_t>(r)].prompt_ids;
    int64_t padding = prompt_len - static_cast<int64_t>(ids.size());
    auto row = tokens[r];
    auto acc = row.accessor<int64_t, 1>();
    for (size_t i = 0; i < ids.size(); ++i) acc[padding + static_cast<int64_t>(i)] = ids[i];
    valid[r].narrow(0, padding, static_cast<int64_t>(ids.size())).fill_(true);
    for (int32_t s = 0; s < requests[static_cast<size_t>(r)].num_samples; ++s) expand.push_back(r);
  }
  auto positions = (valid.to(torch::kInt64).cumsum(1) - 1).clamp_min(0);
  const int64_t capacity = prompt_len + max_new;
  KVCache cache = model->make_cache(u, capacity);
  auto bias = causal_bias(u, prompt_len, valid);
  auto logits = model->forward(tokens, positions, bias, &cache, 0).select(1, prompt_len - 1);

  // Share each prompt's cache among its samples.
  auto idx = torch::tensor(expand, torch::kInt64);
  for (auto& k : cache.k) k = k.index_select(0, idx).contiguous();
  for (auto& v : cache.v) v = v.index_select(0, idx).contiguous();
  logits = logits.index_select(0, idx);
  auto key_valid = torch::ones({total, capacity}, torch::kBool);
  key_valid.narrow(1, 0, prompt_len).copy_(valid.index_select(0, idx));
  auto key_bias = torch::zeros({total, 1, 1, capacity}, torch::kFloat32)
                      .masked_fill(key_valid.logical_not().view({total, 1, 1, capacity}), -1e9);
  auto pos = positions.select(1, prompt_len - 1).index_select(0, idx);

  at::Generator gen = at::detail::createCPUGenerator(seed);
  std::vector<std::vector<int64_t>> gen_ids(static_cast<size_t>(total));
  std::vector<std::vector<float>> gen_lp(static_cast<size_t>(total));
  std::vector<bool> done(static_cast<size_t>(total), false);
  int64_t remaining = total;
  for (int64_t step = 0; step < max_new && remaining > 0; ++step) {
    torch::Tensor next, lp;
    sample_tokens(logits, options, gen, &next, &lp);
    auto next_acc = next.accessor<int64_t, 1>();
    auto lp_acc = lp.accessor<float, 1>();
    for (int64_t b = 0; b < total; ++b) {
      if (done[static_cast<size_t>(b)]) continue;
      gen_ids[static_cast<size_t>(b)].push_back(next_acc[b]);
      gen_lp[static_cast<size_t>(b)].push_back(lp_acc[b]);
      if (next_acc[b] == options.eos_id) {
        done[static_cast<size_t>(b)] = true;
        --remaining;
      }
    }
    if (remaining == 0 || step + 1 == max_new) break;
    pos = pos + 1;
    const int64_t start = prompt_len + step;
    auto step_bias = key_bias.narrow(3, 0, start + 1);
    logits = model->forward(next.unsqueeze(1), pos.unsqueeze(1), step_bias, &cache, start).select(1, 0);
  }

  size_t b = 0;
  for (size_t r = 0; r < requests.size(); ++r) {
    for (int32_t s = 0; s < requests[r].num_samples; ++s, ++b) {
      GeneratedSample sample;
      sample.ids.assign(gen_ids[b].begin(), gen_ids[b].end());
      sample.logprobs = std::move(gen_lp[b]);
      sample.finished = done[b];
      out[r].push_back(std::move(sample));
    }
  }
  return out;
}

}  // namespace grpo::runtime
