#include "runtime/engine.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

#include "kernels/cpu/decode_attention.h"
#include "runtime/task.h"

namespace grpo::runtime {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

std::string request_error(uint64_t id, const std::string& msg) {
  return "generate: request " + std::to_string(id) + ": " + msg;
}

bool same_sampler(const SamplingOptions& a, const SamplingOptions& b) {
  return std::tie(a.temperature, a.top_p, a.top_k, a.min_p) ==
         std::tie(b.temperature, b.top_p, b.top_k, b.min_p);
}

}  // namespace

double sampling_uniform(uint64_t seed, int32_t sample, int64_t index) {
  uint64_t x = mix64(seed ^ 0x9e3779b97f4a7c15ull);
  x = mix64(x ^ (static_cast<uint64_t>(static_cast<uint32_t>(sample)) * 0xbf58476d1ce4e5b9ull));
  x = mix64(x ^ static_cast<uint64_t>(index));
  return static_cast<double>(x >> 11) * (1.0 / 9007199254740992.0);  // 53 bits
}

void sample_tokens(const torch::Tensor& logits, const SamplingOptions& options,
                   const torch::Tensor& uniforms, torch::Tensor* tokens, torch::Tensor* logprobs) {
  auto lf = logits.to(torch::kFloat32);
  if (options.temperature <= 0.0) {
    *tokens = lf.argmax(-1);
    *logprobs = torch::log_softmax(lf, -1).gather(-1, tokens->unsqueeze(-1)).squeeze(-1);
    return;
  }
  const int64_t vocab = lf.size(-1);
  if (options.top_k == 0 && options.top_p >= 1.0 && lf.device().is_cpu()) {
    // Temperature and min-p only: one fused pass per row on CPU.
    auto l = lf.contiguous();
    auto u = uniforms.to(torch::kFloat32).contiguous();
    *tokens = torch::empty({l.size(0)}, torch::kInt64);
    *logprobs = torch::empty({l.size(0)}, torch::kFloat32);
    kernels::sample_rows(l.data_ptr<float>(), l.size(0), vocab, static_cast<float>(options.temperature),
                         static_cast<float>(options.min_p), u.data_ptr<float>(), tokens->data_ptr<int64_t>(),
                         logprobs->data_ptr<float>());
    return;
  }
  auto scaled = options.temperature == 1.0 ? lf : lf / options.temperature;
  if (options.top_k > 0 && options.top_k < vocab) {
    auto kth = std::get<0>(scaled.topk(options.top_k, -1)).narrow(-1, options.top_k - 1, 1);
    scaled = scaled.masked_fill(scaled < kth, kNegInf);
  }
  if (options.min_p > 0.0) {
    // p < min_p * p_max  <=>  logit < max_logit + log(min_p)
    auto max_logit = std::get<0>(scaled.max(-1, /*keepdim=*/true));
    scaled = scaled.masked_fill(scaled < max_logit + std::log(options.min_p), kNegInf);
  }
  if (options.top_p < 1.0) {
    auto sorted = scaled.sort(-1, /*descending=*/true);
    auto sorted_logits = std::get<0>(sorted);
    auto sorted_idx = std::get<1>(sorted);
    auto probs = torch::softmax(sorted_logits, -1);
    auto cum = probs.cumsum(-1);
    // Drop a token when the mass before it already reaches top_p (the first token always stays).
    auto drop = (cum - probs) >= options.top_p;
    sorted_logits = sorted_logits.masked_fill(drop, kNegInf);
    scaled = torch::full_like(scaled, kNegInf).scatter(-1, sorted_idx, sorted_logits);
  }
  auto logp = torch::log_softmax(scaled, -1);
  auto cum = logp.exp().cumsum(-1);
  auto target = uniforms.to(torch::kFloat32).unsqueeze(-1) * cum.narrow(-1, vocab - 1, 1);
  // The first token whose cumulative mass exceeds the target (tokens of zero mass never qualify).
  *tokens = (cum <= target).sum(-1).clamp_max(vocab - 1);
  *logprobs = logp.gather(-1, tokens->unsqueeze(-1)).squeeze(-1);
}

Engine::Engine(LlamaForCausalLM model, EngineOptions options)
    : model_(std::move(model)), options_(options), fast_(model_->fast_decode_available()) {}

void Engine::set_options(const EngineOptions& options) {
  if (!idle()) return;
  if (options.max_batch != options_.max_batch || options.max_context != options_.max_context)
    cache_ = KVCache();
  options_ = options;
}

