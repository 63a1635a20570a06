#include "runtime/model_config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace grpo::runtime {
namespace {

using nlohmann::json;

class Reader {
 public:
  Reader(const json& j, std::string origin) : j_(j), origin_(std::move(origin)) {}

  Status error(const std::string& key, const std::string& msg) const {
    return invalid_argument(origin_ + ": " + key + ": " + msg);
  }
  bool has(const std::string& key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  Status get_int(const std::string& key, int64_t* out, bool required, int64_t min_value = 1) const {
    if (!has(key)) return required ? error(key, "missing") : ok_status();
    const json& v = j_.at(key);
    if (!v.is_number_integer()) return error(key, "must be an integer, got " + v.dump());
    int64_t x = v.get<int64_t>();
    if (x < min_value) return error(key, "must be at least " + std::to_string(min_value));
    *out = x;
    return ok_status();
  }
  Status get_double(const std::string& key, double* out, bool required) const {
    if (!has(key)) return required ? error(key, "missing") : ok_status();
    const json& v = j_.at(key);
    if (!v.is_number()) return error(key, "must be a number, got " + v.dump());
    *out = v.get<double>();
    return ok_status();
  }
  Status get_bool(const std::string& key, bool* out) const {
    if (!has(key)) return ok_status();
    const json& v = j_.at(key);
    if (!v.is_boolean()) return error(key, "must be true or false, got " + v.dump());
    *out = v.get<bool>();
    return ok_status();
  }
  Status get_string(const std::string& key, std::string* out) const {
    if (!has(key)) return ok_status();
    const json& v = j_.at(key);
    if (!v.is_string()) return error(key, "must be a string, got " + v.dump());
    *out = v.get<std::string>();
    return ok_status();
  }
  // An id or a list of ids (eos_token_id may be either).
  Status get_ids(const std::string& key, std::vector<int32_t>* out) const {
    if (!has(key)) return ok_status();
    const json& v = j_.at(key);
    auto one = [&](const json& e) -> Status {
      if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<int64_t>() > INT32_MAX)
        return error(key, "must be a token id or a list of token ids, got " + v.dump());
      out->push_back(static_cast<int32_t>(e.get<int64_t>()));
      return ok_status();
    };
    if (v.is_array()) {
      for (const auto& e : v) GRPO_RETURN_IF_ERROR(one(e));
      return ok_status();
    }
    return one(v);
  }

 private:
  const json& j_;
  std::string origin_;
};

}  // namespace

Status validate_model_config(const ModelConfig& c) {
  if (c.arch != "llama" && c.arch != "qwen2")
    return invalid_argument("model: unknown architecture '" + c.arch + "'");
  if (c.vocab_size < 1 || c.dim < 1 || c.n_layers < 1 || c.n_heads < 1 || c.n_kv_heads < 1 ||
      c.ffn_hidden < 1 || c.max_seq_len < 1)
    return invalid_argument("model: every size must be positive");
  if (c.head_dim == 0 && c.dim % c.n_heads != 0)
    return invalid_argument("model: hidden_size " + std::to_string(c.dim) +
                            " is not a multiple of num_attention_heads " + std::to_string(c.n_heads));
  if (c.head_size() % 2 != 0)
    return invalid_argument("model: head size " + std::to_string(c.head_size()) + " must be even for RoPE");
  if (c.n_heads % c.n_kv_heads != 0)
    return invalid_argument("model: num_attention_heads " + std::to_string(c.n_heads) +
                            " is not a multiple of num_key_value_heads " + std::to_string(c.n_kv_heads));
  if (!c.rope_scaling.type.empty() && c.rope_scaling.type != "linear" && c.rope_scaling.type != "llama3")
    return invalid_argument("model: unsupported rope_scaling type '" + c.rope_scaling.type + "'");
  if (!c.rope_scaling.type.empty() && c.rope_scaling.factor <= 0)
    return invalid_argument("model: rope_scaling factor must be positive");
  if (c.rope_scaling.type == "llama3" &&
      (c.rope_scaling.high_freq_factor <= c.rope_scaling.low_freq_factor ||
       c.rope_scaling.low_freq_factor <= 0 || c.rope_scaling.original_max_position_embeddings < 1))
    return invalid_argument("model: llama3 rope_scaling needs 0 < low_freq_factor < high_freq_factor");
  if (c.torch_dtype != "float32" && c.torch_dtype != "bfloat16" && c.torch_dtype != "float16")
    return invalid_argument("model: unsupported torch_dtype '" + c.torch_dtype + "'");
  for (int32_t id : c.eos_ids)
    if (id >= c.vocab_size) return invalid_argument("model: eos_token_id " + std::to_string(id) + " is outside the vocabulary");
  if (c.bos_id >= c.vocab_size) return invalid_argument("model: bos_token_id is outside the vocabulary");
  return ok_status();
}

