// `grpo sft --model DIR --data FILE.jsonl --out DIR [--tokenizer PATH] [--epochs E | --steps N]
//   [--batch-size B] [--lr LR] [--warmup N] [--schedule constant|cosine] [--micro-batch-tokens T]
//   [--min-reward R] [--no-eos] [--dtype float32|bfloat16] [--seed S] [--threads T] [--json]`:
// supervised fine-tuning of a Hugging Face checkpoint on the learner's machinery (Trainer::sft_step:
// loss on response tokens only, fused logprobs, micro-batches, AdamW with warmup and schedule).
// The same command serves the three SFT stages of an R1-style pipeline:
//   cold start                 curated (prompt, long chain-of-thought response) pairs;
//   rejection-sampling SFT     samples of the RL policy kept only when verified: give each line the
//                              `reward` from `grpo verify` and pass --min-reward;
//   distillation               a teacher's generations as the responses.
//
// Data: one JSON object per line, either text {"prompt": "...", "response": "..."} (prompt +
// response encoded as one text with the tokenizer of --tokenizer or of the model folder, split where
// the prompt's own encoding ends; BOS first when the tokenizer uses one, EOS after the response
// unless --no-eos) or ids {"prompt_ids": [...], "response_ids":
// [...]}; optional "reward" (number, for --min-reward). Blank lines are skipped. A malformed line is
// an error naming the file and line, and nothing is trained. Pairs longer than the model's
// max_position_embeddings are skipped and counted.
//
// Output: --out receives config.json + model.safetensors (and the model folder's tokenizer files),
// loadable by `grpo generate --model OUT` (weights and config.json written atomically). A progress line every
// tenth of the run on stderr; --json prints a summary object on stdout.
// Exit status: 0 done, 1 training or writing failed, 2 bad arguments or data.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "apps/commands.h"
#include "runtime/model_config.h"
#include "runtime/policy.h"
#include "runtime/text_tokenizer.h"
#include "runtime/trainer.h"

namespace grpo::apps {
namespace {
namespace fs = std::filesystem;

struct SftArgs {
  std::string model, data, out, tokenizer, schedule = "cosine", dtype = "float32";
  int epochs = 1, steps = 0, batch_size = 16, warmup = 0, threads = 0;
  double lr = 1e-5, min_reward = -1e300, weight_decay = 0.0, max_grad_norm = 1.0;
  int64_t micro_batch_tokens = 0;
  uint64_t seed = 1;
  bool no_eos = false, json = false;
};

int fail(const std::string& msg, int code) {
  std::fprintf(stderr, "error: %s\n", msg.c_str());
  return code;
}

StatusOr<std::vector<int32_t>> id_list(const nlohmann::json& v, const std::string& where) {
  if (!v.is_array()) return invalid_argument(where + ": expected an array of token ids");
  std::vector<int32_t> out;
  for (const auto& x : v) {
    if (!x.is_number_integer()) return invalid_argument(where + ": token ids must be integers");
    out.push_back(x.get<int32_t>());
  }
  return out;
}

struct Dataset {
  std::vector<runtime::TrainSample> samples;
  int64_t filtered = 0;  // below --min-reward
  int64_t too_long = 0;
};

StatusOr<Dataset> read_data(const SftArgs& a, const runtime::TextTokenizer* tok, const runtime::ModelConfig& cfg) {
  std::ifstream in(a.data);
  if (!in) return invalid_argument(a.data + ": cannot open the data file");
  Dataset d;
  std::string line;
  for (int64_t no = 1; std::getline(in, line); ++no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = a.data + ":" + std::to_string(no);
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return invalid_argument(where + ": not a JSON object");
    if (j.contains("reward")) {
      if (!j["reward"].is_number()) return invalid_argument(where + ": \"reward\" must be a number");
      if (j["reward"].get<double>() < a.min_reward) {
        ++d.filtered;
        continue;
      }
    } else if (a.min_reward > -1e300) {
      return invalid_argument(where + ": --min-reward needs a \"reward\" on every line");
    }
    runtime::TrainSample s;
    if (j.contains("prompt_ids") || j.contains("response_ids")) {
      if (!j.contains("prompt_ids") || !j.contains("response_ids"))
        return invalid_argument(where + ": give both \"prompt_ids\" and \"response_ids\"");
      GRPO_ASSIGN_OR_RETURN(s.prompt_ids, id_list(j["prompt_ids"], where + ": prompt_ids"));
      GRPO_ASSIGN_OR_RETURN(s.response_ids, id_list(j["response_ids"], where + ": response_ids"));
    } else {
      if (!j.contains("prompt") || !j["prompt"].is_string() || !j.contains("response") || !j["response"].is_string())
        return invalid_argument(where + ": expected string fields \"prompt\" and \"response\" (or \"prompt_ids\" and \"response_ids\")");
      if (tok == nullptr)
        return invalid_argument(where + ": text data needs a tokenizer (--tokenizer, or one in the model folder)");
      // The pair is encoded as one text, so the response's ids are what the model sees after the
      // prompt (a tokenizer may merge across the seam or add a word-start marker on its own); the
      // split is where the prompt's own encoding stops matching.
      const std::string prompt = j["prompt"].get<std::string>();
      auto p = tok->encode(prompt, true);
      if (!p.ok()) return invalid_argument(where + ": prompt: " + p.status().message());
      auto full = tok->encode(prompt + j["response"].get<std::string>(), true);
      if (!full.ok()) return invalid_argument(where + ": response: " + full.status().message());
      size_t split = 0;
      while (split < p->size() && split < full->size() && (*p)[split] == (*full)[split]) ++split;
      s.prompt_ids.assign(full->begin(), full->begin() + static_cast<std::ptrdiff_t>(split));
      s.response_ids.assign(full->begin() + static_cast<std::ptrdiff_t>(split), full->end());
      if (!a.no_eos && tok->eos_id()) s.response_ids.push_back(*tok->eos_id());
    }
    if (s.prompt_ids.empty() || s.response_ids.empty())
      return invalid_argument(where + ": empty prompt or response");
    for (const auto* ids : {&s.prompt_ids, &s.response_ids})
      for (int32_t id : *ids)
        if (id < 0 || id >= cfg.vocab_size)
          return invalid_argument(where + ": token id " + std::to_string(id) + " outside the model's vocabulary [0, " +
                                  std::to_string(cfg.vocab_size) + ")");
    if (static_cast<int64_t>(s.prompt_ids.size() + s.response_ids.size()) > cfg.max_seq_len) {
      ++d.too_long;
      continue;
    }
    d.samples.push_back(std::move(s));
  }
  return d;
}

// Tokenizer files next to a model, copied so that the output folder is self-contained.
void copy_tokenizer_files(const std::string& from, const std::string& to) {
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "tokenizer.bin",
                           "vocab.json", "merges.txt", "special_tokens_map.json", "generation_config.json"}) {
    std::error_code ec;
    if (fs::exists(fs::path(from) / name, ec))
      fs::copy_file(fs::path(from) / name, fs::path(to) / name, fs::copy_options::overwrite_existing, ec);
  }
  std::error_code ec;
  if (fs::is_regular_file(from, ec)) {  // --tokenizer named a file (a llama2.c tokenizer)
    fs::copy_file(from, fs::path(to) / fs::path(from).filename(), fs::copy_options::overwrite_existing, ec);
    return;
  }
  for (const auto& e : fs::directory_iterator(from, ec)) {  // llama2.c tokenizers: tok*.bin
    const std::string name = e.path().filename().string();
    if (name.rfind("tok", 0) == 0 && e.path().extension() == ".bin")
      fs::copy_file(e.path(), fs::path(to) / name, fs::copy_options::overwrite_existing, ec);
  }
}