Status Engine::submit(uint64_t id, const GenerationRequest& req, const SamplingOptions& o,
                      uint64_t seed) {
  const ModelConfig& cfg = model_->config();
  if (requests_.count(id)) return invalid_argument(request_error(id, "the id is already in use"));
  if (req.prompt_ids.empty()) return invalid_argument(request_error(id, "empty prompt"));
  for (int32_t t : req.prompt_ids)
    if (t < 0 || t >= cfg.vocab_size)
      return invalid_argument(request_error(id, "token id " + std::to_string(t) + " is outside the vocabulary of " +
                                                    std::to_string(cfg.vocab_size)));
  if (req.num_samples < 1) return invalid_argument(request_error(id, "asks for no samples"));
  if (req.num_samples > options_.max_batch)
    return invalid_argument(request_error(id, std::to_string(req.num_samples) + " samples exceed the batch of " +
                                                  std::to_string(options_.max_batch)));
  if (o.max_new_tokens < 1) return invalid_argument(request_error(id, "max_new_tokens must be at least 1"));
  if (!(o.temperature >= 0.0) || !(o.top_p > 0.0 && o.top_p <= 1.0) || o.top_k < 0 ||
      !(o.min_p >= 0.0 && o.min_p < 1.0))
    return invalid_argument(request_error(id, "sampling options out of range (temperature >= 0, 0 < top_p <= 1, top_k >= 0, 0 <= min_p < 1)"));
  if (!o.stop.empty() && !decoder_)
    return invalid_argument(request_error(id, "stop strings need a tokenizer to decode with"));
  for (const auto& s : o.stop)
    if (s.empty()) return invalid_argument(request_error(id, "empty stop string"));
  const int64_t need = static_cast<int64_t>(req.prompt_ids.size()) + o.max_new_tokens;
  if (need > cfg.max_seq_len)
    return invalid_argument(request_error(id, "prompt of " + std::to_string(req.prompt_ids.size()) + " tokens + " +
                                                  std::to_string(o.max_new_tokens) + " new tokens exceeds max_seq_len " +
                                                  std::to_string(cfg.max_seq_len)));
  if (options_.max_context > 0 && need > options_.max_context)
    return invalid_argument(request_error(id, "prompt + new tokens exceed the engine's max_context " +
                                                  std::to_string(options_.max_context)));
  Request r;
  r.id = id;
  r.prompt = req.prompt_ids;
  r.sampling = o;
  r.seed = seed;
  r.samples.resize(static_cast<size_t>(req.num_samples));
  r.unfinished = req.num_samples;
  for (const auto& s : o.stop) r.stop_window = std::max(r.stop_window, s.size() + 1);
  requests_.emplace(id, std::move(r));
  queue_.push_back(id);
  return ok_status();
}

Status Engine::ensure_capacity(int64_t need) {
  if (need <= cache_.capacity && !cache_.k.empty()) return ok_status();
  const int64_t max_len = model_->config().max_seq_len;
  int64_t cap = options_.max_context > 0
                    ? options_.max_context
                    : std::min(max_len, std::max({need, 2 * cache_.capacity, int64_t{128}}));
  if (need > cap) return invalid_argument("generate: context of " + std::to_string(need) + " exceeds the cache");
  KVCache fresh = model_->make_cache(options_.max_batch, cap);
  for (size_t l = 0; l < cache_.k.size(); ++l) {
    if (fast_) {
      const auto b = fresh.k[l].size(0), kv = fresh.k[l].size(1), hd = fresh.k[l].size(3);
      fresh.k[l].view({b, kv, hd, cap}).narrow(3, 0, cache_.capacity).copy_(cache_.k[l].view({b, kv, hd, cache_.capacity}));
    } else {
      fresh.k[l].narrow(2, 0, cache_.capacity).copy_(cache_.k[l]);
    }
    fresh.v[l].narrow(2, 0, cache_.capacity).copy_(cache_.v[l]);
  }
  cache_ = std::move(fresh);
  return ok_status();
}

void Engine::move_row(size_t from, size_t to) {
  const int64_t len = rows_[from].length, f = static_cast<int64_t>(from), t = static_cast<int64_t>(to);
  for (size_t l = 0; l < cache_.k.size(); ++l) {
    if (fast_) {
      cache_.k[l][t].copy_(cache_.k[l][f]);  // transposed keys: the whole block
    } else {
      cache_.k[l][t].narrow(1, 0, len).copy_(cache_.k[l][f].narrow(1, 0, len));
    }
    cache_.v[l][t].narrow(1, 0, len).copy_(cache_.v[l][f].narrow(1, 0, len));
  }
  rows_[to] = rows_[from];
}

