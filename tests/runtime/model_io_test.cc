// Hugging Face model I/O: config.json parsing (Llama, Qwen2, rope_scaling) and its errors, the
// safetensors container (valid, truncated, hostile headers), and save/load round trips of whole
// models (f32, bf16, sharded, tied and untied heads).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "runtime/model.h"
#include "runtime/model_config.h"
#include "runtime/policy.h"
#include "runtime/safetensors.h"

namespace grpo::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("grpo_model_io_" + std::to_string(::getpid()) + "_" +
                                          std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
  static inline int counter_ = 0;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

json qwen_config() {
  return json{{"architectures", {"Qwen2ForCausalLM"}},
              {"model_type", "qwen2"},
              {"vocab_size", 40},
              {"hidden_size", 32},
              {"intermediate_size", 48},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 4},
              {"num_key_value_heads", 2},
              {"max_position_embeddings", 64},
              {"rms_norm_eps", 1e-6},
              {"rope_theta", 1000000.0},
              {"hidden_act", "silu"},
              {"tie_word_embeddings", true},
              {"use_sliding_window", false},
              {"bos_token_id", 1},
              {"eos_token_id", {2, 3}},
              {"torch_dtype", "bfloat16"}};
}

TEST(HfConfigTest, ParsesQwen2WithBiasesAndTiedHead) {
  auto c = parse_hf_config(qwen_config().dump(), "q/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, "qwen2");
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_FALSE(c->o_bias);
  EXPECT_TRUE(c->tie_embeddings);
  EXPECT_EQ(c->n_kv_heads, 2);
  EXPECT_EQ(c->head_size(), 8);
  EXPECT_EQ(c->eos_ids, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  // What we write parses back to the same model.
  auto again = parse_hf_config(hf_config_json(*c), "written");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(hf_config_json(*again), hf_config_json(*c));
}

TEST(HfConfigTest, ParsesLlamaRopeScaling) {
  json j = qwen_config();
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["attention_bias"] = true;
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 16}};
  auto c = parse_hf_config(j.dump(), "l/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->qkv_bias && c->o_bias);
  EXPECT_EQ(c->rope_scaling.type, "llama3");
  // llama3 scaling, recomputed here from its definition: wavelengths longer than 16/1 are divided
  // by 8, shorter than 16/4 kept, the band between interpolated.
  auto inv = rope_inv_freq(*c);
  for (int64_t i = 0; i < inv.size(0); ++i) {
    double f = std::pow(1000000.0, -2.0 * static_cast<double>(i) / 8.0);
    double wl = 2 * M_PI / f, want = f;
    if (wl > 16.0) {
      want = f / 8.0;
    } else if (wl >= 4.0) {
      double s = (16.0 / wl - 1.0) / 3.0;
      want = (1 - s) * f / 8.0 + s * f;
    }
    EXPECT_NEAR(inv[i].item<double>(), want, 1e-6 * want) << i;
  }
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  c = parse_hf_config(j.dump(), "l/config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_NEAR(rope_inv_freq(*c)[1].item<double>(), std::pow(1000000.0, -0.25) / 2, 1e-9);
}

TEST(HfConfigTest, RejectsWhatItCannotHonourNamingTheKey) {
  auto expect_error = [](json j, const std::string& needle) {
    auto c = parse_hf_config(j.dump(), "m/config.json");
    ASSERT_FALSE(c.ok()) << needle;
    EXPECT_NE(c.status().message().find("m/config.json"), std::string::npos) << c.status();
    EXPECT_NE(c.status().message().find(needle), std::string::npos) << c.status();
  };
  json j = qwen_config();
  j["architectures"] = {"MambaForCausalLM"};
  expect_error(j, "unknown architecture 'MambaForCausalLM'");
  j = qwen_config();
  j.erase("architectures");
  j["model_type"] = "gpt2";
  expect_error(j, "model_type");
  j = qwen_config();
  j["hidden_size"] = "32";
  expect_error(j, "hidden_size");
  j = qwen_config();
  j.erase("vocab_size");
  expect_error(j, "vocab_size: missing");
  j = qwen_config();
  j["num_key_value_heads"] = 3;
  expect_error(j, "num_key_value_heads");
  j = qwen_config();
  j["use_sliding_window"] = true;
  expect_error(j, "use_sliding_window");
  j = qwen_config();
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}};
  expect_error(j, "yarn");
  j = qwen_config();
  j["hidden_act"] = "gelu";
  expect_error(j, "hidden_act");
  auto bad = parse_hf_config("{not json", "m/config.json");
  EXPECT_FALSE(bad.ok());
}