int run_sft(const SftArgs& a) {
  if (a.model.empty() || a.data.empty() || a.out.empty()) return fail("sft: --model, --data and --out are required", 2);
  if (a.schedule != "constant" && a.schedule != "cosine") return fail("sft: --schedule must be constant or cosine", 2);
  if (a.dtype != "float32" && a.dtype != "bfloat16") return fail("sft: --dtype must be float32 or bfloat16", 2);
  const int threads = runtime::set_compute_threads(
      a.threads > 0 ? a.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  runtime::set_blas_threads(threads);
  auto cfg = runtime::load_hf_config(a.model + "/config.json");
  if (!cfg.ok()) return fail(cfg.status().message(), 2);
  std::unique_ptr<runtime::TextTokenizer> tok;
  {
    auto loaded = runtime::load_text_tokenizer(a.tokenizer.empty() ? a.model : a.tokenizer);
    if (loaded.ok()) tok = std::move(*loaded);
    else if (!a.tokenizer.empty()) return fail(loaded.status().message(), 2);
  }
  auto data = read_data(a, tok.get(), *cfg);
  if (!data.ok()) return fail(data.status().message(), 2);
  if (data->samples.empty()) return fail("sft: " + a.data + " holds no usable pair", 2);
  const int64_t n = static_cast<int64_t>(data->samples.size());
  const int64_t batch = std::min<int64_t>(a.batch_size, n);
  const int64_t per_epoch = (n + batch - 1) / batch;
  const int64_t steps = a.steps > 0 ? a.steps : per_epoch * a.epochs;

  runtime::OptimizerOptions o;
  o.lr = a.lr;
  o.weight_decay = a.weight_decay;
  o.max_grad_norm = a.max_grad_norm;
  o.warmup_steps = a.warmup;
  o.schedule = a.schedule;
  o.total_steps = steps;
  o.micro_batch_tokens = a.micro_batch_tokens;
  auto trainer = runtime::Trainer::load_hf(a.model, o);
  if (!trainer.ok()) return fail(trainer.status().message(), 2);

  int64_t response_tokens = 0;
  for (const auto& s : data->samples) response_tokens += static_cast<int64_t>(s.response_ids.size());
  std::fprintf(stderr, "sft: %lld pairs (%lld response tokens; %lld below --min-reward, %lld too long), %lld steps of %lld, %d thread(s)\n",
               static_cast<long long>(n), static_cast<long long>(response_tokens), static_cast<long long>(data->filtered),
               static_cast<long long>(data->too_long), static_cast<long long>(steps), static_cast<long long>(batch), threads);
  std::mt19937_64 rng(a.seed);
  std::vector<size_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  size_t cursor = order.size();
  double first_loss = 0, last_loss = 0;
  int64_t skipped = 0, tokens = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = 0; step < steps; ++step) {
    std::vector<runtime::TrainSample> b;
    while (static_cast<int64_t>(b.size()) < batch) {
      if (cursor == order.size()) {  // a new epoch: reshuffle
        std::shuffle(order.begin(), order.end(), rng);
        cursor = 0;
      }
      b.push_back(data->samples[order[cursor++]]);
    }
    auto st = (*trainer)->sft_step(b);
    if (!st.ok()) return fail("sft: step " + std::to_string(step + 1) + ": " + st.status().message(), 1);
    if (step == 0) first_loss = st->loss;
    last_loss = st->loss;
    skipped += st->skipped ? 1 : 0;
    tokens += st->tokens;
    if ((step + 1) % std::max<int64_t>(1, steps / 10) == 0 || step + 1 == steps)
      std::fprintf(stderr, "sft step %lld/%lld | loss %.4f | lr %.3g | grad norm %.3f%s\n", static_cast<long long>(step + 1),
                   static_cast<long long>(steps), st->loss, st->lr, st->grad_norm, st->skipped ? " | SKIPPED (non-finite)" : "");
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::error_code ec;
  fs::create_directories(a.out, ec);
  if (ec) return fail("sft: cannot create " + a.out + ": " + ec.message(), 1);
  if (Status s = (*trainer)->save_hf(a.out, a.dtype); !s.ok()) return fail("sft: " + s.message(), 1);
  copy_tokenizer_files(a.tokenizer.empty() ? a.model : a.tokenizer, a.out);
  std::fprintf(stderr, "sft: loss %.4f -> %.4f, %.0f response tokens/s, wrote %s\n", first_loss, last_loss,
               secs > 0 ? static_cast<double>(tokens) / secs : 0.0, a.out.c_str());
  if (a.json) {
    nlohmann::json j{{"pairs", n}, {"filtered", data->filtered}, {"too_long", data->too_long}, {"steps", steps},
                     {"first_loss", first_loss}, {"last_loss", last_loss}, {"skipped_steps", skipped},
                     {"tokens_per_s", secs > 0 ? static_cast<double>(tokens) / secs : 0.0}, {"out", a.out}};
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}

}  // namespace

Command add_sft(CLI::App& app) {
  auto a = std::make_shared<SftArgs>();
  Command c;
  c.sub = app.add_subcommand("sft", "supervised fine-tuning on (prompt, response) pairs: cold start, rejection-sampling SFT, distillation");
  c.sub->add_option("--model", a->model, "Hugging Face checkpoint folder to start from")->required();
  c.sub->add_option("--data", a->data, "JSONL of {prompt, response} or {prompt_ids, response_ids} [+ reward]")->required();
  c.sub->add_option("--out", a->out, "output folder (config.json + model.safetensors)")->required();
  c.sub->add_option("--tokenizer", a->tokenizer, "tokenizer folder or file (default: the model folder)");
  c.sub->add_option("--epochs", a->epochs, "passes over the data (unless --steps)")->check(CLI::Range(1, 100000));
  c.sub->add_option("--steps", a->steps, "optimiser steps (0: --epochs)")->check(CLI::Range(0, 100000000));
  c.sub->add_option("--batch-size", a->batch_size, "pairs per step")->check(CLI::Range(1, 1 << 20));
  c.sub->add_option("--lr", a->lr, "peak learning rate")->check(CLI::Range(0.0, 1.0));
  c.sub->add_option("--warmup", a->warmup, "linear warmup steps")->check(CLI::Range(0, 100000000));
  c.sub->add_option("--schedule", a->schedule, "after warmup: constant or cosine");
  c.sub->add_option("--weight-decay", a->weight_decay, "AdamW weight decay")->check(CLI::Range(0.0, 1.0));
  c.sub->add_option("--max-grad-norm", a->max_grad_norm, "global gradient-norm clip")->check(CLI::Range(0.0, 1e9));
  c.sub->add_option("--micro-batch-tokens", a->micro_batch_tokens, "padded tokens per forward/backward (0: whole batch)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  c.sub->add_option("--min-reward", a->min_reward, "keep only lines whose \"reward\" is at least this (rejection sampling)");
  c.sub->add_flag("--no-eos", a->no_eos, "do not append EOS to text responses");
  c.sub->add_option("--dtype", a->dtype, "dtype of the written weights: float32 or bfloat16");
  c.sub->add_option("--seed", a->seed, "shuffling seed");
  c.sub->add_option("--threads", a->threads, "compute threads (0 = all cores)")->check(CLI::Range(0, 1024));
  c.sub->add_flag("--json", a->json, "print a JSON summary");
  c.run = [a]() { return run_sft(*a); };
  return c;
}

}  // namespace grpo::apps
