#include "runtime/model.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "base/log.h"
#include "kernels/cpu/decode_attention.h"
#include "runtime/safetensors.h"

namespace grpo::runtime {
namespace {

torch::Tensor rotate_half(const torch::Tensor& x) {
  int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

torch::nn::Linear linear(int64_t in, int64_t out, bool bias) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

// Blob dtype names <-> LibTorch dtypes.
bool blob_dtype(const std::string& name, torch::Dtype* out) {
  if (name == "f32") *out = torch::kFloat32;
  else if (name == "bf16") *out = torch::kBFloat16;
  else if (name == "f16") *out = torch::kFloat16;
  else return false;
  return true;
}

bool safetensors_dtype(const std::string& name, torch::Dtype* out) {
  if (name == "F32") *out = torch::kFloat32;
  else if (name == "BF16") *out = torch::kBFloat16;
  else if (name == "F16") *out = torch::kFloat16;
  else return false;
  return true;
}

// A tensor owning a copy of `bytes` (which may be unaligned, e.g. inside a mapped file).
torch::Tensor copy_bytes(const char* bytes, const std::vector<int64_t>& shape, torch::Dtype dtype) {
  auto t = torch::empty(shape, torch::TensorOptions().dtype(dtype));
  std::memcpy(t.data_ptr(), bytes, static_cast<size_t>(t.numel()) * t.element_size());
  return t;
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
    : n_heads_(cfg.n_heads), n_kv_heads_(cfg.n_kv_heads), head_dim_(cfg.head_size()) {
  q_proj = register_module("q_proj", linear(cfg.dim, n_heads_ * head_dim_, cfg.qkv_bias));
  k_proj = register_module("k_proj", linear(cfg.dim, n_kv_heads_ * head_dim_, cfg.qkv_bias));
  v_proj = register_module("v_proj", linear(cfg.dim, n_kv_heads_ * head_dim_, cfg.qkv_bias));
  o_proj = register_module("o_proj", linear(n_heads_ * head_dim_, cfg.dim, cfg.o_bias));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                     const torch::Tensor& sin, const AttentionCall& call,
                                     int layer) {
  const int64_t b = x.size(0), t = x.size(1);
  auto q = q_proj(x).view({b, t, n_heads_, head_dim_}).transpose(1, 2);
  auto k = k_proj(x).view({b, t, n_kv_heads_, head_dim_}).transpose(1, 2);
  auto v = v_proj(x).view({b, t, n_kv_heads_, head_dim_}).transpose(1, 2);
  auto c = cos.unsqueeze(1), s = sin.unsqueeze(1);
  q = q * c + rotate_half(q) * s;
  k = k * c + rotate_half(k) * s;
  torch::Tensor keys = k, values = v;
  int64_t offset = 0;  // column of this call's first query among the keys
  if (call.cache != nullptr) {
    auto& ck = call.cache->k[static_cast<size_t>(layer)];
    auto& cv = call.cache->v[static_cast<size_t>(layer)];
    if (call.write_pos.defined()) {
      auto idx = call.write_pos.view({b, 1, 1, 1}).expand({b, n_kv_heads_, 1, head_dim_});
      ck.scatter_(2, idx, k);
      cv.scatter_(2, idx, v);
      keys = ck.narrow(2, 0, call.read_len);
      values = cv.narrow(2, 0, call.read_len);
      offset = call.read_len - 1;
    } else {
      ck.narrow(2, call.start, t).copy_(k);
      cv.narrow(2, call.start, t).copy_(v);
      keys = ck.narrow(2, 0, call.start + t);
      values = cv.narrow(2, 0, call.start + t);
      offset = call.start;
    }
  }
  // Grouped-query attention without copying keys: the G query heads that share a key/value head
  // are stacked along the query axis.
  const int64_t g = n_heads_ / n_kv_heads_, keys_len = keys.size(2);
  auto qg = q.reshape({b, n_kv_heads_, g * t, head_dim_});
  auto scores = torch::matmul(qg, keys.transpose(-2, -1))
                    .mul_(1.0 / std::sqrt(static_cast<double>(head_dim_)))
                    .view({b, n_heads_, t, keys_len});
  if (call.write_pos.defined()) {
    // Decode mode: row b sees columns [0, write_pos[b]].
    auto cols = torch::arange(keys_len, torch::TensorOptions().dtype(torch::kInt64).device(x.device()));
    auto hidden = (cols.view({1, keys_len}) > call.write_pos.view({b, 1})).view({b, 1, 1, keys_len});
    scores = scores.masked_fill(hidden, -1e9);
  } else if (call.bias.defined()) {
    scores = scores + call.bias;
  } else if (t > 1) {
    auto allowed = torch::ones({t, keys_len}, torch::TensorOptions().dtype(torch::kBool).device(x.device()))
                       .tril(offset);
    scores = scores.masked_fill(allowed.logical_not(), -1e9);
  }
  auto probs = torch::softmax(scores, -1).view({b, n_kv_heads_, g * t, keys_len});
  auto out = torch::matmul(probs, values)
                 .view({b, n_heads_, t, head_dim_})
                 .transpose(1, 2)
                 .reshape({b, t, n_heads_ * head_dim_});
  return o_proj(out);
}

MlpImpl::MlpImpl(const ModelConfig& cfg) {
  gate_proj = register_module("gate_proj", linear(cfg.dim, cfg.ffn_hidden, cfg.mlp_bias));
  up_proj = register_module("up_proj", linear(cfg.dim, cfg.ffn_hidden, cfg.mlp_bias));
  down_proj = register_module("down_proj", linear(cfg.ffn_hidden, cfg.dim, cfg.mlp_bias));
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
                                        const torch::Tensor& sin, const AttentionCall& call,
                                        int layer) {
  auto h = x + self_attn(input_layernorm(x), cos, sin, call, layer);
  return h + mlp(post_attention_layernorm(h));
}

LlamaBodyImpl::LlamaBodyImpl(const ModelConfig& cfg) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(cfg.vocab_size, cfg.dim));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.n_layers; ++i) layers->push_back(DecoderLayer(cfg));
  norm = register_module("norm", RMSNorm(cfg.dim, cfg.norm_eps));
}

torch::Tensor rope_inv_freq(const ModelConfig& cfg) {
  const int64_t hd = cfg.head_size();
  auto inv = torch::pow(cfg.rope_theta, -torch::arange(0, hd, 2, torch::kFloat64) / static_cast<double>(hd));
  const RopeScaling& rs = cfg.rope_scaling;
  if (rs.type == "linear") {
    inv = inv / rs.factor;
  } else if (rs.type == "llama3") {
    const double old_len = static_cast<double>(rs.original_max_position_embeddings);
    const double low_wavelen = old_len / rs.low_freq_factor;
    const double high_wavelen = old_len / rs.high_freq_factor;
    auto wavelen = 2.0 * M_PI / inv;
    // Long wavelengths are divided by the factor, short ones kept, the band between interpolated.
    auto scaled = torch::where(wavelen > low_wavelen, inv / rs.factor, inv);
    auto smooth = (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
    auto smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled;
    auto medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    inv = torch::where(medium, smoothed, scaled);
  }
  return inv.to(torch::kFloat32);
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const ModelConfig& cfg) : cfg_(cfg) {
  Status valid = validate_model_config(cfg);
  GRPO_CHECK_MSG(valid.ok(), valid.message().c_str());
  model = register_module("model", LlamaBody(cfg));
  if (!cfg.tie_embeddings) lm_head = register_module("lm_head", linear(cfg.dim, cfg.vocab_size, false));
  inv_freq_ = rope_inv_freq(cfg);
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters()) {
    const std::string& name = p.key();
    if (name.find("norm") != std::string::npos) continue;
    if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
      p.value().zero_();
      continue;
    }
    p.value().normal_(0.0, 0.02);
  }
}

