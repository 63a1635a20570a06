// BpeTokenizer: byte-level BPE as GPT-2, Qwen2/Qwen2.5, DeepSeek-R1-Distill-Qwen and Llama-3 use it.
//
// Loads Hugging Face files: `vocab.json` + `merges.txt` (with or without a `#version` header line),
// or a `tokenizer.json` (model type BPE), plus added/special tokens with their ids from
// `tokenizer_config.json` (`added_tokens_decoder`) or from `tokenizer.json` (`added_tokens`).
//
// Encoding, in order: (1) added tokens are cut out of the raw text (leftmost, longest match first;
// special ones only when `parse_special` is true, non-special ones always, as Hugging Face does);
// (2) each remaining segment is NFC-normalised when the tokenizer asks for it (Qwen2); (3) it is
// split by the pre-tokenizer (the GPT-2, Qwen2 or Llama-3 regular expression, implemented by hand
// over Unicode code points with ICU character properties); (4) each piece's bytes are mapped to
// GPT-2's printable byte alphabet and merged by merge rank. Any byte string can be encoded (bytes of
// invalid UTF-8 count as symbols; NFC is skipped for text that is not valid UTF-8), and decode()
// returns exactly the bytes that were encoded (up to NFC when it applies).
//
// Errors are Status values: missing files (NOT_FOUND), malformed JSON or merges (INVALID_ARGUMENT,
// with file and line), a merge that names a token missing from the vocabulary, ids outside the
// vocabulary (OUT_OF_RANGE).
//
// Thread safety: loading and add_token() are single-threaded; afterwards every const method may be
// called from any number of threads (the merge cache is guarded by its own mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/status.h"

namespace grpo::runtime {

// The pre-tokenizer regular expressions this tokenizer implements.
enum class PreTokenizer {
  kGpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kQwen2,   // (?i:'s|...|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|...
  kLlama3,  // as kQwen2 with \p{N}{1,3}
};

const char* pre_tokenizer_name(PreTokenizer p);

// Splits `text` as the pre-tokenizer's regular expression would (every byte ends up in exactly one
// piece; pieces are returned in order as views into `text`). Exposed for tests.
std::vector<std::string_view> pre_tokenize(PreTokenizer p, std::string_view text);

// NFC-normalises UTF-8 text with ICU; text that is not valid UTF-8 is returned unchanged.
std::string nfc_normalize(std::string_view text);

// A token outside the BPE merges: matched verbatim in the text before pre-tokenization.
struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = true;  // special tokens are parsed only when allowed and skippable on decode
  bool lstrip = false;  // the match swallows whitespace on its left
  bool rstrip = false;  // the match swallows whitespace on its right
};

struct BpeOptions {
  PreTokenizer pre_tokenizer = PreTokenizer::kGpt2;
  bool nfc = false;               // NFC-normalise text before pre-tokenization (Qwen2)
  bool add_prefix_space = false;  // prepend ' ' to each segment not starting with one (GPT-2 option)
  bool ignore_merges = false;     // a piece that is itself a vocabulary token is not merged (Llama-3)
};

class BpeTokenizer {
 public:
  // Loads a Hugging Face tokenizer folder: `tokenizer.json` when present, otherwise `vocab.json` +
  // `merges.txt`; then the added tokens and bos/eos names of `tokenizer_config.json` when present.
  // Without tokenizer.json the pre-tokenizer follows `tokenizer_class` (Qwen2Tokenizer: Qwen2 + NFC;
  // otherwise GPT-2). Without any config, a vocabulary entry `<|endoftext|>` becomes the special
  // end-of-text token, as Hugging Face's GPT-2 tokenizer does.
  static StatusOr<BpeTokenizer> load_dir(const std::string& dir);
  static StatusOr<BpeTokenizer> from_vocab_merges(const std::string& vocab_json_path,
                                                  const std::string& merges_txt_path,
                                                  const BpeOptions& options = {});
  // A `tokenizer.json`: model (BPE vocab + merges, both merge spellings), added_tokens, NFC
  // normalizer, ByteLevel / Split pre-tokenizer (patterns of the three PreTokenizer kinds only).
  static StatusOr<BpeTokenizer> from_tokenizer_json(const std::string& path);

  BpeTokenizer(BpeTokenizer&&) noexcept;
  BpeTokenizer& operator=(BpeTokenizer&&) noexcept;
  ~BpeTokenizer();

  // Reads `added_tokens_decoder`, `eos_token` and `bos_token` of a tokenizer_config.json.
  Status load_tokenizer_config(const std::string& path);
  // Registers an added token. Its id may be new or name the vocabulary entry of the same content.
  Status add_token(const AddedToken& token);

  // Text to ids. No BOS/EOS is added. With parse_special false, special tokens' spellings in the
  // text are encoded as ordinary text.
  StatusOr<std::vector<int32_t>> encode(std::string_view text, bool parse_special = true) const;
  // Ids to bytes; skip_special drops special added tokens.
  StatusOr<std::string> decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  // One more than the largest id in use (vocabulary and added tokens).
  int32_t vocab_size() const { return static_cast<int32_t>(id_to_token_.size()); }
  // The id of a vocabulary token (byte-level spelling, e.g. "Ġthe") or of an added token.
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The byte-level spelling of a vocabulary token, or an added token's content.
  StatusOr<std::string> id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;
  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }
  const BpeOptions& options() const { return options_; }
  const std::vector<AddedToken>& added_tokens() const { return added_; }

 private:
  struct MergeCache;
  BpeTokenizer();

  Status set_vocab(std::vector<std::pair<std::string, int32_t>> vocab, const std::string& source);
  Status add_merge(std::string_view left, std::string_view right, const std::string& where);
  void encode_piece(std::string_view bytes, std::vector<int32_t>* out) const;
  Status encode_segment(std::string_view segment, std::vector<int32_t>* out) const;
  StatusOr<std::optional<int32_t>> resolve_token_name(const std::string& name);

  BpeOptions options_;
  std::unordered_map<std::string, int32_t> vocab_;     // byte-level spelling -> id
  std::vector<std::string> id_to_token_;               // empty where an id has no token
  std::vector<std::string> id_to_bytes_;               // decoded bytes of each id
  std::vector<int8_t> id_kind_;                        // 0 none, 1 vocabulary, 2 added, 3 special
  int32_t byte_id_[256];                               // id of each single-byte token, -1 if none
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (left,right) -> rank, id
  std::vector<AddedToken> added_;
  std::vector<size_t> added_by_length_;                // indices into added_, longest first
  bool added_first_byte_[256];                         // some added token starts with this byte
  std::optional<int32_t> bos_id_;
  std::optional<int32_t> eos_id_;
  std::unique_ptr<MergeCache> cache_;
};

}  // namespace grpo::runtime
