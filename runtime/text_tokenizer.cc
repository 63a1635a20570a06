#include "runtime/text_tokenizer.h"

#include <filesystem>

#include "runtime/bpe_tokenizer.h"
#include "runtime/sp_tokenizer.h"

namespace grpo::runtime {
namespace {

namespace fs = std::filesystem;

class BpeText : public TextTokenizer {
 public:
  explicit BpeText(BpeTokenizer t) : t_(std::move(t)) {}
  std::string kind() const override { return "bpe"; }
  StatusOr<std::vector<int32_t>> encode(const std::string& text, bool add_bos,
                                        bool parse_special) const override {
    GRPO_ASSIGN_OR_RETURN(auto ids, t_.encode(text, parse_special));
    if (add_bos && t_.bos_id()) ids.insert(ids.begin(), *t_.bos_id());
    return ids;
  }
  StatusOr<std::string> decode(const std::vector<int32_t>& ids, int32_t) const override {
    return t_.decode(ids, /*skip_special=*/false);
  }
  int32_t vocab_size() const override { return t_.vocab_size(); }
  std::optional<int32_t> bos_id() const override { return t_.bos_id(); }
  std::optional<int32_t> eos_id() const override { return t_.eos_id(); }
  bool prepends_bos() const override { return false; }

 private:
  BpeTokenizer t_;
};

class Llama2cText : public TextTokenizer {
 public:
  explicit Llama2cText(SpTokenizer t) : t_(std::move(t)) {}
  std::string kind() const override { return "llama2c"; }
  StatusOr<std::vector<int32_t>> encode(const std::string& text, bool add_bos, bool) const override {
    return t_.encode(text, add_bos, false);
  }
  StatusOr<std::string> decode(const std::vector<int32_t>& ids, int32_t prev_id) const override {
    return t_.decode(ids, prev_id);
  }
  int32_t vocab_size() const override { return t_.vocab_size(); }
  std::optional<int32_t> bos_id() const override { return SpTokenizer::kBos; }
  std::optional<int32_t> eos_id() const override { return SpTokenizer::kEos; }
  bool prepends_bos() const override { return true; }

 private:
  SpTokenizer t_;
};

StatusOr<std::unique_ptr<TextTokenizer>> load_llama2c(const std::string& file) {
  GRPO_ASSIGN_OR_RETURN(SpTokenizer t, SpTokenizer::load(file));
  return std::unique_ptr<TextTokenizer>(new Llama2cText(std::move(t)));
}

}  // namespace

StatusOr<std::unique_ptr<TextTokenizer>> load_text_tokenizer(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    if (fs::path(path).extension() == ".bin") return load_llama2c(path);
    if (fs::path(path).filename() == "tokenizer.json") {
      GRPO_ASSIGN_OR_RETURN(BpeTokenizer t, BpeTokenizer::from_tokenizer_json(path));
      return std::unique_ptr<TextTokenizer>(new BpeText(std::move(t)));
    }
    return invalid_argument(path + ": not a tokenizer file (expected tokenizer.json or a llama2.c .bin)");
  }
  if (!fs::is_directory(path, ec)) return not_found(path + ": no such tokenizer file or folder");
  const fs::path dir(path);
  if (fs::exists(dir / "tokenizer.json", ec) || fs::exists(dir / "vocab.json", ec)) {
    GRPO_ASSIGN_OR_RETURN(BpeTokenizer t, BpeTokenizer::load_dir(path));
    return std::unique_ptr<TextTokenizer>(new BpeText(std::move(t)));
  }
  if (fs::exists(dir / "tokenizer.bin", ec)) return load_llama2c((dir / "tokenizer.bin").string());
  std::vector<fs::path> bins;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.rfind("tok", 0) == 0 && e.path().extension() == ".bin") bins.push_back(e.path());
  }
  if (bins.size() == 1) return load_llama2c(bins.front().string());
  if (bins.size() > 1) return invalid_argument(path + ": several tok*.bin files; pass one with --tokenizer");
  return not_found(path + ": no tokenizer (tokenizer.json, vocab.json + merges.txt, tokenizer.bin or tok*.bin)");
}

}  // namespace grpo::runtime