torch::Tensor LlamaForCausalLMImpl::forward(const torch::Tensor& tokens,
                                            const torch::Tensor& positions,
                                            const AttentionCall& call) {
  return head(hidden(tokens, positions, call));
}

torch::Tensor LlamaForCausalLMImpl::head(const torch::Tensor& h) {
  if (lm_head) return lm_head(h);
  return torch::matmul(h, model->embed_tokens->weight.t());
}

torch::Tensor LlamaForCausalLMImpl::hidden(const torch::Tensor& tokens,
                                           const torch::Tensor& positions,
                                           const AttentionCall& call) {
  auto freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq_.to(tokens.device());
  auto emb = torch::cat({freqs, freqs}, -1);
  auto cos = emb.cos(), sin = emb.sin();
  auto h = model->embed_tokens(tokens);
  for (size_t i = 0; i < model->layers->size(); ++i) {
    h = model->layers[i]->as<DecoderLayer>()->forward(h, cos, sin, call, static_cast<int>(i));
  }
  return model->norm(h);
}

torch::Tensor LlamaForCausalLMImpl::forward(const torch::Tensor& tokens,
                                            const torch::Tensor& positions,
                                            const torch::Tensor& bias, KVCache* cache,
                                            int64_t start) {
  AttentionCall call;
  call.bias = bias;
  call.cache = cache;
  call.start = start;
  return forward(tokens, positions, call);
}

