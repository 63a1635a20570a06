// Unit tests of the byte-level BPE tokenizer, the llama2.c tokenizer and the chat templates, on
// tiny fixtures that the tests write into temporary folders.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "runtime/bpe_tokenizer.h"
#include "runtime/chat_template.h"
#include "runtime/sp_tokenizer.h"
#include "tests/runtime/llama2c_reference.h"

namespace grpo::runtime {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Fixture helpers.

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("grpo_tokenizer_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string path() const { return path_.string(); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(file(name), std::ios::binary) << text;
  }

 private:
  fs::path path_;
};

std::string utf8(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

// GPT-2's printable spelling of one byte.
std::string byte_token(unsigned char b) {
  int extra = 0;
  for (int x = 0; x < 256; ++x) {
    bool printable = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
    if (x == b) return utf8(printable ? static_cast<uint32_t>(x) : static_cast<uint32_t>(256 + extra));
    if (!printable) ++extra;
  }
  return "";
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// A tiny byte-level vocabulary: the 256 bytes (id = byte value) and the merges below.
struct TinyBpe {
  std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"Ġ", "w"}, {"o", "r"},
      {"Ġw", "or"}, {"l", "d"}, {"Ġwor", "ld"}, {"b", "c"}, {"a", "b"}, {"1", "2"},
  };
  std::vector<std::string> tokens;  // by id
  TinyBpe() {
    for (int b = 0; b < 256; ++b) tokens.push_back(byte_token(static_cast<unsigned char>(b)));
    for (const auto& [l, r] : merges) tokens.push_back(l + r);
  }
  int32_t id(const std::string& tok) const {
    for (size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i] == tok) return static_cast<int32_t>(i);
    return -1;
  }
  std::string vocab_json(const std::vector<std::string>& drop = {}) const {
    std::string out = "{";
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (std::find(drop.begin(), drop.end(), tokens[i]) != drop.end()) continue;
      if (out.size() > 1) out += ",";
      out += "\"" + json_escape(tokens[i]) + "\":" + std::to_string(i);
    }
    return out + "}";
  }
  std::string merges_txt(bool header) const {
    std::string out = header ? "#version: 0.2\n" : "";
    for (const auto& [l, r] : merges) out += l + " " + r + "\n";
    return out;
  }
  // Writes vocab.json, merges.txt and a tokenizer_config.json with one special token (300) and one
  // non-special added token (301).
  void write_dir(const TempDir& dir, bool header = true) const {
    dir.write("vocab.json", vocab_json());
    dir.write("merges.txt", merges_txt(header));
    dir.write("tokenizer_config.json", R"({
      "added_tokens_decoder": {
        "300": {"content": "<|end|>", "special": true, "lstrip": false, "rstrip": false},
        "301": {"content": "[TOOL]", "special": false}
      },
      "eos_token": "<|end|>", "bos_token": null, "tokenizer_class": "GPT2Tokenizer"})");
  }
};

BpeTokenizer load_tiny(const TempDir& dir) {
  TinyBpe tiny;
  tiny.write_dir(dir);
  auto tok = BpeTokenizer::load_dir(dir.path());
  EXPECT_TRUE(tok.ok()) << tok.status();
  return std::move(tok).value();
}

