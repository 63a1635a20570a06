#include "runtime/model.h"

#include <cmath>
#include <cstring>
#include <map>

namespace grpo::runtime {
namespace {

torch::Tensor rotate_half(const torch::Tensor& x) {
  int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

torch::nn::Linear linear(int64_t in, int64_t out, bool bias = false) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

}  // namespace

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  auto var = x.pow(2).mean(-1, /*keepdim=*/true);
  return x * torch::rsqrt(var + eps_) * weight;
}

AttentionImpl::AttentionImpl(const ModelConfig& cfg)
    : n_heads_(cfg.n_heads), n_kv_heads_(cfg.n_kv_heads), head_dim_(cfg.dim / cfg.n_heads) {
  q_proj = register_module("q_proj", linear(cfg.dim, n_heads_ * head_dim_));
  k_proj = register_module("k_proj", linear(cfg.dim, n_kv_heads_ * head_dim_));
  v_proj = register_module("v_proj", linear(cfg.dim, n_kv_heads_ * head_dim_));
  o_proj = register_module("o_proj", linear(n_heads_ * head_dim_, cfg.dim));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                     const torch::Tensor& sin, const torch::Tensor& bias,
                                     KVCache* cache, int layer, int64_t start) {
  const int64_t b = x.size(0), t = x.size(1);
  auto q = q_proj(x).view({b, t, n_heads_, head_dim_}).transpose(1, 2);
  auto k = k_proj(x).view({b, t, n_kv_heads_, head_dim_}).transpose(1, 2);
  auto v = v_proj(x).view({b, t, n_kv_heads_, head_dim_}).transpose(1, 2);
  auto c = cos.unsqueeze(1), s = sin.unsqueeze(1);
  q = q * c + rotate_half(q) * s;
  k = k * c + rotate_half(k) * s;
  torch::Tensor keys = k, values = v;
  if (cache) {
    cache->k[layer].narrow(2, start, t).copy_(k);
    cache->v[layer].narrow(2, start, t).copy_(v);
    keys = cache->k[layer].narrow(2, 0, start + t);
    values = cache->v[layer].narrow(2, 0, start + t);
  }
  if (n_kv_heads_ != n_heads_) {
    keys = keys.repeat_interleave(n_heads_ / n_kv_heads_, 1);
    values = values.repeat_interleave(n_heads_ / n_kv_heads_, 1);
  }
  auto scores = torch::matmul(q, keys.transpose(-2, -1)) / std::sqrt(static_cast<double>(head_dim_));
  if (bias.defined()) {
    scores = scores + bias;
  } else {
    scores = scores + causal_bias(1, t, torch::Tensor()).to(scores.dtype());
  }
  auto probs = torch::softmax(scores, -1);
  auto out = torch::matmul(probs, values).transpose(1, 2).reshape({b, t, n_heads_ * head_dim_});
  return o_proj(out);
}

MlpImpl::MlpImpl(const ModelConfig& cfg) {
  gate_proj = register_module("gate_proj", linear(cfg.dim, cfg.ffn_hidden));
  up_proj = register_module("up_proj", linear(cfg.dim, cfg.ffn_hidden));
  down_proj = register_module("down_proj", linear(cfg.ffn_hidden, cfg.dim));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& cfg) {
  self_attn = register_module("self_attn", Attention(cfg));
  mlp = register_module("mlp", Mlp(cfg));
  input_layernorm = register_module("input_layernorm", RMSNorm(cfg.dim, cfg.norm_eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(cfg.dim, cfg.norm_eps));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                        const torch::Tensor& sin, const torch::Tensor& bias,
                                        KVCache* cache, int layer, int64_t start) {
  auto h = x + self_attn(input_layernorm(x), cos, sin, bias, cache, layer, start);
  return h + mlp(post_attention_layernorm(h));
}

LlamaBodyImpl::LlamaBodyImpl(const ModelConfig& cfg) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(cfg.vocab_size, cfg.dim));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.n_layers; ++i) layers->push_back(DecoderLayer(cfg));
  norm = register_module("norm", RMSNorm(cfg.dim, cfg.norm_eps));
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const ModelConfig& cfg) : cfg_(cfg) {
  GRPO_CHECK_MSG(cfg.dim % cfg.n_heads == 0, "dim must be a multiple of n_heads");
  GRPO_CHECK_MSG(cfg.n_heads % cfg.n_kv_heads == 0, "n_heads must be a multiple of n_kv_heads");
  model = register_module("model", LlamaBody(cfg));
  if (!cfg.tie_embeddings) lm_head = register_module("lm_head", linear(cfg.dim, cfg.vocab_size));
  int64_t head_dim = cfg.dim / cfg.n_heads;
  inv_freq_ = torch::pow(cfg.rope_theta,
                         -torch::arange(0, head_dim, 2, torch::kFloat64) / static_cast<double>(head_dim))
                  .to(torch::kFloat32);
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters()) {
    if (p.key().find("norm") != std::string::npos) continue;
    p.value().normal_(0.0, 0.02);
  }
}

