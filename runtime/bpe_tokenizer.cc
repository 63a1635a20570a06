#include "runtime/bpe_tokenizer.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>
#include <unicode/uchar.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>

namespace grpo::runtime {

namespace {

using Json = nlohmann::json;

// The pre-tokenizer patterns as Hugging Face tokenizer.json files spell them.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

constexpr size_t kMaxCachedPieceBytes = 128;
// Ids are dense in real vocabularies; a larger gap means a corrupt file (and would cost memory).
constexpr int64_t kMaxIdGap = 1 << 16;
constexpr size_t kMaxCacheEntries = 1 << 16;

// ---------------------------------------------------------------------------------------------
// UTF-8 and character classes.

enum : uint8_t { kLetter = 1, kNumber = 2, kSpace = 4 };  // 0: anything else ("other")
constexpr uint32_t kInvalidCp = 0x110000;                  // a byte of invalid UTF-8

struct CodePoint {
  uint32_t cp;
  uint32_t offset;  // byte offset in the text
  uint8_t cls;
};

uint8_t classify(uint32_t cp) {
  if (cp == kInvalidCp) return 0;
  if (u_isUWhiteSpace(static_cast<UChar32>(cp))) return kSpace;
  uint32_t mask = U_GET_GC_MASK(static_cast<UChar32>(cp));
  if (mask & U_GC_L_MASK) return kLetter;
  if (mask & U_GC_N_MASK) return kNumber;
  return 0;
}

// Decodes one code point at text[i]; returns its byte length (1 with kInvalidCp for a bad byte).
size_t decode_utf8(std::string_view text, size_t i, uint32_t* cp) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  unsigned char c = b(i);
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t len;
  uint32_t v, min;
  if ((c & 0xE0) == 0xC0) {
    len = 2, v = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, v = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, v = c & 0x07, min = 0x10000;
  } else {
    *cp = kInvalidCp;
    return 1;
  }
  if (i + len > text.size()) {
    *cp = kInvalidCp;
    return 1;
  }
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) {
      *cp = kInvalidCp;
      return 1;
    }
    v = (v << 6) | (b(i + k) & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
    *cp = kInvalidCp;
    return 1;
  }
  *cp = v;
  return len;
}

void append_utf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::vector<CodePoint> code_points(std::string_view text) {
  std::vector<CodePoint> out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    uint32_t cp;
    size_t len = decode_utf8(text, i, &cp);
    out.push_back({cp, static_cast<uint32_t>(i), classify(cp)});
    i += len;
  }
  return out;
}

bool valid_utf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    uint32_t cp;
    i += decode_utf8(text, i, &cp);
    if (cp == kInvalidCp) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers: each returns the end (code point index) of the match starting at i; the
// alternatives are tried in the order of the regular expression, as a backtracking engine would.

class Matcher {
 public:
  explicit Matcher(const std::vector<CodePoint>& c) : c_(c), n_(c.size()) {}

  size_t gpt2(size_t i) const {
    if (size_t e = contraction(i, false)) return e;
    if (size_t e = space_then_run(i, kLetter)) return e;
    if (size_t e = space_then_run(i, kNumber)) return e;
    if (size_t e = space_then_other(i)) return e;
    return whitespace(i);
  }