bool LlamaForCausalLMImpl::fast_decode_available() const {
  const auto& w = model->embed_tokens->weight;
  return w.device().is_cpu() && w.scalar_type() == torch::kFloat32;
}

const LlamaForCausalLMImpl::Fused& LlamaForCausalLMImpl::fused() {
  uint64_t sum = 0;
  for (const auto& p : parameters()) sum += static_cast<uint64_t>(p._version()) + 1;
  if (sum == fused_.version_sum) return fused_;
  torch::NoGradGuard no_grad;
  Fused f;
  for (size_t i = 0; i < model->layers->size(); ++i) {
    auto layer = model->layers[i]->as<DecoderLayer>();
    auto& a = layer->self_attn;
    f.qkv_w.push_back(torch::cat({a->q_proj->weight, a->k_proj->weight, a->v_proj->weight}, 0).contiguous());
    f.qkv_b.push_back(cfg_.qkv_bias ? torch::cat({a->q_proj->bias, a->k_proj->bias, a->v_proj->bias}, 0)
                                    : torch::Tensor());
    auto& m = layer->mlp;
    f.gate_up_w.push_back(torch::cat({m->gate_proj->weight, m->up_proj->weight}, 0).contiguous());
    f.gate_up_b.push_back(cfg_.mlp_bias ? torch::cat({m->gate_proj->bias, m->up_proj->bias}, 0)
                                        : torch::Tensor());
  }
  f.version_sum = sum;
  fused_ = std::move(f);
  return fused_;
}