torch::Tensor Engine::decode_running(int64_t n) {
  std::vector<int64_t> tok(static_cast<size_t>(n)), pos(static_cast<size_t>(n));
  int64_t read_len = 0;
  for (int64_t i = 0; i < n; ++i) {
    tok[static_cast<size_t>(i)] = rows_[static_cast<size_t>(i)].last_token;
    pos[static_cast<size_t>(i)] = rows_[static_cast<size_t>(i)].length;
    read_len = std::max(read_len, rows_[static_cast<size_t>(i)].length + 1);
  }
  const auto dev = cache_.k.front().device();
  auto tokens = torch::tensor(tok, torch::kInt64).to(dev).view({n, 1});
  auto positions = torch::tensor(pos, torch::kInt64).to(dev).view({n, 1});
  torch::Tensor logits;
  if (fast_) {
    logits = model_->decode_step(tokens.view({n}), positions.view({n}), cache_);
  } else {
    KVCache view;
    view.capacity = cache_.capacity;
    for (size_t l = 0; l < cache_.k.size(); ++l) {
      view.k.push_back(cache_.k[l].narrow(0, 0, n));
      view.v.push_back(cache_.v[l].narrow(0, 0, n));
    }
    AttentionCall call;
    call.cache = &view;
    call.write_pos = positions.view({n});
    call.read_len = read_len;
    logits = model_->forward(tokens, positions, call).select(1, 0);
  }
  for (int64_t i = 0; i < n; ++i) rows_[static_cast<size_t>(i)].length += 1;
  return logits;
}

torch::Tensor Engine::admit() {
  std::vector<uint64_t> picked;
  int64_t free_slots = options_.max_batch - static_cast<int64_t>(rows_.size());
  int64_t need = 0, longest = 0;
  while (!queue_.empty()) {
    const Request& r = requests_.at(queue_.front());
    const int64_t g = static_cast<int64_t>(r.samples.size());
    if (g > free_slots) break;
    free_slots -= g;
    need = std::max<int64_t>(need, static_cast<int64_t>(r.prompt.size()) + r.sampling.max_new_tokens);
    longest = std::max<int64_t>(longest, static_cast<int64_t>(r.prompt.size()));
    picked.push_back(queue_.front());
    queue_.pop_front();
  }
  if (picked.empty()) return torch::Tensor();
  Status cap = ensure_capacity(need);
  GRPO_CHECK_MSG(cap.ok(), cap.message().c_str());  // submit() bounded every request's context
  const int64_t k = static_cast<int64_t>(picked.size());
  auto tokens = torch::zeros({k, longest}, torch::kInt64);
  auto acc = tokens.accessor<int64_t, 2>();
  std::vector<int64_t> last(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) {
    const auto& prompt = requests_.at(picked[static_cast<size_t>(i)]).prompt;
    for (size_t j = 0; j < prompt.size(); ++j) acc[i][static_cast<int64_t>(j)] = prompt[j];
    last[static_cast<size_t>(i)] = static_cast<int64_t>(prompt.size()) - 1;
  }
  const auto dev = cache_.k.front().device();
  tokens = tokens.to(dev);
  auto positions = torch::arange(longest, torch::TensorOptions().dtype(torch::kInt64).device(dev))
                       .unsqueeze(0)
                       .expand({k, longest});
  // Right padding: a prompt's queries never see the padding after it under the causal mask.
  KVCache scratch = model_->make_cache(k, longest);
  AttentionCall call;
  call.cache = &scratch;
  auto h = model_->hidden(tokens, positions, call);
  auto last_idx = torch::tensor(last, torch::kInt64).to(dev).view({k, 1, 1}).expand({k, 1, h.size(2)});
  auto first_logits = model_->head(h.gather(1, last_idx).squeeze(1));  // [k, V]
  std::vector<int64_t> expand;
  for (int64_t i = 0; i < k; ++i) {
    const Request& r = requests_.at(picked[static_cast<size_t>(i)]);
    const int64_t len = static_cast<int64_t>(r.prompt.size());
    const int64_t g = static_cast<int64_t>(r.samples.size());
    const int64_t row0 = static_cast<int64_t>(rows_.size());
    for (size_t l = 0; l < cache_.k.size(); ++l) {
      auto keys = scratch.k[l].narrow(0, i, 1).narrow(2, 0, len);  // [1, KV, len, hd]
      if (fast_) {
        // Transposed key blocks: [g, KV, hd, capacity] in memory.
        auto dst = cache_.k[l].narrow(0, row0, g).view({g, cache_.k[l].size(1), cache_.k[l].size(3), cache_.capacity});
        dst.narrow(3, 0, len).copy_(keys.transpose(2, 3));
      } else {
        cache_.k[l].narrow(0, row0, g).narrow(2, 0, len).copy_(keys);
      }
      cache_.v[l].narrow(0, row0, g).narrow(2, 0, len).copy_(scratch.v[l].narrow(0, i, 1).narrow(2, 0, len));
    }
    for (int64_t s = 0; s < g; ++s) {
      Row row;
      row.request = r.id;
      row.sample = static_cast<int32_t>(s);
      row.length = len;
      rows_.push_back(row);
      expand.push_back(i);
    }
  }
  return first_logits.index_select(0, torch::tensor(expand, torch::kInt64).to(dev));
}