  // max_digits: 1 for Qwen2, 3 for Llama-3.
  size_t qwen2(size_t i, size_t max_digits) const {
    if (size_t e = contraction(i, true)) return e;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (is(i, kLetter)) return run(i, kLetter);
    if (i + 1 < n_ && !is_newline(i) && !is(i, kLetter) && !is(i, kNumber) && is(i + 1, kLetter))
      return run(i + 1, kLetter);
    // \p{N}{1,max_digits}
    if (is(i, kNumber)) {
      size_t e = i;
      while (e < n_ && e - i < max_digits && is(e, kNumber)) ++e;
      return e;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    if (size_t e = space_then_other(i)) {
      while (e < n_ && is_newline(e)) ++e;
      return e;
    }
    if (!is(i, kSpace)) return i + 1;  // unreachable: every code point has a class
    size_t e = run(i, kSpace);
    // \s*[\r\n]+ : up to and including the last newline of the whitespace run.
    for (size_t k = e; k > i; --k) {
      if (is_newline(k - 1)) return k;
    }
    return whitespace(i);
  }

 private:
  bool is(size_t k, uint8_t cls) const { return k < n_ && c_[k].cls == cls; }
  bool is_other(size_t k) const { return k < n_ && c_[k].cls == 0; }
  bool is_newline(size_t k) const { return k < n_ && (c_[k].cp == '\r' || c_[k].cp == '\n'); }
  uint32_t cp(size_t k) const { return k < n_ ? c_[k].cp : 0; }
  size_t run(size_t k, uint8_t cls) const {
    while (k < n_ && c_[k].cls == cls) ++k;
    return k;
  }
  static uint32_t fold(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + ('a' - 'A');
    if (c == 0x17F) return 's';  // LATIN SMALL LETTER LONG S folds to s
    return c;
  }

  // 's|'t|'re|'ve|'m|'ll|'d (case-insensitive when asked); 0 when none matches.
  size_t contraction(size_t i, bool ignore_case) const {
    if (cp(i) != '\'' || i + 1 >= n_) return 0;
    auto at = [&](size_t k) { return ignore_case ? fold(cp(k)) : cp(k); };
    uint32_t a = at(i + 1);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 >= n_) return 0;
    uint32_t b = at(i + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
  }
  // ' ?X+' for X a letter or number class; 0 when none matches.
  size_t space_then_run(size_t i, uint8_t cls) const {
    if (cp(i) == ' ' && is(i + 1, cls)) return run(i + 1, cls);
    if (is(i, cls)) return run(i, cls);
    return 0;
  }
  // ' ?[^\s\p{L}\p{N}]+'; 0 when none matches.
  size_t space_then_other(size_t i) const {
    size_t j = i;
    if (cp(j) == ' ' && is_other(j + 1)) ++j;
    if (!is_other(j)) return 0;
    while (is_other(j)) ++j;
    return j;
  }
  // '\s+(?!\S)|\s+' at a whitespace code point.
  size_t whitespace(size_t i) const {
    size_t e = run(i, kSpace);
    if (e < n_ && e - i >= 2) return e - 1;  // leave the last space to the word that follows
    return e;
  }

  const std::vector<CodePoint>& c_;
  size_t n_;
};

// ---------------------------------------------------------------------------------------------
// GPT-2's byte <-> printable code point table.

struct ByteTable {
  uint32_t byte_to_cp[256];
  int16_t cp_to_byte[512];
  ByteTable() {
    std::fill(std::begin(cp_to_byte), std::end(cp_to_byte), static_cast<int16_t>(-1));
    uint32_t extra = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      byte_to_cp[b] = printable ? b : 256 + extra++;
      cp_to_byte[byte_to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteTable& byte_table() {
  static const ByteTable table;
  return table;
}

std::string bytes_to_token(std::string_view bytes) {
  std::string out;
  for (unsigned char b : bytes) append_utf8(byte_table().byte_to_cp[b], &out);
  return out;
}

// A byte-level spelling back to bytes; code points outside the table are kept as UTF-8.
std::string token_to_bytes(std::string_view token) {
  std::string out;
  for (size_t i = 0; i < token.size();) {
    uint32_t cp;
    size_t len = decode_utf8(token, i, &cp);
    if (cp < 512 && byte_table().cp_to_byte[cp] >= 0) {
      out.push_back(static_cast<char>(byte_table().cp_to_byte[cp]));
    } else {
      out.append(token.substr(i, len));
    }
    i += len;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Files and JSON.

StatusOr<std::string> read_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return not_found("tokenizer file not found: " + path);
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open tokenizer file: " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return data_loss("error reading tokenizer file: " + path);
  return ss.str();
}

StatusOr<Json> read_json(const std::string& path) {
  GRPO_ASSIGN_OR_RETURN(std::string text, read_file(path));
  try {
    return Json::parse(text);
  } catch (const Json::exception& e) {
    return invalid_argument("malformed JSON in " + path + ": " + e.what());
  }
}

bool json_bool(const Json& obj, const char* key, bool fallback) {
  auto it = obj.find(key);
  return (it != obj.end() && it->is_boolean()) ? it->get<bool>() : fallback;
}

// A vocab object {"token": id, ...} into pairs.
StatusOr<std::vector<std::pair<std::string, int32_t>>> parse_vocab(const Json& vocab,
                                                                   const std::string& source) {
  if (!vocab.is_object()) return invalid_argument(source + ": the vocabulary is not a JSON object");
  std::vector<std::pair<std::string, int32_t>> out;
  out.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() >= (int64_t{1} << 30)) {
      return invalid_argument(source + ": token '" + it.key() + "' has an invalid id " +
                              it.value().dump());
    }
    out.emplace_back(it.key(), static_cast<int32_t>(it.value().get<int64_t>()));
  }
  return out;
}

StatusOr<AddedToken> parse_added_token(const Json& t, int64_t id, const std::string& where) {
  if (!t.is_object() || !t.contains("content") || !t["content"].is_string())
    return invalid_argument(where + ": an added token needs a string \"content\"");
  if (id < 0 || id >= (int64_t{1} << 30)) return invalid_argument(where + ": invalid added token id");
  AddedToken tok;
  tok.content = t["content"].get<std::string>();
  tok.id = static_cast<int32_t>(id);
  tok.special = json_bool(t, "special", true);
  tok.lstrip = json_bool(t, "lstrip", false);
  tok.rstrip = json_bool(t, "rstrip", false);
  return tok;
}

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

}  // namespace

// ---------------------------------------------------------------------------------------------

const char* pre_tokenizer_name(PreTokenizer p) {
  switch (p) {
    case PreTokenizer::kGpt2: return "gpt2";
    case PreTokenizer::kQwen2: return "qwen2";
    case PreTokenizer::kLlama3: return "llama3";
  }
  return "?";
}

std::vector<std::string_view> pre_tokenize(PreTokenizer p, std::string_view text) {
  std::vector<CodePoint> cps = code_points(text);
  Matcher m(cps);
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < cps.size()) {
    size_t e;
    switch (p) {
      case PreTokenizer::kGpt2: e = m.gpt2(i); break;
      case PreTokenizer::kQwen2: e = m.qwen2(i, 1); break;
      default: e = m.qwen2(i, 3); break;
    }
    if (e <= i) e = i + 1;  // defensive: always make progress
    size_t begin = cps[i].offset;
    size_t end = e < cps.size() ? cps[e].offset : text.size();
    out.push_back(text.substr(begin, end - begin));
    i = e;
  }
  return out;
}

std::string nfc_normalize(std::string_view text) {
  bool ascii = std::all_of(text.begin(), text.end(),
                           [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (ascii || !valid_utf8(text)) return std::string(text);
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  if (U_FAILURE(status)) return std::string(text);
  icu::StringPiece piece(text.data(), static_cast<int32_t>(text.size()));
  if (nfc->isNormalizedUTF8(piece, status) && U_SUCCESS(status)) return std::string(text);
  status = U_ZERO_ERROR;
  std::string out;
  icu::StringByteSink<std::string> sink(&out);
  nfc->normalizeUTF8(0, piece, sink, nullptr, status);
  if (U_FAILURE(status)) return std::string(text);
  return out;
}

struct BpeTokenizer::MergeCache {
  std::mutex mu;
  std::unordered_map<std::string, std::vector<int32_t>> map;
};

BpeTokenizer::BpeTokenizer() : cache_(std::make_unique<MergeCache>()) {
  std::fill(std::begin(byte_id_), std::end(byte_id_), -1);
  std::fill(std::begin(added_first_byte_), std::end(added_first_byte_), false);
}
BpeTokenizer::BpeTokenizer(BpeTokenizer&&) noexcept = default;
BpeTokenizer& BpeTokenizer::operator=(BpeTokenizer&&) noexcept = default;
BpeTokenizer::~BpeTokenizer() = default;

Status BpeTokenizer::set_vocab(std::vector<std::pair<std::string, int32_t>> vocab,
                               const std::string& source) {
  int32_t max_id = -1;
  for (const auto& [tok, id] : vocab) max_id = std::max(max_id, id);
  if (max_id >= static_cast<int64_t>(vocab.size()) + kMaxIdGap) {
    return invalid_argument(source + ": id " + std::to_string(max_id) + " is far beyond the " +
                            std::to_string(vocab.size()) + " tokens of the vocabulary");
  }
  id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string());
  id_to_bytes_.assign(static_cast<size_t>(max_id + 1), std::string());
  id_kind_.assign(static_cast<size_t>(max_id + 1), 0);
  vocab_.reserve(vocab.size());
  for (auto& [tok, id] : vocab) {
    auto i = static_cast<size_t>(id);
    if (id_kind_[i] != 0) {
      return invalid_argument(source + ": id " + std::to_string(id) + " is used by both '" +
                              id_to_token_[i] + "' and '" + tok + "'");
    }
    id_kind_[i] = 1;
    id_to_bytes_[i] = token_to_bytes(tok);
    id_to_token_[i] = tok;
    vocab_.emplace(std::move(tok), id);
  }
  for (int b = 0; b < 256; ++b) {
    std::string tok = bytes_to_token(std::string(1, static_cast<char>(b)));
    auto it = vocab_.find(tok);
    if (it == vocab_.end()) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "0x%02X", b);
      return invalid_argument(source + ": not a byte-level vocabulary: no token for byte " + hex +
                              " ('" + tok + "')");
    }
    byte_id_[b] = it->second;
  }
  return ok_status();
}