torch::Tensor LlamaForCausalLMImpl::decode_step(const torch::Tensor& tokens,
                                                const torch::Tensor& positions, KVCache& cache) {
  torch::NoGradGuard no_grad;
  const Fused& f = fused();
  const int64_t n = tokens.size(0), dim = cfg_.dim, hd = cfg_.head_size();
  const int64_t heads = cfg_.n_heads, kv_heads = cfg_.n_kv_heads;
  auto pos = positions.to(torch::kInt64).contiguous();
  auto freqs = pos.to(torch::kFloat32).unsqueeze(1) * inv_freq_;  // [n, hd/2]
  auto cos = freqs.cos().contiguous(), sin = freqs.sin().contiguous();
  auto h = model->embed_tokens->weight.index_select(0, tokens).contiguous();  // [n, D]
  auto x = torch::empty_like(h);
  auto attn = torch::empty({n, heads * hd}, h.options());
  auto act = torch::empty({n, cfg_.ffn_hidden}, h.options());
  const float eps = static_cast<float>(cfg_.norm_eps);
  for (size_t i = 0; i < model->layers->size(); ++i) {
    auto layer = model->layers[i]->as<DecoderLayer>();
    kernels::rms_norm(h.data_ptr<float>(), layer->input_layernorm->weight.data_ptr<float>(), n, dim, eps,
                      x.data_ptr<float>());
    auto qkv = torch::linear(x, f.qkv_w[i], f.qkv_b[i]).contiguous();
    auto& ck = cache.k[i];
    auto& cv = cache.v[i];
    GRPO_CHECK(ck.is_contiguous() && cv.is_contiguous() && ck.size(0) >= n);
    kernels::RopeDecodeArgs args;
    args.qkv = qkv.data_ptr<float>();
    args.cos = cos.data_ptr<float>();
    args.sin = sin.data_ptr<float>();
    args.k_cache = ck.data_ptr<float>();
    args.v_cache = cv.data_ptr<float>();
    args.row_stride = ck.stride(0);
    args.head_stride = ck.stride(1);
    args.capacity = ck.size(2);
    args.positions = pos.data_ptr<int64_t>();
    args.rows = n;
    args.heads = heads;
    args.kv_heads = kv_heads;
    args.head_dim = hd;
    args.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
    args.out = attn.data_ptr<float>();
    kernels::rope_decode_attention(args);
    h.add_(layer->self_attn->o_proj(attn));
    kernels::rms_norm(h.data_ptr<float>(), layer->post_attention_layernorm->weight.data_ptr<float>(), n, dim,
                      eps, x.data_ptr<float>());
    auto gu = torch::linear(x, f.gate_up_w[i], f.gate_up_b[i]).contiguous();
    kernels::swiglu(gu.data_ptr<float>(), n, cfg_.ffn_hidden, act.data_ptr<float>());
    h.add_(layer->mlp->down_proj(act));
  }
  kernels::rms_norm(h.data_ptr<float>(), model->norm->weight.data_ptr<float>(), n, dim, eps, x.data_ptr<float>());
  return head(x);
}

KVCache LlamaForCausalLMImpl::make_cache(int64_t batch, int64_t capacity) const {
  KVCache c;
  c.capacity = capacity;
  const auto opts = model->embed_tokens->weight.options().requires_grad(false);
  for (int64_t i = 0; i < cfg_.n_layers; ++i) {
    c.k.push_back(torch::zeros({batch, cfg_.n_kv_heads, capacity, cfg_.head_size()}, opts));
    c.v.push_back(torch::zeros({batch, cfg_.n_kv_heads, capacity, cfg_.head_size()}, opts));
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
    auto t = p.value().detach().to(torch::kCPU, torch::kFloat32).contiguous();
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
    torch::Dtype dt;
    if (!blob_dtype(info.dtype, &dt)) return invalid_argument("weights: " + p.key() + " has dtype " + info.dtype);
    if (info.shape != p.value().sizes().vec())
      return invalid_argument("weights: " + p.key() + " has the wrong shape");
    const uint64_t need = static_cast<uint64_t>(p.value().numel()) * torch::elementSize(dt);
    if (info.nbytes != need || info.offset > blob.bytes.size() ||
        info.nbytes > blob.bytes.size() - info.offset)
      return invalid_argument("weights: " + p.key() + " points outside the blob");
  }
  torch::NoGradGuard no_grad;
  for (auto& p : params) {
    const TensorInfo& info = *by_name[p.key()];
    torch::Dtype dt = torch::kFloat32;
    blob_dtype(info.dtype, &dt);
    p.value().copy_(copy_bytes(blob.bytes.data() + info.offset, info.shape, dt));
  }
  return ok_status();
}