std::vector<std::string> pieces(PreTokenizer p, const std::string& text) {
  std::vector<std::string> out;
  for (auto v : pre_tokenize(p, text)) out.emplace_back(v);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers and normalisation.

TEST(PreTokenizerTest, Gpt2SplitsWordsNumbersPunctuationAndSpaces) {
  EXPECT_EQ(pieces(PreTokenizer::kGpt2, "I'm  fine, 2024!\n\n  ok"),
            (std::vector<std::string>{"I", "'m", " ", " fine", ",", " 2024", "!", "\n\n ", " ok"}));
  EXPECT_EQ(pieces(PreTokenizer::kGpt2, "they'll ' 've x  "),
            (std::vector<std::string>{"they", "'ll", " '", " '", "ve", " x", "  "}));
  EXPECT_EQ(pieces(PreTokenizer::kGpt2, "h\xC3\xA9llo w\xC3\xB6rld \xE4\xBD\xA0\xE5\xA5\xBD"),
            (std::vector<std::string>{"h\xC3\xA9llo", " w\xC3\xB6rld", " \xE4\xBD\xA0\xE5\xA5\xBD"}));
  EXPECT_EQ(pieces(PreTokenizer::kGpt2, "Don'T"), (std::vector<std::string>{"Don", "'", "T"}));
  EXPECT_TRUE(pieces(PreTokenizer::kGpt2, "").empty());
}

TEST(PreTokenizerTest, Qwen2SplitsDigitsSinglyAndKeepsNewlineRuns) {
  EXPECT_EQ(pieces(PreTokenizer::kQwen2, "I'M 12345 abc\n\n  x"),
            (std::vector<std::string>{"I", "'M", " ", "1", "2", "3", "4", "5", " abc", "\n\n", " ",
                                      " x"}));
  EXPECT_EQ(pieces(PreTokenizer::kQwen2, "(hello) x=1;\r\n"),
            (std::vector<std::string>{"(hello", ")", " x", "=", "1", ";\r\n"}));
  EXPECT_EQ(pieces(PreTokenizer::kLlama3, "12345 a"),
            (std::vector<std::string>{"123", "45", " a"}));
}

TEST(PreTokenizerTest, InvalidUtf8BytesArePreserved) {
  std::string text = "a\xFF\xC3 b\x80";
  std::string joined;
  for (auto p : pre_tokenize(PreTokenizer::kQwen2, text)) joined += std::string(p);
  EXPECT_EQ(joined, text);
}

TEST(NfcTest, ComposesDecomposedCharacters) {
  EXPECT_EQ(nfc_normalize("e\xCC\x81"), "\xC3\xA9");  // e + COMBINING ACUTE -> é
  EXPECT_EQ(nfc_normalize("plain"), "plain");
  EXPECT_EQ(nfc_normalize("bad\xFF"), "bad\xFF");
}

// ---------------------------------------------------------------------------------------------
// Byte-level BPE.

TEST(BpeTokenizerTest, MergesByRank) {
  TempDir dir;
  TinyBpe tiny;
  BpeTokenizer tok = load_tiny(dir);
  EXPECT_EQ(tok.encode("hello world").value(),
            (std::vector<int32_t>{tiny.id("hello"), tiny.id("Ġworld")}));
  // "b c" (rank 9) outranks "a b" (rank 10): abc -> a + bc.
  EXPECT_EQ(tok.encode("abc").value(), (std::vector<int32_t>{'a', tiny.id("bc")}));
  EXPECT_EQ(tok.encode("ab").value(), (std::vector<int32_t>{tiny.id("ab")}));
  EXPECT_EQ(tok.encode("1212").value(), (std::vector<int32_t>{tiny.id("12"), tiny.id("12")}));
  EXPECT_TRUE(tok.encode("").value().empty());
}

TEST(BpeTokenizerTest, DecodeRoundTripsArbitraryBytes) {
  TempDir dir;
  BpeTokenizer tok = load_tiny(dir);
  std::vector<std::string> texts = {
      "hello world", "  leading and trailing  ", "tab\tnew\nline\r\n", "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9",
      "\xE1\x9E\x80\xE1\x9E\xB6", "\xFF\xFE invalid \xC3", std::string("nul\0byte", 8)};
  std::mt19937 rng(7);
  for (int i = 0; i < 50; ++i) {
    std::string s(rng() % 40, '\0');
    for (char& c : s) c = static_cast<char>(rng() & 0xFF);
    texts.push_back(s);
  }
  for (const auto& text : texts) {
    auto ids = tok.encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    auto back = tok.decode(*ids);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, text);
  }
}

TEST(BpeTokenizerTest, MergesHeaderIsOptional) {
  TempDir with, without;
  TinyBpe tiny;
  tiny.write_dir(with, true);
  tiny.write_dir(without, false);
  auto a = BpeTokenizer::load_dir(with.path());
  auto b = BpeTokenizer::load_dir(without.path());
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->encode("hello world").value(), b->encode("hello world").value());
}