StatusOr<ModelConfig> parse_hf_config(const std::string& text, const std::string& origin) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return invalid_argument(origin + ": not valid JSON");
  if (!j.is_object()) return invalid_argument(origin + ": must be a JSON object");
  Reader r(j, origin);
  ModelConfig c;
  std::string model_type;
  GRPO_RETURN_IF_ERROR(r.get_string("model_type", &model_type));
  std::string arch_name;
  if (r.has("architectures")) {
    const json& a = j.at("architectures");
    if (!a.is_array() || a.size() != 1 || !a[0].is_string())
      return r.error("architectures", "must be a list of one class name, got " + a.dump());
    arch_name = a[0].get<std::string>();
  }
  if (arch_name == "LlamaForCausalLM" || (arch_name.empty() && model_type == "llama")) {
    c.arch = "llama";
  } else if (arch_name == "Qwen2ForCausalLM" || (arch_name.empty() && model_type == "qwen2")) {
    c.arch = "qwen2";
  } else {
    std::string what = arch_name.empty() ? "model_type '" + model_type + "'" : "'" + arch_name + "'";
    return r.error(arch_name.empty() ? "model_type" : "architectures",
                   "unknown architecture " + what + " (supported: LlamaForCausalLM, Qwen2ForCausalLM)");
  }
  if (!model_type.empty() && model_type != c.arch)
    return r.error("model_type", "'" + model_type + "' does not match architecture " + arch_name);

  GRPO_RETURN_IF_ERROR(r.get_int("vocab_size", &c.vocab_size, true));
  GRPO_RETURN_IF_ERROR(r.get_int("hidden_size", &c.dim, true));
  GRPO_RETURN_IF_ERROR(r.get_int("num_hidden_layers", &c.n_layers, true));
  GRPO_RETURN_IF_ERROR(r.get_int("num_attention_heads", &c.n_heads, true));
  c.n_kv_heads = c.n_heads;
  GRPO_RETURN_IF_ERROR(r.get_int("num_key_value_heads", &c.n_kv_heads, false));
  GRPO_RETURN_IF_ERROR(r.get_int("head_dim", &c.head_dim, false));
  GRPO_RETURN_IF_ERROR(r.get_int("intermediate_size", &c.ffn_hidden, true));
  c.max_seq_len = 2048;
  GRPO_RETURN_IF_ERROR(r.get_int("max_position_embeddings", &c.max_seq_len, false));
  GRPO_RETURN_IF_ERROR(r.get_double("rope_theta", &c.rope_theta, false));
  c.norm_eps = 1e-6;
  GRPO_RETURN_IF_ERROR(r.get_double("rms_norm_eps", &c.norm_eps, false));
  GRPO_RETURN_IF_ERROR(r.get_bool("tie_word_embeddings", &c.tie_embeddings));
  if (c.arch == "llama") {
    bool attention_bias = false;
    GRPO_RETURN_IF_ERROR(r.get_bool("attention_bias", &attention_bias));
    c.qkv_bias = c.o_bias = attention_bias;
    GRPO_RETURN_IF_ERROR(r.get_bool("mlp_bias", &c.mlp_bias));
  } else {
    c.qkv_bias = true;
    bool sliding = false;
    GRPO_RETURN_IF_ERROR(r.get_bool("use_sliding_window", &sliding));
    if (sliding) return r.error("use_sliding_window", "sliding-window attention is not supported");
  }
  std::string act = "silu";
  GRPO_RETURN_IF_ERROR(r.get_string("hidden_act", &act));
  if (act != "silu") return r.error("hidden_act", "only silu (SwiGLU) is supported, got '" + act + "'");
  std::vector<int32_t> bos;
  GRPO_RETURN_IF_ERROR(r.get_ids("bos_token_id", &bos));
  if (!bos.empty()) c.bos_id = bos.front();
  GRPO_RETURN_IF_ERROR(r.get_ids("eos_token_id", &c.eos_ids));
  std::vector<int32_t> pad;
  GRPO_RETURN_IF_ERROR(r.get_ids("pad_token_id", &pad));
  if (!pad.empty()) c.pad_id = pad.front();
  GRPO_RETURN_IF_ERROR(r.get_string("torch_dtype", &c.torch_dtype));

  if (r.has("rope_scaling")) {
    const json& rs = j.at("rope_scaling");
    if (!rs.is_object()) return r.error("rope_scaling", "must be an object or null");
    Reader rr(rs, origin + ": rope_scaling");
    std::string type;
    GRPO_RETURN_IF_ERROR(rr.get_string("rope_type", &type));
    if (type.empty()) GRPO_RETURN_IF_ERROR(rr.get_string("type", &type));
    if (type == "default") type.clear();
    if (!type.empty() && type != "linear" && type != "llama3")
      return r.error("rope_scaling", "unsupported type '" + type + "' (supported: linear, llama3)");
    c.rope_scaling.type = type;
    if (!type.empty()) GRPO_RETURN_IF_ERROR(rr.get_double("factor", &c.rope_scaling.factor, true));
    if (type == "llama3") {
      GRPO_RETURN_IF_ERROR(rr.get_double("low_freq_factor", &c.rope_scaling.low_freq_factor, true));
      GRPO_RETURN_IF_ERROR(rr.get_double("high_freq_factor", &c.rope_scaling.high_freq_factor, true));
      GRPO_RETURN_IF_ERROR(rr.get_int("original_max_position_embeddings",
                                      &c.rope_scaling.original_max_position_embeddings, true));
    }
  }
  Status st = validate_model_config(c);
  if (!st.ok()) return invalid_argument(origin + ": " + st.message());
  return c;
}

