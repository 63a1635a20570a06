// SpTokenizer: the SentencePiece-derived vocabulary of llama2.c models, read from `tokenizer.bin`.
//
// File format (little-endian): int32 max_token_length, then for every token: float32 score,
// int32 byte length, the bytes. The vocabulary size is not stored; load() reads to the end of the
// file or exactly `vocab_size` tokens. Ids 0, 1, 2 are <unk>, BOS and EOS; pieces spelled `<0xXX>`
// stand for one raw byte (SentencePiece byte fallback).
//
// encode() is llama2.c's: an optional BOS, a dummy-prefix " " token for non-empty text, one token per
// UTF-8 code point (or its bytes' <0xXX> tokens when the code point is not a piece), then repeated
// merges of the adjacent pair whose concatenation is a piece with the highest score (leftmost on a
// tie), then an optional EOS. decode() follows llama2.c's rule that the piece after BOS loses a
// leading space, and turns <0xXX> pieces into their bytes.
//
// Immutable after load(); every method is safe to call from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/status.h"

namespace grpo::runtime {

class SpTokenizer {
 public:
  static constexpr int32_t kUnk = 0;
  static constexpr int32_t kBos = 1;
  static constexpr int32_t kEos = 2;

  // vocab_size < 0: every token in the file. A short, truncated or inconsistent file is DATA_LOSS.
  static StatusOr<SpTokenizer> load(const std::string& path, int32_t vocab_size = -1);

  int32_t vocab_size() const { return static_cast<int32_t>(pieces_.size()); }
  int32_t max_token_length() const { return max_token_length_; }
  int32_t bos_id() const { return kBos; }
  int32_t eos_id() const { return kEos; }

  StatusOr<std::vector<int32_t>> encode(std::string_view text, bool add_bos = false,
                                        bool add_eos = false) const;
  // Text of `ids`. `prev_id` is the token before ids[0] (pass kBos for text generated right after
  // a BOS prompt); BOS and EOS themselves produce no text.
  StatusOr<std::string> decode(const std::vector<int32_t>& ids, int32_t prev_id = -1) const;
  // llama2.c's decode(prev, token) for one token, control pieces included verbatim.
  StatusOr<std::string> decode_piece(int32_t prev_id, int32_t id) const;

  const std::string& piece(int32_t id) const { return pieces_.at(static_cast<size_t>(id)); }
  float score(int32_t id) const { return scores_.at(static_cast<size_t>(id)); }

 private:
  SpTokenizer() = default;

  int32_t max_token_length_ = 0;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<int16_t> piece_byte_;  // the byte a <0xXX> piece stands for, -1 otherwise
  int32_t byte_id_[256];             // the <0xXX> piece of each byte, -1 if missing
  std::unordered_map<std::string, int32_t> piece_to_id_;  // first id of each piece
};

}  // namespace grpo::runtime