Status BpeTokenizer::add_merge(std::string_view left, std::string_view right,
                               const std::string& where) {
  auto lookup = [&](std::string_view tok) -> std::optional<int32_t> {
    auto it = vocab_.find(std::string(tok));
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
  };
  std::string merged = std::string(left) + std::string(right);
  std::optional<int32_t> a = lookup(left), b = lookup(right), ab = lookup(merged);
  for (auto [name, id] : {std::pair{std::string(left), a}, std::pair{std::string(right), b},
                          std::pair{merged, ab}}) {
    if (!id) {
      return invalid_argument(where + ": merge '" + std::string(left) + " " + std::string(right) +
                              "' references token '" + name + "' that is not in the vocabulary");
    }
  }
  uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(*a)) << 32) | static_cast<uint32_t>(*b);
  merges_.emplace(key, std::pair<int32_t, int32_t>{static_cast<int32_t>(merges_.size()), *ab});
  return ok_status();
}

StatusOr<BpeTokenizer> BpeTokenizer::from_vocab_merges(const std::string& vocab_json_path,
                                                       const std::string& merges_txt_path,
                                                       const BpeOptions& options) {
  BpeTokenizer tok;
  tok.options_ = options;
  GRPO_ASSIGN_OR_RETURN(Json vocab_json, read_json(vocab_json_path));
  GRPO_ASSIGN_OR_RETURN(auto vocab, parse_vocab(vocab_json, vocab_json_path));
  GRPO_RETURN_IF_ERROR(tok.set_vocab(std::move(vocab), vocab_json_path));

  GRPO_ASSIGN_OR_RETURN(std::string merges, read_file(merges_txt_path));
  size_t line_no = 0, pos = 0;
  while (pos < merges.size()) {
    size_t nl = merges.find('\n', pos);
    if (nl == std::string::npos) nl = merges.size();
    std::string_view line(merges.data() + pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    size_t sp = line.find(' ');
    std::string where = merges_txt_path + " line " + std::to_string(line_no);
    if (sp == std::string_view::npos || sp == 0 || sp + 1 >= line.size() ||
        line.find(' ', sp + 1) != std::string_view::npos) {
      return invalid_argument(where + ": expected two tokens separated by one space, got '" +
                              std::string(line) + "'");
    }
    GRPO_RETURN_IF_ERROR(tok.add_merge(line.substr(0, sp), line.substr(sp + 1), where));
  }
  return tok;
}

StatusOr<BpeTokenizer> BpeTokenizer::from_tokenizer_json(const std::string& path) {
  GRPO_ASSIGN_OR_RETURN(Json j, read_json(path));
  if (!j.is_object()) return invalid_argument(path + ": not a JSON object");
  try {
    BpeTokenizer tok;
    const Json& model = j.contains("model") ? j["model"] : Json();
    if (!model.is_object()) return invalid_argument(path + ": missing \"model\"");
    if (model.contains("type") && model["type"] != "BPE") {
      return unimplemented(path + ": model type " + model["type"].dump() +
                           " is not supported (byte-level BPE only)");
    }
    tok.options_.ignore_merges = json_bool(model, "ignore_merges", false);

    // Normalizer: none or NFC (possibly inside a Sequence).
    const Json& norm = j.contains("normalizer") ? j["normalizer"] : Json();
    std::vector<Json> norms;
    if (norm.is_object() && norm.value("type", "") == "Sequence" && norm.contains("normalizers")) {
      for (const auto& n : norm["normalizers"]) norms.push_back(n);
    } else if (!norm.is_null()) {
      norms.push_back(norm);
    }
    for (const auto& n : norms) {
      std::string type = n.is_object() ? n.value("type", "") : "";
      if (type != "NFC") return unimplemented(path + ": normalizer " + n.dump() + " is not supported");
      tok.options_.nfc = true;
    }

    // Pre-tokenizer: ByteLevel (GPT-2 regex) or Split(known regex) followed by ByteLevel.
    const Json& pre = j.contains("pre_tokenizer") ? j["pre_tokenizer"] : Json();
    std::vector<Json> pres;
    if (pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers")) {
      for (const auto& p : pre["pretokenizers"]) pres.push_back(p);
    } else if (!pre.is_null()) {
      pres.push_back(pre);
    }
    bool have_split = false, byte_level = false;
    for (const auto& p : pres) {
      std::string type = p.is_object() ? p.value("type", "") : "";
      if (type == "ByteLevel") {
        byte_level = true;
        tok.options_.add_prefix_space = json_bool(p, "add_prefix_space", false);
        if (json_bool(p, "use_regex", true)) {
          if (have_split) return unimplemented(path + ": a Split and a regex ByteLevel together");
          have_split = true;
          tok.options_.pre_tokenizer = PreTokenizer::kGpt2;
        }
      } else if (type == "Split" && !have_split) {
        std::string regex;
        if (p.contains("pattern") && p["pattern"].is_object() && p["pattern"].contains("Regex"))
          regex = p["pattern"]["Regex"].get<std::string>();
        if (regex == kGpt2Pattern) {
          tok.options_.pre_tokenizer = PreTokenizer::kGpt2;
        } else if (regex == kQwen2Pattern) {
          tok.options_.pre_tokenizer = PreTokenizer::kQwen2;
        } else if (regex == kLlama3Pattern) {
          tok.options_.pre_tokenizer = PreTokenizer::kLlama3;
        } else {
          return unimplemented(path + ": pre-tokenizer pattern " + p["pattern"].dump() +
                               " is not one of the GPT-2, Qwen2 or Llama-3 patterns");
        }
        have_split = true;
      } else {
        return unimplemented(path + ": pre-tokenizer " + p.dump() + " is not supported");
      }
    }
    if (!byte_level || !have_split)
      return unimplemented(path + ": not a byte-level BPE with a supported pre-tokenizer");

    GRPO_ASSIGN_OR_RETURN(auto vocab, parse_vocab(model.contains("vocab") ? model["vocab"] : Json(),
                                                  path + " model.vocab"));
    GRPO_RETURN_IF_ERROR(tok.set_vocab(std::move(vocab), path));
    const Json& merges = model.contains("merges") ? model["merges"] : Json();
    if (!merges.is_array()) return invalid_argument(path + ": model.merges is not an array");
    for (size_t i = 0; i < merges.size(); ++i) {
      std::string where = path + " model.merges[" + std::to_string(i) + "]";
      const Json& m = merges[i];
      if (m.is_string()) {
        std::string s = m.get<std::string>();
        size_t sp = s.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 >= s.size() ||
            s.find(' ', sp + 1) != std::string::npos)
          return invalid_argument(where + ": expected two tokens separated by one space");
        GRPO_RETURN_IF_ERROR(tok.add_merge(std::string_view(s).substr(0, sp),
                                           std::string_view(s).substr(sp + 1), where));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        GRPO_RETURN_IF_ERROR(
            tok.add_merge(m[0].get<std::string>(), m[1].get<std::string>(), where));
      } else {
        return invalid_argument(where + ": expected \"a b\" or [\"a\", \"b\"]");
      }
    }
    if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
      if (!j["added_tokens"].is_array()) return invalid_argument(path + ": added_tokens is not an array");
      for (const auto& t : j["added_tokens"]) {
        if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer())
          return invalid_argument(path + ": an added token needs an integer \"id\"");
        GRPO_ASSIGN_OR_RETURN(AddedToken added,
                              parse_added_token(t, t["id"].get<int64_t>(), path + " added_tokens"));
        GRPO_RETURN_IF_ERROR(tok.add_token(added));
      }
    }
    return tok;
  } catch (const Json::exception& e) {
    return invalid_argument(path + ": unexpected structure: " + e.what());
  }
}