TEST(BpeTokenizerTest, SpecialTokensAreParsedOnlyWhenAllowed) {
  TempDir dir;
  TinyBpe tiny;
  BpeTokenizer tok = load_tiny(dir);
  EXPECT_EQ(tok.encode("<|end|>hello<|end|>").value(),
            (std::vector<int32_t>{300, tiny.id("hello"), 300}));
  auto plain = tok.encode("<|end|>hello", /*parse_special=*/false).value();
  EXPECT_EQ(plain.size(), 8u);  // < | e n d | > hello
  EXPECT_EQ(tok.decode(plain).value(), "<|end|>hello");
  // Non-special added tokens are always matched.
  EXPECT_EQ(tok.encode("[TOOL]ab", false).value(), (std::vector<int32_t>{301, tiny.id("ab")}));
  EXPECT_EQ(tok.decode({300, tiny.id("hello"), 301}).value(), "<|end|>hello[TOOL]");
  EXPECT_EQ(tok.decode({300, tiny.id("hello"), 301}, /*skip_special=*/true).value(), "hello[TOOL]");
  EXPECT_EQ(tok.eos_id(), std::optional<int32_t>(300));
  EXPECT_FALSE(tok.bos_id().has_value());
  EXPECT_TRUE(tok.is_special(300));
  EXPECT_FALSE(tok.is_special(301));
  EXPECT_EQ(tok.vocab_size(), 302);
  EXPECT_EQ(tok.token_to_id("Ġworld"), std::optional<int32_t>(tiny.id("Ġworld")));
  EXPECT_EQ(tok.id_to_token(tiny.id("Ġworld")).value(), "Ġworld");
}

TEST(BpeTokenizerTest, LongestAddedTokenWins) {
  TempDir dir;
  BpeTokenizer tok = load_tiny(dir);
  ASSERT_TRUE(tok.add_token({"<|end|>x", 302, true}).ok());
  EXPECT_EQ(tok.encode("<|end|>x<|end|>").value(), (std::vector<int32_t>{302, 300}));
  EXPECT_FALSE(tok.add_token({"<|end|>", 305, true}).ok());  // same content, other id
  EXPECT_FALSE(tok.add_token({"other", 'a', true}).ok());     // id of a different vocab token
  EXPECT_FALSE(tok.add_token({"far", 1 << 29, true}).ok());   // far beyond the vocabulary
}

TEST(BpeTokenizerTest, TokenizerJsonMatchesVocabAndMerges) {
  TempDir dir;
  TinyBpe tiny;
  std::string merges = "[";
  for (size_t i = 0; i < tiny.merges.size(); ++i) {
    if (i) merges += ",";
    // Both spellings Hugging Face writes: "a b" and ["a", "b"].
    if (i % 2)
      merges += "\"" + tiny.merges[i].first + " " + tiny.merges[i].second + "\"";
    else
      merges += "[\"" + tiny.merges[i].first + "\",\"" + tiny.merges[i].second + "\"]";
  }
  merges += "]";
  std::string pattern = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+)";
  dir.write("tokenizer.json", R"({"version": "1.0",
    "added_tokens": [{"id": 300, "content": "<|im_end|>", "special": true}],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": ")" + pattern + R"("}, "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": )" + tiny.vocab_json() + R"(, "merges": )" + merges + "}}");
  auto tok = BpeTokenizer::load_dir(dir.path());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(tok->options().pre_tokenizer, PreTokenizer::kQwen2);
  EXPECT_TRUE(tok->options().nfc);
  EXPECT_EQ(tok->encode("hello world<|im_end|>").value(),
            (std::vector<int32_t>{tiny.id("hello"), tiny.id("Ġworld"), 300}));
  EXPECT_EQ(tok->encode("12").value(), (std::vector<int32_t>{'1', '2'}));  // digits split singly
  // NFC: e + combining acute is encoded as the bytes of precomposed é.
  EXPECT_EQ(tok->encode("e\xCC\x81").value(), (std::vector<int32_t>{0xC3, 0xA9}));
}

