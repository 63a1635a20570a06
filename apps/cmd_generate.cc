// `grpo generate --model DIR [--tokenizer PATH] (--prompt TEXT | --prompt-ids 1,2,3)
//   --max-tokens N [--temperature T] [--top-p P] [--top-k K] [--min-p M] [--stop S]... [--seed S]
//   [--samples N] [--json]`: samples from a Hugging Face checkpoint with the batched engine.
// Prints the text (one block per sample), or with --json one object per run:
// {"ids": [...], "text": "...", "finish_reason": "...", "logprobs": [...], "prompt_ids": [...],
//  "samples": [...] (when --samples > 1), "tokens_per_s": x}.
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "apps/cli_util.h"
#include "apps/commands.h"
#include "runtime/policy.h"
#include "runtime/text_tokenizer.h"

namespace grpo::apps {
namespace {

struct GenerateArgs {
  std::string model, tokenizer, prompt, prompt_ids;
  int max_tokens = 0;
  double temperature = 1.0, top_p = 1.0, min_p = 0.0;
  int top_k = 0;
  uint64_t seed = 0;
  int samples = 1;
  int threads = 0;
  std::vector<std::string> stop;
  std::string device = "cpu";
  bool json = false, no_bos = false, ignore_eos = false;
};

int fail(const std::string& msg, int code) {
  std::fprintf(stderr, "error: %s\n", msg.c_str());
  return code;
}

int run_generate(const GenerateArgs& a) {
  if (a.prompt.empty() == a.prompt_ids.empty()) return fail("generate: give exactly one of --prompt and --prompt-ids", 2);
  runtime::set_compute_threads(a.threads > 0 ? a.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  auto policy = runtime::Policy::load(a.model);
  if (policy.ok() && (*policy)->config().dim < 1024) runtime::set_blas_threads(1);
  if (!policy.ok()) return fail(policy.status().message(), 2);
  if (Status st = (*policy)->to_device(a.device); !st.ok()) return fail("--device: " + st.message(), 2);
  std::unique_ptr<runtime::TextTokenizer> tok;
  const std::string tok_path = a.tokenizer.empty() ? a.model : a.tokenizer;
  auto loaded = runtime::load_text_tokenizer(tok_path);
  if (loaded.ok()) {
    tok = std::move(*loaded);
  } else if (!a.tokenizer.empty() || !a.prompt.empty() || !a.stop.empty()) {
    return fail(loaded.status().message(), 2);
  }
  const runtime::ModelConfig& cfg = (*policy)->config();
  if (tok && tok->vocab_size() > cfg.vocab_size)
    return fail("generate: the tokenizer's " + std::to_string(tok->vocab_size()) + " ids exceed the model's vocabulary of " +
                    std::to_string(cfg.vocab_size), 2);
  std::vector<int32_t> prompt;
  if (!a.prompt_ids.empty()) {
    auto ids = parse_id_list(a.prompt_ids, "--prompt-ids");
    if (!ids.ok()) return fail(ids.status().message(), 2);
    prompt = *ids;
  } else {
    bool bos = tok->prepends_bos() && !a.no_bos;
    auto ids = tok->encode(a.prompt, bos);
    if (!ids.ok()) return fail(ids.status().message(), 2);
    prompt = *ids;
  }
  runtime::SamplingOptions o;
  o.temperature = a.temperature;
  o.top_p = a.top_p;
  o.top_k = a.top_k;
  o.min_p = a.min_p;
  o.max_new_tokens = a.max_tokens;
  o.stop = a.stop;
  o.eos_id = -1;
  if (!a.ignore_eos) {
    o.extra_eos_ids = cfg.eos_ids;
    if (tok && tok->eos_id()) o.extra_eos_ids.push_back(*tok->eos_id());
  }
  const int32_t prev = prompt.back();
  if (tok) {
    const runtime::TextTokenizer* t = tok.get();
    (*policy)->set_decoder([t, prev](const std::vector<int32_t>& ids) {
      auto s = t->decode(ids, prev);
      return s.ok() ? *s : std::string();
    });
  }
  runtime::GenerationRequest req;
  req.prompt_ids = prompt;
  req.num_samples = a.samples;
  req.seed = a.seed;
  auto t0 = std::chrono::steady_clock::now();
  auto out = (*policy)->generate({req}, o, a.seed);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!out.ok()) return fail(out.status().message(), 2);
  size_t tokens = 0;
  nlohmann::json samples = nlohmann::json::array();
  for (const auto& s : (*out)[0]) {
    tokens += s.ids.size();
    std::string text;
    if (tok) {
      auto d = tok->decode(s.ids, prev);
      text = d.ok() ? *d : "";
    }
    if (!a.json) {
      std::printf("%s\n", text.empty() && !tok ? "(no tokenizer: use --json for ids)" : text.c_str());
      continue;
    }
    nlohmann::json j;
    j["ids"] = s.ids;
    j["text"] = text;  // invalid UTF-8 (a cut multi-byte character) is replaced when printed
    j["finish_reason"] = runtime::finish_reason_name(s.reason);
    j["logprobs"] = s.logprobs;
    samples.push_back(j);
  }
  if (a.json) {
    nlohmann::json j = samples[0];
    j["prompt_ids"] = prompt;
    if (a.samples > 1) j["samples"] = samples;
    j["tokens_per_s"] = secs > 0 ? static_cast<double>(tokens) / secs : 0.0;
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  }
  return 0;
}

}  // namespace

Command add_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  Command c;
  c.sub = app.add_subcommand("generate", "sample a completion from a Hugging Face checkpoint");
  c.sub->add_option("--model", a->model, "model folder (config.json + safetensors)")->required();
  c.sub->add_option("--tokenizer", a->tokenizer, "tokenizer folder or file (default: the model folder)");
  c.sub->add_option("--prompt", a->prompt, "prompt text");
  c.sub->add_option("--prompt-ids", a->prompt_ids, "prompt token ids, e.g. 1,2,3");
  c.sub->add_option("--max-tokens", a->max_tokens, "new tokens at most")->required()->check(CLI::Range(1, 1 << 20));
  c.sub->add_option("--temperature", a->temperature, "0 = greedy")->check(CLI::Range(0.0, 100.0));
  c.sub->add_option("--top-p", a->top_p, "nucleus mass")->check(CLI::Range(1e-9, 1.0));
  c.sub->add_option("--top-k", a->top_k, "keep the k most likely tokens (0 = off)")->check(CLI::Range(0, 1 << 24));
  c.sub->add_option("--min-p", a->min_p, "drop tokens below min-p x the top probability")->check(CLI::Range(0.0, 0.999999));
  c.sub->add_option("--stop", a->stop, "stop string (repeatable)");
  c.sub->add_option("--seed", a->seed, "sampling seed");
  c.sub->add_option("--samples", a->samples, "completions of the prompt")->check(CLI::Range(1, 4096));
  c.sub->add_option("--threads", a->threads, "compute threads (0 = all cores)")->check(CLI::Range(0, 1024));
  c.sub->add_option("--device", a->device, "cpu, cuda or cuda:N (default cpu)");
  c.sub->add_flag("--no-bos", a->no_bos, "do not prepend BOS to --prompt");
  c.sub->add_flag("--ignore-eos", a->ignore_eos, "decode until --max-tokens");
  c.sub->add_flag("--json", a->json, "print one JSON object");
  c.run = [a]() { return run_generate(*a); };
  return c;
}

}  // namespace grpo::apps
