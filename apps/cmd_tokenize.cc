// `grpo tokenize --tokenizer PATH --text TEXT [--bos] [--no-parse-special] [--json]` prints the ids
// of TEXT (no BOS unless --bos); `grpo tokenize --tokenizer PATH --decode 1,2,3 [--json]` prints
// the text of the ids. With --json: {"ids": [...]} or {"text": "..."}.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "apps/cli_util.h"
#include "apps/commands.h"
#include "runtime/text_tokenizer.h"

namespace grpo::apps {
namespace {

struct TokenizeArgs {
  std::string tokenizer, text, decode;
  bool has_text = false, bos = false, no_parse_special = false, json = false;
};

int run_tokenize(const TokenizeArgs& a) {
  if (a.has_text == !a.decode.empty()) {
    std::fprintf(stderr, "error: tokenize: give exactly one of --text and --decode\n");
    return 2;
  }
  auto tok = runtime::load_text_tokenizer(a.tokenizer);
  if (!tok.ok()) {
    std::fprintf(stderr, "error: %s\n", tok.status().message().c_str());
    return 2;
  }
  if (!a.decode.empty()) {
    auto ids = parse_id_list(a.decode, "--decode");
    if (!ids.ok()) {
      std::fprintf(stderr, "error: %s\n", ids.status().message().c_str());
      return 2;
    }
    auto text = (*tok)->decode(*ids);
    if (!text.ok()) {
      std::fprintf(stderr, "error: --decode: %s\n", text.status().message().c_str());
      return 2;
    }
    if (a.json) {
      std::printf("%s\n", nlohmann::json{{"text", *text}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::printf("%s\n", text->c_str());
    }
    return 0;
  }
  auto ids = (*tok)->encode(a.text, a.bos, !a.no_parse_special);
  if (!ids.ok()) {
    std::fprintf(stderr, "error: --text: %s\n", ids.status().message().c_str());
    return 2;
  }
  if (a.json) {
    std::printf("%s\n", nlohmann::json{{"ids", *ids}}.dump().c_str());
  } else {
    std::string line;
    for (size_t i = 0; i < ids->size(); ++i) line += (i ? " " : "") + std::to_string((*ids)[i]);
    std::printf("%s\n", line.c_str());
  }
  return 0;
}

}  // namespace

Command add_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  Command c;
  c.sub = app.add_subcommand("tokenize", "turn text into token ids, or ids into text");
  c.sub->add_option("--tokenizer", a->tokenizer, "tokenizer folder or file")->required();
  auto* text = c.sub->add_option("--text", a->text, "text to encode");
  c.sub->add_option("--decode", a->decode, "token ids to decode, e.g. 1,2,3");
  c.sub->add_flag("--bos", a->bos, "prepend the BOS id");
  c.sub->add_flag("--no-parse-special", a->no_parse_special, "encode special tokens' spellings as plain text");
  c.sub->add_flag("--json", a->json, "print JSON");
  c.run = [a, text]() {
    a->has_text = text->count() > 0;
    return run_tokenize(*a);
  };
  return c;
}

}  // namespace grpo::apps
