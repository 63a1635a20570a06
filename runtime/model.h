// LlamaForCausalLM in LibTorch: RMSNorm, rotary position embeddings (rotate-half layout), grouped-query
// attention, SwiGLU MLP, optional tied head. Parameter names follow Hugging Face exactly
// ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", ..., "lm_head.weight").
//
// Internal to runtime/ (it includes LibTorch); other layers use runtime/policy.h and
// runtime/trainer.h. A module instance is used by one thread at a time.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "runtime/model_config.h"
#include "runtime/weights.h"
#include "base/status.h"

namespace grpo::runtime {

// Preallocated key/value cache: per layer [batch, kv_heads, capacity, head_dim].
struct KVCache {
  std::vector<torch::Tensor> k, v;
  int64_t capacity = 0;
};

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelConfig& cfg);
  // x [B,T,D]; cos/sin [B,T,head_dim]; bias additive [B,1,T,S] (S = keys seen) or undefined.
  // With a cache, this step's keys/values are written at [start, start+T) and attention reads
  // [0, start+T).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& bias, KVCache* cache, int layer, int64_t start);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t n_heads_, n_kv_heads_, head_dim_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const ModelConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Mlp);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit DecoderLayerImpl(const ModelConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& bias, KVCache* cache, int layer, int64_t start);
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

class LlamaBodyImpl : public torch::nn::Module {
 public:
  explicit LlamaBodyImpl(const ModelConfig& cfg);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(LlamaBody);

class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  explicit LlamaForCausalLMImpl(const ModelConfig& cfg);

  // tokens, positions: int64 [B,T]. bias: additive float mask [B,1,T,S] or undefined (then causal
  // over this call's tokens only). Returns logits [B,T,V].
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& positions,
                        const torch::Tensor& bias, KVCache* cache = nullptr, int64_t start = 0);
  KVCache make_cache(int64_t batch, int64_t capacity) const;
  const ModelConfig& config() const { return cfg_; }

  WeightBlob export_weights() const;
  // Copies tensors by name; every parameter must be present with its shape.
  Status import_weights(const WeightBlob& blob);

  LlamaBody model{nullptr};
  torch::nn::Linear lm_head{nullptr};

 private:
  ModelConfig cfg_;
  torch::Tensor inv_freq_;  // [head_dim/2]
};
TORCH_MODULE(LlamaForCausalLM);

// Additive causal mask for a training batch: [B,1,T,T], -inf above the diagonal and on padded keys
// (key_valid [B,T] bool, may be undefined).
torch::Tensor causal_bias(int64_t batch, int64_t len, const torch::Tensor& key_valid);

}  // namespace grpo::runtime