torch::Tensor LlamaForCausalLMImpl::forward(const torch::Tensor& tokens,
                                            const torch::Tensor& positions,
                                            const torch::Tensor& bias, KVCache* cache,
                                            int64_t start) {
  auto freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq_;  // [B,T,hd/2]
  auto emb = torch::cat({freqs, freqs}, -1);
  auto cos = emb.cos(), sin = emb.sin();
  auto h = model->embed_tokens(tokens);
  for (size_t i = 0; i < model->layers->size(); ++i) {
    h = model->layers[i]->as<DecoderLayer>()->forward(h, cos, sin, bias, cache,
                                                       static_cast<int>(i), start);
  }
  h = model->norm(h);
  if (lm_head) return lm_head(h);
  return torch::matmul(h, model->embed_tokens->weight.t());
}

KVCache LlamaForCausalLMImpl::make_cache(int64_t batch, int64_t capacity) const {
  KVCache c;
  c.capacity = capacity;
  int64_t head_dim = cfg_.dim / cfg_.n_heads;
  for (int64_t i = 0; i < cfg_.n_layers; ++i) {
    c.k.push_back(torch::zeros({batch, cfg_.n_kv_heads, capacity, head_dim}));
    c.v.push_back(torch::zeros({batch, cfg_.n_kv_heads, capacity, head_dim}));
  }
  return c;
}

WeightBlob LlamaForCausalLMImpl::export_weights() const {
  WeightBlob blob;
  uint64_t total = 0;
  auto params = named_parameters();
  for (const auto& p : params) total += static_cast<uint64_t>(p.value().numel()) * 4;
  blob.bytes.resize(total);
  uint64_t off = 0;
  for (const auto& p : params) {
    auto t = p.value().detach().to(torch::kFloat32).contiguous();
    TensorInfo info;
    info.name = p.key();
    info.shape = t.sizes().vec();
    info.dtype = "f32";
    info.offset = off;
    info.nbytes = static_cast<uint64_t>(t.numel()) * 4;
    std::memcpy(&blob.bytes[off], t.data_ptr<float>(), info.nbytes);
    off += info.nbytes;
    blob.tensors.push_back(std::move(info));
  }
  return blob;
}

Status LlamaForCausalLMImpl::import_weights(const WeightBlob& blob) {
  std::map<std::string, const TensorInfo*> by_name;
  for (const auto& t : blob.tensors) by_name[t.name] = &t;
  auto params = named_parameters();
  // Check everything first, so a bad blob changes nothing.
  for (const auto& p : params) {
    auto it = by_name.find(p.key());
    if (it == by_name.end()) return invalid_argument("weights: missing tensor " + p.key());
    const TensorInfo& info = *it->second;
    if (info.dtype != "f32") return invalid_argument("weights: " + p.key() + " has dtype " + info.dtype);
    if (info.shape != p.value().sizes().vec())
      return invalid_argument("weights: " + p.key() + " has the wrong shape");
    if (info.nbytes != static_cast<uint64_t>(p.value().numel()) * 4 ||
        info.offset + info.nbytes > blob.bytes.size())
      return invalid_argument("weights: " + p.key() + " points outside the blob");
  }
  torch::NoGradGuard no_grad;
  for (auto& p : params) {
    const TensorInfo& info = *by_name[p.key()];
    auto src = torch::from_blob(const_cast<char*>(blob.bytes.data() + info.offset), info.shape,
                                torch::kFloat32);
    p.value().copy_(src);
  }
  return ok_status();
}

torch::Tensor causal_bias(int64_t batch, int64_t len, const torch::Tensor& key_valid) {
  auto allowed = torch::ones({len, len}, torch::kBool).tril().view({1, 1, len, len});
  if (key_valid.defined()) allowed = allowed & key_valid.view({batch, 1, 1, len});
  auto bias = torch::zeros(allowed.sizes(), torch::kFloat32);
  return bias.masked_fill(allowed.logical_not(), -1e9);
}

}  // namespace grpo::runtime