Status BpeTokenizer::load_tokenizer_config(const std::string& path) {
  GRPO_ASSIGN_OR_RETURN(Json j, read_json(path));
  if (!j.is_object()) return invalid_argument(path + ": not a JSON object");
  try {
    if (j.contains("added_tokens_decoder") && !j["added_tokens_decoder"].is_null()) {
      const Json& dec = j["added_tokens_decoder"];
      if (!dec.is_object()) return invalid_argument(path + ": added_tokens_decoder is not an object");
      for (auto it = dec.begin(); it != dec.end(); ++it) {
        int64_t id = -1;
        const std::string& key = it.key();
        if (key.empty() || key.size() > 9 ||
            !std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; }))
          return invalid_argument(path + ": added_tokens_decoder key '" + key + "' is not an id");
        id = std::stoll(key);
        GRPO_ASSIGN_OR_RETURN(AddedToken added,
                              parse_added_token(it.value(), id, path + " added token " + key));
        GRPO_RETURN_IF_ERROR(add_token(added));
      }
    }
    for (auto [key, slot] : {std::pair{"eos_token", &eos_id_}, std::pair{"bos_token", &bos_id_}}) {
      if (!j.contains(key) || j[key].is_null()) continue;
      const Json& v = j[key];
      std::string name;
      if (v.is_string()) {
        name = v.get<std::string>();
      } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
        name = v["content"].get<std::string>();
      } else {
        return invalid_argument(path + ": " + key + " is neither a string nor {\"content\": ...}");
      }
      GRPO_ASSIGN_OR_RETURN(std::optional<int32_t> id, resolve_token_name(name));
      if (!id) return invalid_argument(path + ": " + key + " '" + name + "' is not a known token");
      *slot = id;
    }
  } catch (const Json::exception& e) {
    return invalid_argument(path + ": unexpected structure: " + e.what());
  }
  return ok_status();
}