StatusOr<ModelConfig> load_hf_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_hf_config(ss.str(), path);
}

std::string hf_config_json(const ModelConfig& c) {
  json j;
  const bool qwen = c.arch == "qwen2";
  j["architectures"] = {qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"};
  j["model_type"] = c.arch;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.dim;
  j["intermediate_size"] = c.ffn_hidden;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  if (c.head_dim > 0 && c.head_dim != c.dim / c.n_heads) j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_seq_len;
  j["rms_norm_eps"] = c.norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type.empty()) {
    j["rope_scaling"] = nullptr;
  } else {
    json rs;
    rs["rope_type"] = c.rope_scaling.type;
    rs["factor"] = c.rope_scaling.factor;
    if (c.rope_scaling.type == "llama3") {
      rs["low_freq_factor"] = c.rope_scaling.low_freq_factor;
      rs["high_freq_factor"] = c.rope_scaling.high_freq_factor;
      rs["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
    }
    j["rope_scaling"] = rs;
  }
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = c.tie_embeddings;
  if (qwen) {
    j["use_sliding_window"] = false;
  } else {
    j["attention_bias"] = c.qkv_bias;
    j["mlp_bias"] = c.mlp_bias;
  }
  j["bos_token_id"] = c.bos_id >= 0 ? json(c.bos_id) : json(nullptr);
  if (c.eos_ids.size() == 1) j["eos_token_id"] = c.eos_ids.front();
  else if (c.eos_ids.empty()) j["eos_token_id"] = nullptr;
  else j["eos_token_id"] = c.eos_ids;
  if (c.pad_id >= 0) j["pad_token_id"] = c.pad_id;
  j["torch_dtype"] = c.torch_dtype;
  j["use_cache"] = true;
  return j.dump(2) + "\n";
}

}  // namespace grpo::runtime