bool Engine::record(Row& row, int64_t token, float logprob) {
  Request& req = requests_.at(row.request);
  GeneratedSample& s = req.samples[static_cast<size_t>(row.sample)];
  s.ids.push_back(static_cast<int32_t>(token));
  s.logprobs.push_back(logprob);
  s.versions.push_back(version_);
  row.last_token = token;
  const SamplingOptions& o = req.sampling;
  if ((o.eos_id >= 0 && token == o.eos_id) ||
      std::find(o.extra_eos_ids.begin(), o.extra_eos_ids.end(), token) != o.extra_eos_ids.end()) {
    s.finished = true;
    s.reason = FinishReason::kEos;
    return true;
  }
  if (!o.stop.empty() && decoder_) {
    const size_t n = std::min(s.ids.size(), req.stop_window);
    const std::string tail = decoder_(std::vector<int32_t>(s.ids.end() - static_cast<std::ptrdiff_t>(n), s.ids.end()));
    for (const auto& stop : o.stop) {
      if (tail.find(stop) != std::string::npos) {
        s.finished = true;
        s.reason = FinishReason::kStop;
        return true;
      }
    }
  }
  if (static_cast<int32_t>(s.ids.size()) >= o.max_new_tokens) {
    s.reason = FinishReason::kLength;
    return true;
  }
  return false;
}

StatusOr<std::vector<FinishedRequest>> Engine::step() {
  std::vector<FinishedRequest> finished;
  if (idle()) return finished;
  torch::NoGradGuard no_grad;
  const int64_t n_old = static_cast<int64_t>(rows_.size());
  std::vector<torch::Tensor> parts;
  if (n_old > 0) parts.push_back(decode_running(n_old));
  auto fresh = admit();
  if (fresh.defined()) parts.push_back(fresh);
  if (parts.empty()) return finished;
  auto logits = parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
  const int64_t n = static_cast<int64_t>(rows_.size());

  std::vector<float> uniforms(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const Row& row = rows_[static_cast<size_t>(i)];
    const Request& req = requests_.at(row.request);
    const int64_t index = static_cast<int64_t>(req.samples[static_cast<size_t>(row.sample)].ids.size());
    uniforms[static_cast<size_t>(i)] = static_cast<float>(sampling_uniform(req.seed, row.sample, index));
  }
  auto u = torch::tensor(uniforms, torch::kFloat32).to(logits.device());
  // Rows are sampled together when their requests share sampler settings (the usual case).
  torch::Tensor tokens = torch::empty({n}, torch::kInt64), lps = torch::empty({n}, torch::kFloat32);
  std::vector<bool> sampled(static_cast<size_t>(n), false);
  for (int64_t i = 0; i < n; ++i) {
    if (sampled[static_cast<size_t>(i)]) continue;
    const SamplingOptions& o = requests_.at(rows_[static_cast<size_t>(i)].request).sampling;
    std::vector<int64_t> members;
    for (int64_t j = i; j < n; ++j) {
      if (!sampled[static_cast<size_t>(j)] &&
          same_sampler(requests_.at(rows_[static_cast<size_t>(j)].request).sampling, o)) {
        members.push_back(j);
        sampled[static_cast<size_t>(j)] = true;
      }
    }
    torch::Tensor t, lp;
    if (static_cast<int64_t>(members.size()) == n) {
      sample_tokens(logits, o, u, &t, &lp);
      tokens = t.to(torch::kCPU);
      lps = lp.to(torch::kCPU);
    } else {
      auto idx = torch::tensor(members, torch::kInt64);
      auto didx = idx.to(logits.device());
      sample_tokens(logits.index_select(0, didx), o, u.index_select(0, didx), &t, &lp);
      tokens.index_copy_(0, idx, t.to(torch::kCPU));
      lps.index_copy_(0, idx, lp.to(torch::kCPU));
    }
  }
  auto tok_acc = tokens.accessor<int64_t, 1>();
  auto lp_acc = lps.accessor<float, 1>();
  std::vector<size_t> done_rows;
  for (int64_t i = 0; i < n; ++i) {
    if (record(rows_[static_cast<size_t>(i)], tok_acc[i], lp_acc[i])) done_rows.push_back(static_cast<size_t>(i));
  }
  // Retire finished rows from the highest index down, filling each hole with the last row.
  for (auto it = done_rows.rbegin(); it != done_rows.rend(); ++it) {
    const size_t i = *it;
    const uint64_t rid = rows_[i].request;
    const size_t last = rows_.size() - 1;
    if (i != last) move_row(last, i);
    rows_.pop_back();
    Request& req = requests_.at(rid);
    if (--req.unfinished == 0) {
      finished.push_back(FinishedRequest{rid, std::move(req.samples)});
      requests_.erase(rid);
    }
  }
  return finished;
}

}  // namespace grpo::runtime