TEST(BpeTokenizerTest, TokenizerJsonWithUnknownPatternIsUnimplemented) {
  TempDir dir;
  TinyBpe tiny;
  dir.write("tokenizer.json", R"({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"},
      {"type": "ByteLevel", "use_regex": false}]},
    "model": {"type": "BPE", "vocab": )" + tiny.vocab_json() + R"(, "merges": []}})");
  auto tok = BpeTokenizer::load_dir(dir.path());
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(tok.status().message().find("pattern"), std::string::npos) << tok.status();
}

TEST(BpeTokenizerTest, MergeReferencingUnknownTokenFails) {
  TempDir dir;
  TinyBpe tiny;
  dir.write("vocab.json", tiny.vocab_json());
  dir.write("merges.txt", "#version: 0.2\nh e\nhe zz\n");
  auto tok = BpeTokenizer::from_vocab_merges(dir.file("vocab.json"), dir.file("merges.txt"));
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(tok.status().message().find("line 3"), std::string::npos) << tok.status();
  EXPECT_NE(tok.status().message().find("'zz' that is not in the vocabulary"), std::string::npos)
      << tok.status();

  // The merged token itself must exist too.
  TempDir dir2;
  dir2.write("vocab.json", tiny.vocab_json({"hello"}));
  dir2.write("merges.txt", tiny.merges_txt(false));
  auto tok2 = BpeTokenizer::from_vocab_merges(dir2.file("vocab.json"), dir2.file("merges.txt"));
  ASSERT_FALSE(tok2.ok());
  EXPECT_NE(tok2.status().message().find("'hello'"), std::string::npos) << tok2.status();
}

TEST(BpeTokenizerTest, MalformedMergesLineFails) {
  TempDir dir;
  TinyBpe tiny;
  dir.write("vocab.json", tiny.vocab_json());
  dir.write("merges.txt", "h e\nl l x\n");
  auto tok = BpeTokenizer::from_vocab_merges(dir.file("vocab.json"), dir.file("merges.txt"));
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(tok.status().message().find("line 2"), std::string::npos) << tok.status();
}

TEST(BpeTokenizerTest, MissingFilesAreNotFound) {
  TempDir dir;
  auto a = BpeTokenizer::load_dir(dir.file("nope"));
  EXPECT_EQ(a.status().code(), StatusCode::kNotFound) << a.status();
  auto b = BpeTokenizer::load_dir(dir.path());  // empty folder: no vocab.json
  EXPECT_EQ(b.status().code(), StatusCode::kNotFound) << b.status();
  EXPECT_NE(b.status().message().find("vocab.json"), std::string::npos) << b.status();
  auto c = BpeTokenizer::from_tokenizer_json(dir.file("tokenizer.json"));
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound) << c.status();
}

TEST(BpeTokenizerTest, MalformedJsonFails) {
  TempDir dir;
  TinyBpe tiny;
  dir.write("vocab.json", "{\"a\": 0, ");
  dir.write("merges.txt", "");
  auto a = BpeTokenizer::from_vocab_merges(dir.file("vocab.json"), dir.file("merges.txt"));
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(a.status().message().find("malformed JSON"), std::string::npos) << a.status();

  dir.write("vocab.json", "[1, 2]");
  auto b = BpeTokenizer::from_vocab_merges(dir.file("vocab.json"), dir.file("merges.txt"));
  EXPECT_EQ(b.status().code(), StatusCode::kInvalidArgument) << b.status();

  dir.write("vocab.json", "{\"a\": \"zero\"}");
  auto c = BpeTokenizer::from_vocab_merges(dir.file("vocab.json"), dir.file("merges.txt"));
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << c.status();

  // Absurd ids are refused instead of allocating for them.
  dir.write("vocab.json", "{\"a\": 1000000000}");
  auto huge = BpeTokenizer::from_vocab_merges(dir.file("vocab.json"), dir.file("merges.txt"));
  EXPECT_EQ(huge.status().code(), StatusCode::kInvalidArgument) << huge.status();

  // A vocabulary without all 256 byte tokens is not byte-level.
  dir.write("vocab.json", tiny.vocab_json({"a"}));
  auto d = BpeTokenizer::from_vocab_merges(dir.file("vocab.json"), dir.file("merges.txt"));
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("0x61"), std::string::npos) << d.status();

  TempDir cfg;
  tiny.write_dir(cfg);
  cfg.write("tokenizer_config.json", "{\"added_tokens_decoder\": {\"x\": {\"content\": \"<a>\"}}}");
  auto e = BpeTokenizer::load_dir(cfg.path());
  EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument) << e.status();
  cfg.write("tokenizer_config.json", "{\"added_tokens_decoder\": {\"300\": {\"special\": true}}}");
  auto f = BpeTokenizer::load_dir(cfg.path());
  EXPECT_EQ(f.status().code(), StatusCode::kInvalidArgument) << f.status();
  cfg.write("tokenizer_config.json", "not json");
  auto g = BpeTokenizer::load_dir(cfg.path());
  EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument) << g.status();
}

