// Decoder-only transformers of the Llama and Qwen2 families in LibTorch: RMSNorm, rotary position
// embeddings (rotate-half layout, rope_theta, linear and llama3 rope_scaling), grouped-query
// attention, SwiGLU MLP, optional q/k/v(/o) and MLP biases, tied or untied head. Parameter names
// follow Hugging Face exactly ("model.embed_tokens.weight",
// "model.layers.0.self_attn.q_proj.weight", ..., "lm_head.weight"), so safetensors checkpoints load
// and save by name (load_safetensors / save_hf_checkpoint).
//
// Weights are held in f32 for compute on CPU; a bf16 checkpoint is widened on load and narrowed
// again on save, which round-trips bit-exactly. Internal to runtime/ (it includes LibTorch); other
// layers use runtime/policy.h and runtime/trainer.h. A module instance is used by one thread at a
// time.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "base/status.h"
#include "runtime/model_config.h"
#include "runtime/weights.h"

namespace grpo::runtime {

class SafetensorsCheckpoint;

// Preallocated key/value cache: per layer [batch, kv_heads, capacity, head_dim].
struct KVCache {
  std::vector<torch::Tensor> k, v;
  int64_t capacity = 0;
};

// How one forward call attends.
struct AttentionCall {
  // Additive mask [B,1,T,S] (S = keys read) or undefined: causal over this call's tokens only.
  torch::Tensor bias;
  KVCache* cache = nullptr;
  // Contiguous mode (write_pos undefined): this call's keys/values are written at [start, start+T)
  // of every row and attention reads [0, start+T).
  int64_t start = 0;
  // Decode mode: int64 [B], T == 1. Row b writes its key/value at column write_pos[b] and attends
  // to columns [0, write_pos[b]] (bias is not used). read_len bounds the columns any row reads
  // (max write_pos + 1). (LlamaForCausalLMImpl::decode_step is the fused CPU version.)
  torch::Tensor write_pos;
  int64_t read_len = 0;
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
  // x [B,T,D]; cos/sin [B,T,head_dim].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const AttentionCall& call, int layer);
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
                        const AttentionCall& call, int layer);
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

// The inverse RoPE frequencies [head_dim/2] (f32) of a config, rope_scaling applied.
torch::Tensor rope_inv_freq(const ModelConfig& cfg);

class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  // Throws on an invalid config; call validate_model_config() first when it comes from a user.
  explicit LlamaForCausalLMImpl(const ModelConfig& cfg);

  // tokens, positions: int64 [B,T]. Returns logits [B,T,V].
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& positions,
                        const AttentionCall& call);
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& positions,
                        const torch::Tensor& bias, KVCache* cache = nullptr, int64_t start = 0);
  // The final-norm hidden states [B,T,D] (forward() = head(hidden(...))). Prefill uses it to run
  // the head on the last position only.
  torch::Tensor hidden(const torch::Tensor& tokens, const torch::Tensor& positions,
                       const AttentionCall& call);
  torch::Tensor head(const torch::Tensor& hidden);
  KVCache make_cache(int64_t batch, int64_t capacity) const;
  const ModelConfig& config() const { return cfg_; }

  // One decode step on the fused CPU kernels (kernels/cpu/decode_attention.h): tokens and
  // positions int64 [n]; row b (of cache rows [0, n)) writes its key/value at column positions[b]
  // and attends to [0, positions[b]]. Returns logits [n, V]. Same result as forward() in decode
  // mode; available when fast_decode_available() (CPU, f32). No autograd. The cache tensors keep
  // their shape [batch, kv_heads, capacity, head_dim], but cache.k holds each (row, head) block's
  // keys TRANSPOSED in memory ([head_dim, capacity]); see to_decode_layout().
  bool fast_decode_available() const;
  torch::Tensor decode_step(const torch::Tensor& tokens, const torch::Tensor& positions, KVCache& cache);

  WeightBlob export_weights() const;
  // Copies tensors by name; every parameter must be present with its shape. Accepts f32 and bf16.
  Status import_weights(const WeightBlob& blob);

  // Loads every parameter from a Hugging Face checkpoint by name; all or nothing. With a tied head
  // a stored lm_head.weight is ignored; tensors the model does not have are ignored.
  Status load_safetensors(const SafetensorsCheckpoint& checkpoint);
  // Writes config.json and model.safetensors (sharded past max_shard_bytes) into dir, in `dtype`
  // ("float32" or "bfloat16"; "" = the config's torch_dtype). A tied head is not stored.
  Status save_hf_checkpoint(const std::string& dir, const std::string& dtype = "",
                            uint64_t max_shard_bytes = 5ull << 30) const;

  LlamaBody model{nullptr};
  torch::nn::Linear lm_head{nullptr};

 private:
  // Concatenated q|k|v and gate|up weights for decode_step, rebuilt whenever any parameter changed
  // (tracked through the tensors' in-place version counters).
  struct Fused {
    std::vector<torch::Tensor> qkv_w, qkv_b, gate_up_w, gate_up_b;
    uint64_t version_sum = ~0ull;
  };
  const Fused& fused();

  ModelConfig cfg_;
  torch::Tensor inv_freq_;  // [head_dim/2]
  Fused fused_;
};
TORCH_MODULE(LlamaForCausalLM);

// Key block of a standard-layout cache [B, KV, S, hd] (or a slice of one) in the transposed memory
// order decode_step expects, as a tensor of the same shape; and back.
torch::Tensor to_decode_layout(const torch::Tensor& keys);
torch::Tensor from_decode_layout(const torch::Tensor& keys);

// Builds a model from a Hugging Face directory (config.json + safetensors).
StatusOr<LlamaForCausalLM> load_hf_model(const std::string& dir);

// Additive causal mask for a training batch: [B,1,T,T], -inf above the diagonal and on padded keys
// (key_valid [B,T] bool, may be undefined).
torch::Tensor causal_bias(int64_t batch, int64_t len, const torch::Tensor& key_valid);

}  // namespace grpo::runtime