// A named special token (eos/bos): an added token, or a vocabulary entry that becomes one.
StatusOr<std::optional<int32_t>> BpeTokenizer::resolve_token_name(const std::string& name) {
  for (const auto& t : added_) {
    if (t.content == name) return std::optional<int32_t>(t.id);
  }
  auto it = vocab_.find(name);
  if (it == vocab_.end()) return std::optional<int32_t>();
  GRPO_RETURN_IF_ERROR(add_token({name, it->second, true, false, false}));
  return std::optional<int32_t>(it->second);
}

Status BpeTokenizer::add_token(const AddedToken& token) {
  if (token.content.empty()) return invalid_argument("added token with id " + std::to_string(token.id) + " is empty");
  if (token.id < 0 || token.id >= (1 << 30))
    return invalid_argument("added token '" + token.content + "' has invalid id " + std::to_string(token.id));
  if (token.id >= static_cast<int64_t>(vocab_size()) + kMaxIdGap) {
    return invalid_argument("added token '" + token.content + "' has id " + std::to_string(token.id) +
                            ", far beyond the vocabulary size " + std::to_string(vocab_size()));
  }
  auto id = static_cast<size_t>(token.id);
  for (auto& t : added_) {
    if (t.content == token.content) {
      if (t.id != token.id) {
        return invalid_argument("added token '" + token.content + "' already has id " +
                                std::to_string(t.id) + ", not " + std::to_string(token.id));
      }
      t = token;
      id_kind_[id] = token.special ? 3 : 2;
      return ok_status();
    }
  }
  if (id < id_kind_.size() && id_kind_[id] != 0) {
    if (id_to_bytes_[id] != token.content) {
      return invalid_argument("added token '" + token.content + "' has id " + std::to_string(id) +
                              ", which already belongs to '" + id_to_bytes_[id] + "'");
    }
  }
  if (id >= id_kind_.size()) {
    id_to_token_.resize(id + 1);
    id_to_bytes_.resize(id + 1);
    id_kind_.resize(id + 1, 0);
  }
  if (id_kind_[id] == 0) id_to_token_[id] = token.content;
  id_to_bytes_[id] = token.content;
  id_kind_[id] = token.special ? 3 : 2;
  added_.push_back(token);
  added_by_length_.push_back(added_.size() - 1);
  std::stable_sort(added_by_length_.begin(), added_by_length_.end(), [&](size_t a, size_t b) {
    return added_[a].content.size() > added_[b].content.size();
  });
  added_first_byte_[static_cast<unsigned char>(token.content[0])] = true;
  return ok_status();
}