TEST(BpeTokenizerTest, DecodeOfUnknownIdIsOutOfRange) {
  TempDir dir;
  BpeTokenizer tok = load_tiny(dir);
  for (int32_t bad : {-1, 299, 302, 1 << 20}) {
    auto s = tok.decode({'a', bad});
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.status().code(), StatusCode::kOutOfRange);
    EXPECT_NE(s.status().message().find(std::to_string(bad)), std::string::npos) << s.status();
  }
  EXPECT_EQ(tok.id_to_token(299).status().code(), StatusCode::kOutOfRange);
}

TEST(BpeTokenizerTest, Gpt2FolderWithoutConfigTreatsEndOfTextAsSpecial) {
  TempDir dir;
  TinyBpe tiny;
  tiny.tokens.push_back("<|endoftext|>");
  dir.write("vocab.json", tiny.vocab_json());
  dir.write("merges.txt", tiny.merges_txt(true));
  auto tok = BpeTokenizer::load_dir(dir.path());
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto eot = static_cast<int32_t>(tiny.tokens.size() - 1);
  EXPECT_EQ(tok->eos_id(), std::optional<int32_t>(eot));
  EXPECT_EQ(tok->encode("ab<|endoftext|>").value(), (std::vector<int32_t>{tiny.id("ab"), eot}));
}

TEST(BpeTokenizerTest, ConcurrentEncodesAgree) {
  TempDir dir;
  BpeTokenizer tok = load_tiny(dir);
  const std::string text = "hello world, hello abc 1212 hello\n\n  world";
  const std::vector<int32_t> want = tok.encode(text).value();
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) ok[static_cast<size_t>(t)] += tok.encode(text).value() == want;
    });
  }
  for (auto& th : threads) th.join();
  for (int v : ok) EXPECT_EQ(v, 200);
}

// ---------------------------------------------------------------------------------------------
// llama2.c tokenizer.bin.