TEST(SafetensorsTest, WritesAndReadsBack) {
  TempDir dir;
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f};
  std::vector<uint16_t> b = {0x3f80, 0xc000, 0x4040};
  ASSERT_TRUE(write_safetensors(dir.file("t.safetensors"),
                                {{"b", "BF16", {3}, b.data()}, {"a", "F32", {2, 3}, a.data()}})
                  .ok());
  auto f = SafetensorsFile::open(dir.file("t.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  const SafetensorInfo* ta = (*f)->find("a");
  ASSERT_NE(ta, nullptr);
  EXPECT_EQ(ta->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(std::memcmp((*f)->data(*ta), a.data(), 24), 0);
  const SafetensorInfo* tb = (*f)->find("b");
  ASSERT_NE(tb, nullptr);
  EXPECT_EQ(tb->dtype, "BF16");
  EXPECT_EQ(std::memcmp((*f)->data(*tb), b.data(), 6), 0);
  EXPECT_EQ((*f)->find("c"), nullptr);
}

// A valid file whose header is then replaced by `header` (the data section kept).
std::string with_header(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

TEST(SafetensorsTest, MalformedFilesFailWithClearErrors) {
  TempDir dir;
  std::vector<float> a(16, 1.0f);
  ASSERT_TRUE(write_safetensors(dir.file("ok.safetensors"), {{"w", "F32", {4, 4}, a.data()}}).ok());
  const std::string good = read_file(dir.file("ok.safetensors"));
  auto expect_error = [&](const std::string& bytes, const std::string& needle) {
    write_file(dir.file("bad.safetensors"), bytes);
    auto f = SafetensorsFile::open(dir.file("bad.safetensors"));
    ASSERT_FALSE(f.ok()) << needle;
    EXPECT_NE(f.status().message().find("bad.safetensors"), std::string::npos) << f.status();
    EXPECT_NE(f.status().message().find(needle), std::string::npos) << f.status();
  };
  expect_error(good.substr(0, good.size() - 10), "outside the data section");   // truncated data
  expect_error(good.substr(0, 20), "header length");                            // truncated header
  expect_error(good.substr(0, 5), "truncated");
  const std::string data(64, '\0');
  expect_error(with_header(R"({"w":{"dtype":"F32","shape":[4,4],"data_offsets":[0,6400]}})", data),
               "outside the data section");
  expect_error(with_header(R"({"w":{"dtype":"F32","shape":[4,4],"data_offsets":[32,16]}})", data),
               "outside the data section");
  expect_error(with_header(R"({"w":{"dtype":"F32","shape":[3,4],"data_offsets":[0,64]}})", data),
               "needs 48");
  expect_error(with_header(R"({"w":{"dtype":"Q4","shape":[4,4],"data_offsets":[0,64]}})", data),
               "unknown dtype");
  expect_error(with_header(R"({"w":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]},)"
                           R"("v":{"dtype":"F32","shape":[2,4],"data_offsets":[16,48]}})", data),
               "overlap");
  expect_error(with_header(R"({"w": [1, 2)", data), "not a JSON object");
  expect_error(with_header(R"({"w":{"dtype":"F32","shape":[-4,4],"data_offsets":[0,64]}})", data),
               "invalid dimension");
  std::string huge = good;
  huge[7] = '\x7f';  // a header length of about 2^63
  expect_error(huge, "header length");
}

ModelConfig small(const std::string& arch, bool tied) {
  ModelConfig c;
  c.arch = arch;
  c.qkv_bias = arch == "qwen2";
  c.vocab_size = 40;
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.ffn_hidden = 48;
  c.max_seq_len = 64;
  c.tie_embeddings = tied;
  c.bos_id = 1;
  c.eos_ids = {2};
  return c;
}

std::vector<int32_t> greedy(Policy& p, int n) {
  SamplingOptions o;
  o.temperature = 0;
  o.max_new_tokens = n;
  o.eos_id = -1;
  auto out = p.generate({{{1, 5, 7}, 1}}, o, 0);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? (*out)[0][0].ids : std::vector<int32_t>{};
}

TEST(HfModelTest, SaveThenLoadRoundTripsBitExactly) {
  for (const auto& [arch, tied] : std::vector<std::pair<std::string, bool>>{{"qwen2", true}, {"llama", false}}) {
    TempDir dir;
    auto p = Policy::create(small(arch, tied), 3);
    ASSERT_TRUE(p->save(dir.str(), "float32").ok());
    EXPECT_TRUE(fs::exists(dir.file("config.json")));
    auto f = SafetensorsFile::open(dir.file("model.safetensors"));
    ASSERT_TRUE(f.ok());
    EXPECT_EQ((*f)->find("lm_head.weight") != nullptr, !tied);  // a tied head is not stored
    if (arch == "qwen2") {
      EXPECT_NE((*f)->find("model.layers.1.self_attn.q_proj.bias"), nullptr);
      EXPECT_EQ((*f)->find("model.layers.1.self_attn.o_proj.bias"), nullptr);
    }
    auto q = Policy::load(dir.str());
    ASSERT_TRUE(q.ok()) << q.status();
    EXPECT_EQ((*q)->export_weights().bytes, p->export_weights().bytes) << arch;
    EXPECT_EQ(greedy(**q, 10), greedy(*p, 10));
    EXPECT_EQ((*q)->config().arch, arch);
  }
}

TEST(HfModelTest, Bf16AndShardedCheckpointsRoundTrip) {
  TempDir a, b, c;
  torch::manual_seed(4);
  LlamaForCausalLM m(small("llama", false));
  ASSERT_TRUE(m->save_hf_checkpoint(a.str(), "bfloat16").ok());
  auto loaded = load_hf_model(a.str());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->config().torch_dtype, "bfloat16");
  // Saved again in its own dtype, a bf16 checkpoint is byte-identical.
  ASSERT_TRUE((*loaded)->save_hf_checkpoint(b.str()).ok());
  EXPECT_EQ(read_file(a.file("model.safetensors")), read_file(b.file("model.safetensors")));
  // Sharded: 4 KiB shards, an index naming each tensor's shard, and the same weights back.
  ASSERT_TRUE(m->save_hf_checkpoint(c.str(), "float32", 4096).ok());
  ASSERT_TRUE(fs::exists(c.file("model.safetensors.index.json")));
  EXPECT_FALSE(fs::exists(c.file("model.safetensors")));
  json index = json::parse(read_file(c.file("model.safetensors.index.json")));
  EXPECT_GT(index["weight_map"].size(), 10u);
  auto sharded = load_hf_model(c.str());
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  EXPECT_EQ((*sharded)->export_weights().bytes, m->export_weights().bytes);
}

TEST(HfModelTest, MismatchedCheckpointsAreRefused) {
  TempDir dir, other;
  auto p = Policy::create(small("llama", false), 3);
  ASSERT_TRUE(p->save(dir.str(), "float32").ok());
  // Config says more layers than the weights have.
  json cfg = json::parse(read_file(dir.file("config.json")));
  cfg["num_hidden_layers"] = 3;
  write_file(dir.file("config.json"), cfg.dump());
  auto q = Policy::load(dir.str());
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("missing tensor model.layers.2"), std::string::npos) << q.status();
  // Wrong shape.
  cfg["num_hidden_layers"] = 2;
  cfg["intermediate_size"] = 50;
  write_file(dir.file("config.json"), cfg.dump());
  q = Policy::load(dir.str());
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("shape"), std::string::npos) << q.status();
  // No weights at all.
  write_file(other.file("config.json"), cfg.dump());
  EXPECT_FALSE(Policy::load(other.str()).ok());
  // A shard index pointing at a missing file.
  write_file(other.file("model.safetensors.index.json"),
             R"({"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors"}})");
  auto r = Policy::load(other.str());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model-00001-of-00002.safetensors"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace grpo::runtime
