// TextTokenizer: one interface over the tokenizers a model directory can bring, for the programs
// (`grpo generate`, `grpo tokenize`) and the engine's stop strings.
//
// load_text_tokenizer(PATH) accepts a Hugging Face tokenizer folder (tokenizer.json, or vocab.json +
// merges.txt, with tokenizer_config.json: byte-level BPE), a llama2.c `tokenizer.bin`-format file, or
// a folder holding one (`tokenizer.bin` or `tok*.bin`, as the stories models ship). Errors name the
// path and what is missing. Pure C++ (no LibTorch); immutable after loading, so every method may be
// called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"

namespace grpo::runtime {

class TextTokenizer {
 public:
  virtual ~TextTokenizer() = default;
  // "bpe" or "llama2c".
  virtual std::string kind() const = 0;
  // Text to ids; add_bos prepends the BOS id when the tokenizer has one. parse_special: special
  // tokens spelled in the text become their ids (BPE).
  virtual StatusOr<std::vector<int32_t>> encode(const std::string& text, bool add_bos,
                                                bool parse_special = true) const = 0;
  // Ids to text; prev_id is the token before ids[0] (llama2.c drops the space after BOS).
  virtual StatusOr<std::string> decode(const std::vector<int32_t>& ids, int32_t prev_id = -1) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  // Whether generation prompts conventionally start with BOS (llama2.c: yes; byte-level BPE: no).
  virtual bool prepends_bos() const = 0;
};

StatusOr<std::unique_ptr<TextTokenizer>> load_text_tokenizer(const std::string& path);

}  // namespace grpo::runtime
