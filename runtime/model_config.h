// Shape of a Llama-style decoder (the fields of a Hugging Face config.json that matter).
#pragma once

#include <cstdint>
#include <string>

namespace grpo::runtime {

struct ModelConfig {
  int64_t vocab_size = 32;
  int64_t dim = 128;           // hidden_size
  int64_t n_layers = 3;        // num_hidden_layers
  int64_t n_heads = 4;         // num_attention_heads
  int64_t n_kv_heads = 4;      // num_key_value_heads
  int64_t ffn_hidden = 384;    // intermediate_size
  int64_t max_seq_len = 64;    // max_position_embeddings
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  bool tie_embeddings = false;
};

}  // namespace grpo::runtime
