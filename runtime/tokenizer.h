// TaskTokenizer: the small vocabulary of the demo's reasoning task.
//
// Characters of arithmetic prompts and traces map to one id each; the R1 tags <think>, </think>,
// <answer>, </answer> and the control tokens <pad>, <bos>, <eos> are single special tokens. Encoding
// text with a character outside the vocabulary fails with the character and its position; decoding
// an id outside the vocabulary fails too. Immutable after construction; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace grpo::runtime {

class TaskTokenizer {
 public:
  static constexpr int32_t kPad = 0;
  static constexpr int32_t kBos = 1;
  static constexpr int32_t kEos = 2;
  static constexpr int32_t kThinkOpen = 3;
  static constexpr int32_t kThinkClose = 4;
  static constexpr int32_t kAnswerOpen = 5;
  static constexpr int32_t kAnswerClose = 6;

  TaskTokenizer();

  int32_t vocab_size() const { return static_cast<int32_t>(pieces_.size()); }
  // Text to ids; special-token spellings ("<think>", "<eos>", ...) become their ids.
  StatusOr<std::vector<int32_t>> encode(std::string_view text) const;
  // Ids to text; control tokens <pad>/<bos> are dropped when skip_control is true.
  StatusOr<std::string> decode(const std::vector<int32_t>& ids, bool skip_control = true) const;
  const std::string& piece(int32_t id) const { return pieces_.at(static_cast<size_t>(id)); }

 private:
  std::vector<std::string> pieces_;
  int32_t char_to_id_[256];
};

}  // namespace grpo::runtime
