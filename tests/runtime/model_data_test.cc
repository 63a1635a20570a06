// Data tests (label `data`) of the model runtime against real checkpoints in ../shared/data (or
// $GRPO_TEST_DATA): stories260K (a pretrained Llama in Hugging Face layout) must reproduce
// llama2.c's greedy text, and tiny-llama-bf16 (bf16, untied head) must load, run and save back
// bit-exactly. Each test skips with a message when its files are absent.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/policy.h"
#include "runtime/safetensors.h"
#include "runtime/sp_tokenizer.h"
#include "tests/test_data.h"

namespace grpo::runtime {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ModelDataTest, Stories260kGreedyTextMatchesLlama2c) {
  GRPO_REQUIRE_DATA("models/stories260K/model.safetensors");
  auto policy = Policy::load(grpo::testing::test_data_path("models/stories260K"));
  ASSERT_TRUE(policy.ok()) << policy.status();
  auto tok = SpTokenizer::load(grpo::testing::test_data_path("models/stories260K/tok512.bin"), 512);
  ASSERT_TRUE(tok.ok()) << tok.status();
  SamplingOptions o;
  o.temperature = 0;
  o.max_new_tokens = 200;
  o.eos_id = -1;  // llama2.c's test runs the full 200 steps
  auto out = (*policy)->generate({{{SpTokenizer::kBos}, 1}}, o, 0);
  ASSERT_TRUE(out.ok()) << out.status();
  const auto& ids = (*out)[0][0].ids;
  ASSERT_EQ(ids.size(), 200u);
  auto text = tok->decode(ids, SpTokenizer::kBos);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, read_file(grpo::testing::test_data_path("models/stories260K/expected_greedy_text.txt")));
}

TEST(ModelDataTest, TinyLlamaBf16LoadsRunsAndSavesBackBitExactly) {
  GRPO_REQUIRE_DATA("models/tiny-llama-bf16/model.safetensors");
  auto policy = Policy::load(grpo::testing::test_data_path("models/tiny-llama-bf16"));
  ASSERT_TRUE(policy.ok()) << policy.status();
  const ModelConfig& c = (*policy)->config();
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_EQ(c.vocab_size, 16);
  SamplingOptions o;
  o.temperature = 0.7;
  o.max_new_tokens = 20;
  o.eos_id = c.eos_ids.empty() ? -1 : c.eos_ids.front();
  auto out = (*policy)->generate({{{3, 4, 5}, 4}}, o, 1);
  ASSERT_TRUE(out.ok()) << out.status();
  for (const auto& s : (*out)[0]) {
    ASSERT_FALSE(s.ids.empty());
    for (float lp : s.logprobs) EXPECT_TRUE(std::isfinite(lp) && lp <= 0.0f);
    for (int32_t id : s.ids) EXPECT_LT(id, 16);
  }
  // Every tensor saved back in bf16 has the original's bytes.
  const fs::path dir = fs::temp_directory_path() / ("grpo_tiny_bf16_" + std::to_string(::getpid()));
  ASSERT_TRUE((*policy)->save(dir.string()).ok());
  auto a = SafetensorsFile::open(grpo::testing::test_data_path("models/tiny-llama-bf16/model.safetensors"));
  auto b = SafetensorsFile::open((dir / "model.safetensors").string());
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ((*a)->tensors().size(), (*b)->tensors().size());
  for (const auto& t : (*a)->tensors()) {
    const SafetensorInfo* u = (*b)->find(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_EQ(u->dtype, t.dtype);
    EXPECT_EQ(u->shape, t.shape);
    ASSERT_EQ(u->end - u->begin, t.end - t.begin);
    EXPECT_EQ(std::memcmp((*a)->data(t), (*b)->data(*u), t.end - t.begin), 0) << t.name;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace grpo::runtime
