#include "runtime/tokenizer.h"

namespace grpo::runtime {
namespace {
const char* kSpecial[] = {"<pad>", "<bos>", "<eos>", "<think>", "</think>", "<answer>", "</answer>"};
const char kChars[] = "0123456789+-*=,() c";
}  // namespace

TaskTokenizer::TaskTokenizer() {
  for (const char* s : kSpecial) pieces_.emplace_back(s);
  for (int i = 0; i < 256; ++i) char_to_id_[i] = -1;
  for (const char* c = kChars; *c; ++c) {
    char_to_id_[static_cast<unsigned char>(*c)] = static_cast<int32_t>(pieces_.size());
    pieces_.emplace_back(1, *c);
  }
}

StatusOr<std::vector<int32_t>> TaskTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '<') {
      bool matched = false;
      for (int32_t s = 0; s < static_cast<int32_t>(std::size(kSpecial)); ++s) {
        std::string_view sp(kSpecial[s]);
        if (text.substr(i, sp.size()) == sp) {
          ids.push_back(s);
          i += sp.size();
          matched = true;
          break;
        }
      }
      if (matched) continue;
    }
    int32_t id = char_to_id_[static_cast<unsigned char>(text[i])];
    if (id < 0) {
      return invalid_argument("tokenizer: character '" + std::string(1, text[i]) +
                              "' at position " + std::to_string(i) + " is not in the vocabulary");
    }
    ids.push_back(id);
    ++i;
  }
  return ids;
}

StatusOr<std::string> TaskTokenizer::decode(const std::vector<int32_t>& ids,
                                            bool skip_control) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    int32_t id = ids[i];
    if (id < 0 || id >= vocab_size())
      return invalid_argument("tokenizer: id " + std::to_string(id) + " at position " +
                              std::to_string(i) + " is outside the vocabulary of " +
                              std::to_string(vocab_size()));
    if (skip_control && (id == kPad || id == kBos)) continue;
    out += pieces_[static_cast<size_t>(id)];
  }
  return out;
}

}  // namespace grpo::runtime
