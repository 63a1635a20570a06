// Data tests (label `data`) of the tokenizers and chat templates against third-party references in
// ../shared/data (or $GRPO_TEST_DATA): GPT-2 reference ids, the Qwen2 special-token case, the
// Hugging Face chat-template renderings and the stories260K llama2.c vocabulary. Each test skips
// with a message when its files are absent.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/bpe_tokenizer.h"
#include "runtime/chat_template.h"
#include "runtime/sp_tokenizer.h"
#include "tests/runtime/llama2c_reference.h"
#include "tests/test_data.h"

namespace grpo::runtime {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

using grpo::testing::read_jsonl;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(TokenizerDataTest, Gpt2MatchesAllReferenceIds) {
  GRPO_REQUIRE_DATA("tokenizers/gpt2/reference_ids.jsonl");
  auto tok = BpeTokenizer::load_dir(grpo::testing::test_data_path("tokenizers/gpt2"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(tok->vocab_size(), 50257);
  EXPECT_EQ(tok->eos_id(), std::optional<int32_t>(50256));
  std::vector<Json> cases = read_jsonl(grpo::testing::test_data_path("tokenizers/gpt2/reference_ids.jsonl"));
  ASSERT_EQ(cases.size(), 46u);
  int matched = 0;
  for (const Json& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const std::vector<int32_t> want = c["ids"].get<std::vector<int32_t>>();
    SCOPED_TRACE("text: '" + text + "'");
    auto ids = tok->encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, want);
    auto back = tok->decode(want);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, text);
    matched += (*ids == want && *back == text);
  }
  EXPECT_EQ(matched, 46);
}

TEST(TokenizerDataTest, Qwen2ParsesSpecialTokens) {
  GRPO_REQUIRE_DATA("tokenizers/qwen2/special_tokens_reference.jsonl");
  auto tok = BpeTokenizer::load_dir(grpo::testing::test_data_path("tokenizers/qwen2"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(tok->options().pre_tokenizer, PreTokenizer::kQwen2);
  EXPECT_TRUE(tok->options().nfc);
  EXPECT_EQ(tok->eos_id(), std::optional<int32_t>(151643));
  std::vector<Json> cases = read_jsonl(grpo::testing::test_data_path("tokenizers/qwen2/special_tokens_reference.jsonl"));
  ASSERT_FALSE(cases.empty());
  for (const Json& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const std::vector<int32_t> want = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok->encode(text).value(), want) << text;
    EXPECT_EQ(tok->decode(want).value(), text);
  }
  EXPECT_EQ(tok->encode("<|im_start|>hello<|im_end|>").value(),
            (std::vector<int32_t>{151644, 14990, 151645}));
  // Not parsed when special tokens are not allowed.
  auto plain = tok->encode("<|im_start|>hello<|im_end|>", /*parse_special=*/false).value();
  EXPECT_GT(plain.size(), 3u);
  EXPECT_EQ(tok->decode(plain).value(), "<|im_start|>hello<|im_end|>");
  EXPECT_EQ(tok->decode({151644, 14990, 151645}, /*skip_special=*/true).value(), "hello");
}

TEST(TokenizerDataTest, ChatTemplatesMatchReferenceRenderings) {
  GRPO_REQUIRE_DATA("tokenizers/chat_templates/renderings.jsonl");
  std::vector<Json> cases = read_jsonl(grpo::testing::test_data_path("tokenizers/chat_templates/renderings.jsonl"));
  ASSERT_EQ(cases.size(), 6u);
  // The renderings' ids come from a Qwen tokenizer that also has <think>/</think> added tokens.
  std::optional<BpeTokenizer> qwen;
  if (fs::exists(grpo::testing::test_data_path("tokenizers/qwen2/vocab.json"))) {
    auto tok = BpeTokenizer::load_dir(grpo::testing::test_data_path("tokenizers/qwen2"));
    ASSERT_TRUE(tok.ok()) << tok.status();
    ASSERT_TRUE(tok->add_token({"<think>", 151667, false}).ok());
    ASSERT_TRUE(tok->add_token({"</think>", 151668, false}).ok());
    qwen.emplace(std::move(tok).value());
  }
  int rendered = 0, tokenized = 0;
  for (const Json& c : cases) {
    const std::string name = c["template"].get<std::string>();
    SCOPED_TRACE(name);
    ChatFormat format;
    if (name.find("DeepSeek-R1-Distill-Qwen") != std::string::npos) {
      format = ChatFormat::kDeepSeekR1Distill;
    } else if (name.find("Qwen2.5") != std::string::npos) {
      format = ChatFormat::kQwen25Instruct;
    } else {
      FAIL() << "unknown template " << name;
    }
    std::vector<ChatMessage> messages;
    for (const Json& m : c["messages"])
      messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    auto text = render_chat(format, messages, c["add_generation_prompt"].get<bool>());
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, c["rendered"].get<std::string>());
    rendered += *text == c["rendered"].get<std::string>();
    if (qwen && c["qwen_ids"].is_array()) {
      EXPECT_EQ(qwen->encode(*text).value(), c["qwen_ids"].get<std::vector<int32_t>>());
      ++tokenized;
    }
  }
  EXPECT_EQ(rendered, 6);
  if (qwen) {
    EXPECT_EQ(tokenized, 3);
  }
}

TEST(TokenizerDataTest, Stories260kTokenizerRoundTrips) {
  GRPO_REQUIRE_DATA("models/stories260K/tok512.bin");
  auto tok = SpTokenizer::load(grpo::testing::test_data_path("models/stories260K/tok512.bin"), 512);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(tok->vocab_size(), 512);
  std::vector<std::string> texts = {
      "Once upon a time, there was a little girl named Lily.",
      "She loved to play outside in the park. One day, she saw a big, red ball.",
      "Lily's mom said, \"Lily, let's go to the park.\"",
      "The cat sat on the mat.\nThen it slept.",
      "Caf\xC3\xA9 \xE2\x98\x95 costs 3 euros!",  // byte fallback for code points outside the vocabulary
  };
  if (fs::exists(grpo::testing::test_data_path("models/stories260K/expected_greedy_text.txt")))
    texts.push_back(read_text(grpo::testing::test_data_path("models/stories260K/expected_greedy_text.txt")));
  for (const std::string& text : texts) {
    SCOPED_TRACE(text);
    auto ids = tok->encode(text, /*add_bos=*/true);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(ids->front(), SpTokenizer::kBos);
    EXPECT_EQ(*ids, naive_llama2c_encode(*tok, text, /*add_bos=*/true));
    EXPECT_LT(ids->size(), text.size());  // merges happened
    EXPECT_EQ(tok->decode(*ids).value(), text);
    std::vector<int32_t> generated(ids->begin() + 1, ids->end());
    EXPECT_EQ(tok->decode(generated, SpTokenizer::kBos).value(), text);
  }
  // The first piece after BOS of "Once upon a time" is " Once" (or a prefix of it) with the space
  // dropped on decode.
  auto ids = tok->encode("Once upon a time", true).value();
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(tok->piece(ids[1]).front(), ' ');
  EXPECT_EQ(tok->decode_piece(SpTokenizer::kBos, ids[1]).value(), tok->piece(ids[1]).substr(1));
}

}  // namespace
}  // namespace grpo::runtime