StatusOr<BpeTokenizer> BpeTokenizer::load_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return not_found("tokenizer folder not found: " + dir);
  fs::path root(dir);
  std::string config_path = (root / "tokenizer_config.json").string();
  bool have_config = fs::is_regular_file(config_path, ec);
  std::optional<BpeTokenizer> tok;
  if (fs::is_regular_file(root / "tokenizer.json", ec)) {
    GRPO_ASSIGN_OR_RETURN(BpeTokenizer t, from_tokenizer_json((root / "tokenizer.json").string()));
    tok.emplace(std::move(t));
  } else {
    BpeOptions options;
    if (have_config) {
      GRPO_ASSIGN_OR_RETURN(Json config, read_json(config_path));
      std::string cls = config.is_object() && config.contains("tokenizer_class") &&
                                config["tokenizer_class"].is_string()
                            ? config["tokenizer_class"].get<std::string>()
                            : "";
      if (cls.rfind("Qwen2Tokenizer", 0) == 0) {
        options.pre_tokenizer = PreTokenizer::kQwen2;
        options.nfc = true;
      }
      if (config.is_object()) options.add_prefix_space = json_bool(config, "add_prefix_space", false);
    }
    GRPO_ASSIGN_OR_RETURN(BpeTokenizer t,
                          from_vocab_merges((root / "vocab.json").string(),
                                            (root / "merges.txt").string(), options));
    tok.emplace(std::move(t));
  }
  if (have_config) {
    GRPO_RETURN_IF_ERROR(tok->load_tokenizer_config(config_path));
  } else if (!tok->eos_id_) {
    GRPO_ASSIGN_OR_RETURN(tok->eos_id_, tok->resolve_token_name("<|endoftext|>"));
  }
  return std::move(*tok);
}