struct TinySp {
  std::vector<std::pair<std::string, float>> pieces;
  TinySp() {
    pieces = {{"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}};
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
      pieces.emplace_back(buf, 0.0f);
    }
    for (const char* p : {" ", "a", "b", "c", "\xC3\xA9"}) pieces.emplace_back(p, -1000.0f);
    pieces.emplace_back(" a", -1.0f);   // 264
    pieces.emplace_back("ab", -2.0f);   // 265
    pieces.emplace_back(" ab", -3.0f);  // 266
    pieces.emplace_back("bc", -1.0f);   // 267: ties with " a"
    pieces.emplace_back("abc", -0.5f);  // 268
  }
  int32_t id(const std::string& p) const {
    for (size_t i = 0; i < pieces.size(); ++i)
      if (pieces[i].first == p) return static_cast<int32_t>(i);
    return -1;
  }
  std::string bytes(int32_t max_len = 8) const {
    std::string out(reinterpret_cast<const char*>(&max_len), 4);
    for (const auto& [p, score] : pieces) {
      auto len = static_cast<int32_t>(p.size());
      out.append(reinterpret_cast<const char*>(&score), 4);
      out.append(reinterpret_cast<const char*>(&len), 4);
      out += p;
    }
    return out;
  }
};

TEST(SpTokenizerTest, EncodesByScoreOrderedMerges) {
  TempDir dir;
  TinySp sp;
  dir.write("tokenizer.bin", sp.bytes());
  auto tok = SpTokenizer::load(dir.file("tokenizer.bin"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(tok->vocab_size(), static_cast<int32_t>(sp.pieces.size()));
  EXPECT_EQ(tok->max_token_length(), 8);
  // " a" (-1) and "bc" (-1) tie and the leftmost merges first; then "bc" (-1) beats " ab" (-3).
  EXPECT_EQ(tok->encode("abc", true, true).value(),
            (std::vector<int32_t>{SpTokenizer::kBos, sp.id(" a"), sp.id("bc"), SpTokenizer::kEos}));
  EXPECT_EQ(tok->encode("ab").value(), (std::vector<int32_t>{sp.id(" ab")}));
  EXPECT_TRUE(tok->encode("").value().empty());
  // Byte fallback for code points that are not pieces: € is E2 82 AC.
  EXPECT_EQ(tok->encode("\xE2\x82\xAC").value(),
            (std::vector<int32_t>{sp.id(" "), 0xE2 + 3, 0x82 + 3, 0xAC + 3}));
  std::mt19937 rng(3);
  const char* alphabet[] = {"a", "b", "c", " ", "\xC3\xA9", "\xE2\x82\xAC", "x"};
  for (int i = 0; i < 200; ++i) {
    std::string text;
    for (int k = static_cast<int>(rng() % 12); k > 0; --k) text += alphabet[rng() % 7];
    EXPECT_EQ(tok->encode(text).value(), naive_llama2c_encode(*tok, text, /*add_bos=*/false)) << "'" << text << "'";
  }
}

TEST(SpTokenizerTest, DecodeDropsTheSpaceAfterBosAndMapsBytes) {
  TempDir dir;
  TinySp sp;
  dir.write("tokenizer.bin", sp.bytes());
  auto tok = SpTokenizer::load(dir.file("tokenizer.bin"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  for (const std::string text : {"abc", "a b c", "\xE2\x82\xAC a\xC3\xA9", "  ab", "x\ny"}) {
    auto ids = tok->encode(text, /*add_bos=*/true).value();
    EXPECT_EQ(tok->decode(ids).value(), text);
    // Generated text after a BOS prompt decodes with prev_id = BOS.
    std::vector<int32_t> rest(ids.begin() + 1, ids.end());
    EXPECT_EQ(tok->decode(rest, SpTokenizer::kBos).value(), text);
    EXPECT_EQ(tok->decode(rest).value(), " " + text);
  }
  EXPECT_EQ(tok->decode_piece(SpTokenizer::kBos, sp.id(" ab")).value(), "ab");
  EXPECT_EQ(tok->decode_piece(5, sp.id(" ab")).value(), " ab");
  EXPECT_EQ(tok->decode_piece(-1, 0x0A + 3).value(), "\n");
  EXPECT_EQ(tok->decode({1, 2}).value(), "");
  EXPECT_EQ(tok->decode({sp.id("a"), 9999}).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(tok->decode_piece(-1, -3).status().code(), StatusCode::kOutOfRange);
}

TEST(SpTokenizerTest, MalformedFilesFail) {
  TempDir dir;
  TinySp sp;
  EXPECT_EQ(SpTokenizer::load(dir.file("missing.bin")).status().code(), StatusCode::kNotFound);
  std::string bytes = sp.bytes();
  dir.write("truncated.bin", bytes.substr(0, bytes.size() - 2));
  auto t = SpTokenizer::load(dir.file("truncated.bin"));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(t.status().message().find("truncated"), std::string::npos) << t.status();
  dir.write("empty.bin", "");
  EXPECT_EQ(SpTokenizer::load(dir.file("empty.bin")).status().code(), StatusCode::kDataLoss);
  dir.write("toolong.bin", sp.bytes(/*max_len=*/3));  // "<unk>" is longer than 3
  EXPECT_EQ(SpTokenizer::load(dir.file("toolong.bin")).status().code(), StatusCode::kDataLoss);
  dir.write("ok.bin", bytes);
  EXPECT_EQ(SpTokenizer::load(dir.file("ok.bin"), 10000).status().code(), StatusCode::kDataLoss);
  auto first_ten = SpTokenizer::load(dir.file("ok.bin"), 10);
  ASSERT_TRUE(first_ten.ok()) << first_ten.status();
  EXPECT_EQ(first_ten->vocab_size(), 10);
}

// ---------------------------------------------------------------------------------------------
// Chat templates.

TEST(ChatTemplateTest, QwenUsesTheDefaultSystemPromptAndToolTurns) {
  std::vector<ChatMessage> msgs = {{"user", "Hi"}, {"assistant", "Yo"}, {"tool", "r1"}, {"tool", "r2"}};
  EXPECT_EQ(render_chat(ChatFormat::kQwen25Instruct, msgs, true).value(),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n"
            "<|im_start|>user\n<tool_response>\nr1\n</tool_response>\n<tool_response>\nr2\n"
            "</tool_response><|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(ChatFormat::kQwen25Instruct, {{"system", "S"}, {"user", "U"}}, false).value(),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n");
}

TEST(ChatTemplateTest, DeepSeekDropsReasoningFromAssistantTurns) {
  std::vector<ChatMessage> msgs = {
      {"system", "S"}, {"user", "Q1"}, {"assistant", "<think>a</think>b</think>A1"}, {"user", "Q2"}};
  EXPECT_EQ(render_chat(ChatFormat::kDeepSeekR1Distill, msgs, true).value(),
            "<｜begin▁of▁sentence｜>S<｜User｜>Q1<｜Assistant｜>A1<｜end▁of▁sentence｜><｜User｜>Q2"
            "<｜Assistant｜><think>\n");
  // After tool outputs no generation prompt is added.
  EXPECT_EQ(render_chat(ChatFormat::kDeepSeekR1Distill, {{"user", "Q"}, {"tool", "o1"}, {"tool", "o2"}},
                        true)
                .value(),
            "<｜begin▁of▁sentence｜><｜User｜>Q<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>o1"
            "<｜tool▁output▁end｜>\n<｜tool▁output▁begin｜>o2<｜tool▁output▁end｜><｜tool▁outputs▁end｜>");
}

TEST(ChatTemplateTest, R1ZeroIsThePlainPaperPrompt) {
  std::string got = render_chat(ChatFormat::kR1Zero, {{"user", "What is 2+3?"}}, true).value();
  EXPECT_EQ(got.rfind("A conversation between User and Assistant.", 0), 0u) << got;
  EXPECT_NE(got.find("<think> reasoning process here </think> <answer> answer here </answer>."),
            std::string::npos);
  const std::string tail = "</answer>.\nUser: What is 2+3?\nAssistant:";
  ASSERT_GE(got.size(), tail.size());
  EXPECT_EQ(got.substr(got.size() - tail.size()), tail);
  EXPECT_EQ(render_chat(ChatFormat::kR1Zero, {{"system", "Solve."}, {"user", "1+1"}, {"assistant", "2"}},
                        false)
                .value(),
            "Solve.\nUser: 1+1\nAssistant: 2");
}

TEST(ChatTemplateTest, UnknownRolesAndFormatsFail) {
  EXPECT_EQ(render_chat(ChatFormat::kQwen25Instruct, {{"robot", "x"}}, true).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(render_chat(ChatFormat::kR1Zero, {{"tool", "x"}}, true).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(render_chat(ChatFormat::kDeepSeekR1Distill, {}, true).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(parse_chat_format("Qwen2.5-Instruct").value(), ChatFormat::kQwen25Instruct);
  EXPECT_EQ(parse_chat_format("deepseek-r1-distill-qwen").value(), ChatFormat::kDeepSeekR1Distill);
  EXPECT_EQ(parse_chat_format("r1-zero").value(), ChatFormat::kR1Zero);
  EXPECT_FALSE(parse_chat_format("llama-2").ok());
  EXPECT_EQ(chat_end_of_turn(ChatFormat::kQwen25Instruct), "<|im_end|>");
}

}  // namespace
}  // namespace grpo::runtime