Status LlamaForCausalLMImpl::load_safetensors(const SafetensorsCheckpoint& ck) {
  auto params = named_parameters();
  for (const auto& p : params) {
    auto e = ck.find(p.key());
    if (e.info == nullptr) return invalid_argument("checkpoint: missing tensor " + p.key());
    torch::Dtype dt;
    if (!safetensors_dtype(e.info->dtype, &dt))
      return invalid_argument(e.file->path() + ": tensor " + p.key() + " has dtype " + e.info->dtype +
                              " (supported: F32, BF16, F16)");
    if (e.info->shape != p.value().sizes().vec()) {
      std::string want, got;
      for (auto s : p.value().sizes()) want += (want.empty() ? "" : "x") + std::to_string(s);
      for (auto s : e.info->shape) got += (got.empty() ? "" : "x") + std::to_string(s);
      return invalid_argument(e.file->path() + ": tensor " + p.key() + " has shape [" + got +
                              "], the config implies [" + want + "]");
    }
  }
  for (const auto& name : ck.names()) {
    if (!named_parameters().contains(name) && !(cfg_.tie_embeddings && name == "lm_head.weight"))
      GRPO_LOG(kDebug) << "checkpoint: ignoring tensor " << name;
  }
  torch::NoGradGuard no_grad;
  for (auto& p : params) {
    auto e = ck.find(p.key());
    torch::Dtype dt = torch::kFloat32;
    safetensors_dtype(e.info->dtype, &dt);
    p.value().copy_(copy_bytes(e.file->data(*e.info), e.info->shape, dt));
  }
  return ok_status();
}

Status LlamaForCausalLMImpl::save_hf_checkpoint(const std::string& dir, const std::string& dtype,
                                                uint64_t max_shard_bytes) const {
  const std::string out_dtype = dtype.empty() ? cfg_.torch_dtype : dtype;
  torch::Dtype dt;
  std::string st_name;
  if (out_dtype == "float32") {
    dt = torch::kFloat32;
    st_name = "F32";
  } else if (out_dtype == "bfloat16") {
    dt = torch::kBFloat16;
    st_name = "BF16";
  } else if (out_dtype == "float16") {
    dt = torch::kFloat16;
    st_name = "F16";
  } else {
    return invalid_argument("save: unsupported dtype '" + out_dtype + "'");
  }
  std::vector<torch::Tensor> keep;
  std::vector<TensorToWrite> tensors;
  for (const auto& p : named_parameters()) {
    keep.push_back(p.value().detach().to(torch::kCPU, dt).contiguous());
    tensors.push_back(TensorToWrite{p.key(), st_name, keep.back().sizes().vec(), keep.back().data_ptr()});
  }
  GRPO_RETURN_IF_ERROR(write_safetensors_checkpoint(dir, tensors, max_shard_bytes));
  ModelConfig c = cfg_;
  c.torch_dtype = out_dtype;
  const std::string path = (std::filesystem::path(dir) / "config.json").string();
  std::ofstream out(path + ".tmp");
  out << hf_config_json(c);
  out.close();
  if (!out || std::rename((path + ".tmp").c_str(), path.c_str()) != 0)
    return internal_error(path + ": cannot write");
  return ok_status();
}

StatusOr<LlamaForCausalLM> load_hf_model(const std::string& dir) {
  GRPO_ASSIGN_OR_RETURN(ModelConfig cfg,
                        load_hf_config((std::filesystem::path(dir) / "config.json").string()));
  GRPO_ASSIGN_OR_RETURN(auto ck, SafetensorsCheckpoint::open(dir));
  try {
    LlamaForCausalLM m(cfg);
    GRPO_RETURN_IF_ERROR(m->load_safetensors(*ck));
    m->eval();
    return m;
  } catch (const c10::Error& e) {
    return internal_error(dir + ": " + e.what_without_backtrace());
  }
}

torch::Tensor to_decode_layout(const torch::Tensor& keys) {
  return keys.transpose(-1, -2).contiguous().view(keys.sizes());
}

torch::Tensor from_decode_layout(const torch::Tensor& keys) {
  auto s = keys.sizes().vec();
  std::swap(s[s.size() - 1], s[s.size() - 2]);
  return keys.view(s).transpose(-1, -2);
}

torch::Tensor causal_bias(int64_t batch, int64_t len, const torch::Tensor& key_valid) {
  auto allowed = torch::ones({len, len}, torch::kBool).tril().view({1, 1, len, len});
  if (key_valid.defined()) allowed = allowed & key_valid.view({batch, 1, 1, len});
  auto bias = torch::zeros(allowed.sizes(), torch::kFloat32);
  return bias.masked_fill(allowed.logical_not(), -1e9);
}

}  // namespace grpo::runtime