// ---------------------------------------------------------------------------------------------
// Encoding.

void BpeTokenizer::encode_piece(std::string_view bytes, std::vector<int32_t>* out) const {
  if (bytes.size() == 1) {
    out->push_back(byte_id_[static_cast<unsigned char>(bytes[0])]);
    return;
  }
  bool cacheable = bytes.size() <= kMaxCachedPieceBytes;
  std::string key;
  if (cacheable) {
    key.assign(bytes);
    std::lock_guard<std::mutex> lock(cache_->mu);
    auto it = cache_->map.find(key);
    if (it != cache_->map.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  if (options_.ignore_merges) {
    auto it = vocab_.find(bytes_to_token(bytes));
    if (it != vocab_.end()) ids.push_back(it->second);
  }
  if (ids.empty()) {
    // Symbols in a doubly linked list; candidate merges in a heap ordered by (rank, position).
    struct Sym {
      int32_t id;
      int32_t prev, next;
    };
    const auto n = static_cast<int32_t>(bytes.size());
    std::vector<Sym> syms(static_cast<size_t>(n));
    for (int32_t i = 0; i < n; ++i)
      syms[static_cast<size_t>(i)] = {byte_id_[static_cast<unsigned char>(bytes[static_cast<size_t>(i)])],
                                      i - 1, i + 1 < n ? i + 1 : -1};
    struct Cand {
      int32_t rank, pos, left_id, right_id, merged;
      bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
    auto push = [&](int32_t left) {
      if (left < 0) return;
      int32_t right = syms[static_cast<size_t>(left)].next;
      if (right < 0) return;
      int32_t a = syms[static_cast<size_t>(left)].id, b = syms[static_cast<size_t>(right)].id;
      auto it = merges_.find((static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
                             static_cast<uint32_t>(b));
      if (it != merges_.end()) heap.push({it->second.first, left, a, b, it->second.second});
    };
    for (int32_t i = 0; i + 1 < n; ++i) push(i);
    while (!heap.empty()) {
      Cand c = heap.top();
      heap.pop();
      Sym& left = syms[static_cast<size_t>(c.pos)];
      if (left.id != c.left_id || left.next < 0) continue;  // stale
      Sym& right = syms[static_cast<size_t>(left.next)];
      if (right.id != c.right_id) continue;  // stale
      left.id = c.merged;
      right.id = -1;
      left.next = right.next;
      if (right.next >= 0) syms[static_cast<size_t>(right.next)].prev = c.pos;
      push(left.prev);
      push(c.pos);
    }
    for (int32_t i = 0; i >= 0; i = syms[static_cast<size_t>(i)].next)
      ids.push_back(syms[static_cast<size_t>(i)].id);
  }
  out->insert(out->end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_->mu);
    if (cache_->map.size() >= kMaxCacheEntries) cache_->map.clear();
    cache_->map.emplace(std::move(key), std::move(ids));
  }
}

Status BpeTokenizer::encode_segment(std::string_view segment, std::vector<int32_t>* out) const {
  if (segment.empty()) return ok_status();
  std::string text;
  if (options_.add_prefix_space && segment[0] != ' ') text.push_back(' ');
  if (options_.nfc) {
    text += nfc_normalize(segment);
  } else {
    text.append(segment);
  }
  for (std::string_view piece : pre_tokenize(options_.pre_tokenizer, text)) encode_piece(piece, out);
  return ok_status();
}

StatusOr<std::vector<int32_t>> BpeTokenizer::encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> ids;
  size_t seg_start = 0, i = 0;
  if (!added_.empty()) {
    while (i < text.size()) {
      const AddedToken* match = nullptr;
      if (added_first_byte_[static_cast<unsigned char>(text[i])]) {
        for (size_t k : added_by_length_) {
          const AddedToken& t = added_[k];
          if (t.special && !parse_special) continue;
          if (text.compare(i, t.content.size(), t.content) == 0) {
            match = &t;
            break;
          }
        }
      }
      if (!match) {
        ++i;
        continue;
      }
      size_t start = i, end = i + match->content.size();
      if (match->lstrip) {
        while (start > seg_start && is_ascii_space(text[start - 1])) --start;
      }
      if (match->rstrip) {
        while (end < text.size() && is_ascii_space(text[end])) ++end;
      }
      GRPO_RETURN_IF_ERROR(encode_segment(text.substr(seg_start, start - seg_start), &ids));
      ids.push_back(match->id);
      seg_start = i = end;
    }
  }
  GRPO_RETURN_IF_ERROR(encode_segment(text.substr(seg_start), &ids));
  return ids;
}

// ---------------------------------------------------------------------------------------------
// Decoding and lookups.

StatusOr<std::string> BpeTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    int32_t id = ids[i];
    if (id < 0 || id >= vocab_size() || id_kind_[static_cast<size_t>(id)] == 0) {
      return out_of_range("token id " + std::to_string(id) + " at position " + std::to_string(i) +
                          " is not in the vocabulary (size " + std::to_string(vocab_size()) + ")");
    }
    if (skip_special && id_kind_[static_cast<size_t>(id)] == 3) continue;
    out += id_to_bytes_[static_cast<size_t>(id)];
  }
  return out;
}

std::optional<int32_t> BpeTokenizer::token_to_id(std::string_view token) const {
  for (const auto& t : added_) {
    if (t.content == token) return t.id;
  }
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

StatusOr<std::string> BpeTokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= vocab_size() || id_kind_[static_cast<size_t>(id)] == 0)
    return out_of_range("token id " + std::to_string(id) + " is not in the vocabulary");
  return id_to_token_[static_cast<size_t>(id)];
}

bool BpeTokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && id_kind_[static_cast<size_t>(id)] == 3;
}

}  // namespace grpo::runtime
