// Shape of a decoder-only transformer of the Llama / Qwen2 families: the fields of a Hugging Face
// `config.json` that matter, plus reading and writing that file.
//
// parse_hf_config() accepts what transformers writes for LlamaForCausalLM and Qwen2ForCausalLM
// (model_type "llama" / "qwen2"): hidden sizes, heads, grouped-query key/value heads, an explicit
// head_dim, rope_theta and rope_scaling (types "linear" and "llama3"; "default" or null mean none),
// q/k/v(/o) biases (attention_bias for Llama, always q/k/v for Qwen2), mlp_bias, a tied or untied
// lm_head, token ids and torch_dtype. Anything it cannot honour (another architecture, an activation
// other than silu, an unsupported rope_scaling type, sliding-window attention) is an error naming
// the file and the key, never a silently different model. Pure C++; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace grpo::runtime {

struct RopeScaling {
  std::string type;               // "" (none), "linear" or "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  std::string arch = "llama";  // "llama" or "qwen2"
  int64_t vocab_size = 32;
  int64_t dim = 128;           // hidden_size
  int64_t n_layers = 3;        // num_hidden_layers
  int64_t n_heads = 4;         // num_attention_heads
  int64_t n_kv_heads = 4;      // num_key_value_heads
  int64_t head_dim = 0;        // 0: dim / n_heads
  int64_t ffn_hidden = 384;    // intermediate_size
  int64_t max_seq_len = 64;    // max_position_embeddings
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  double norm_eps = 1e-5;      // rms_norm_eps
  bool tie_embeddings = false; // tie_word_embeddings
  bool qkv_bias = false;       // bias on q_proj, k_proj, v_proj
  bool o_bias = false;         // bias on o_proj (Llama attention_bias)
  bool mlp_bias = false;       // bias on gate_proj, up_proj, down_proj
  int32_t bos_id = -1;         // -1: none
  std::vector<int32_t> eos_ids;
  int32_t pad_id = -1;
  std::string torch_dtype = "float32";  // dtype of the stored weights: "float32" or "bfloat16"

  int64_t head_size() const { return head_dim > 0 ? head_dim : dim / n_heads; }
};

// Checks the shape is buildable (divisibility, even head size, positive sizes).
Status validate_model_config(const ModelConfig& config);

// Parses the text of a config.json; `origin` names it in errors ("DIR/config.json").
StatusOr<ModelConfig> parse_hf_config(const std::string& json_text, const std::string& origin);
StatusOr<ModelConfig> load_hf_config(const std::string& path);

// The config.json that transformers reads back as the same model (architectures, model_type and
// every field above under its Hugging Face name).
std::string hf_config_json(const ModelConfig& config);

}  // namespace grpo::runtime
