// `grpo verify --kind math|gsm8k|countdown|code|demo --input FILE.jsonl [--output FILE.jsonl]
// [--threads N] [reward options]`: scores responses offline with the rule-based rewards of
// runtime/rewards.h.
//
// Input: one JSON object per line with `response` (string) and `gold`: a string for math, gsm8k
// and demo (a number is taken as its text; for gsm8k a whole GSM8K answer ending "#### N" or a
// bare number), {"target": T, "nums": [...]} for countdown, {"test", "entry_point", "prompt"} for
// code. Optional: `length` (response tokens, for --max-length; default: code points), `truncated`
// (bool), `id` (copied to the output). Blank lines are skipped.
//
// Output (stdout, or --output): one JSON object per non-blank input line, in input order:
// {"line", ["id",] "reward", "correct", "breakdown": {accuracy, format, language, length},
// "answer", ["detail",] ["error"]}. A line that cannot be scored (bad JSON, a missing field, a
// wrong type) gets reward 0 and an `error` naming its line number and the problem; the run goes on.
// A summary (samples, correct, errors, seconds, samples/s) goes to stderr.
//
// Exit status: 0 when the run completed (even with bad lines), 1 when writing the output failed,
// 2 for bad arguments or an unreadable input file.
//
// Threads: --threads N scores each chunk of lines on N threads (input order is kept). Math
// equivalence serializes GiNaC behind one mutex, so math gains little from threads.
//
// Code: each completion runs as prompt + completion + test + check(entry_point) in a bubblewrap
// sandbox (no network, unprivileged, read-only system, private /tmp, rlimits, --timeout wall
// seconds and --cpu-seconds); at least one thread per sandbox slot. A program that fails or times
// out scores 0 (`detail` says which); a sandbox fault that persists after retries is an `error`.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "apps/commands.h"
#include "runtime/math_verify.h"
#include "runtime/code_sandbox.h"
#include "runtime/rewards.h"

namespace grpo::apps {
namespace {

using nlohmann::json;
using runtime::RewardKind;

constexpr std::size_t kChunkLines = 1024;
constexpr std::size_t kMaxLineBytes = std::size_t{64} << 20;
constexpr int kMaxThreads = 256;

struct Args {
  std::string kind = "math";
  std::string input;
  std::string output;
  int threads = 1;
  std::string answer_format = "auto";
  std::string language = "en";
  double accuracy_weight = 1.0;
  double format_weight = 0.0;
  double language_weight = 0.0;
  double length_weight = 1.0;
  std::int64_t max_length = 0;
  std::int64_t cache_length = 0;
  bool think_in_prompt = false;
  bool partial_format = false;
  bool punish_truncated = false;
  double timeout = 10.0;      // code: wall-clock seconds per program
  double cpu_seconds = 5.0;   // code: CPU seconds per program
};

// One input line, parsed (or the reason it cannot be).
struct Item {
  std::size_t line = 0;
  std::string text;
  runtime::RewardSample sample;
  json id;  // null when absent
  std::string error;
  runtime::RewardBreakdown result;
};

// "number", "string", ... for messages.
std::string type_of(const json& j) { return j.type_name(); }

// Integral JSON numbers (42, 42.0) as int64.
bool as_int64(const json& j, std::int64_t* out) {
  if (j.is_number_integer()) {
    if (j.is_number_unsigned() && j.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) {
      return false;
    }
    *out = j.get<std::int64_t>();
    return true;
  }
  if (j.is_number_float()) {
    double d = j.get<double>();
    if (d != static_cast<double>(static_cast<std::int64_t>(d)) || d < -9.2e18 || d > 9.2e18) {
      return false;
    }
    *out = static_cast<std::int64_t>(d);
    return true;
  }
  return false;
}

// The text of a gold answer given as a string or a number; false for other types.
bool gold_text(const json& j, std::string* out) {
  if (j.is_string()) {
    *out = j.get<std::string>();
    return true;
  }
  if (j.is_number()) {
    *out = j.dump();
    return true;
  }
  return false;
}

std::string string_field(const json& obj, const char* object_name, const char* key, bool required,
                         std::string* error) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (required) *error = std::string("missing field '") + object_name + key + "'";
    return "";
  }
  if (!it->is_string()) {
    *error = std::string("field '") + object_name + key + "' must be a string, got " + type_of(*it);
    return "";
  }
  return it->get<std::string>();
}

// Fills item->sample from item->text; sets item->error (without the line number) on failure.
void parse_item(Item* item, RewardKind kind) {
  json j;
  try {
    j = json::parse(item->text);
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    std::size_t p = what.find("] ");
    item->error = "invalid JSON: " + (p == std::string::npos ? what : what.substr(p + 2));
    return;
  }
  if (!j.is_object()) {
    item->error = "expected a JSON object, got " + type_of(j);
    return;
  }
  if (auto it = j.find("id"); it != j.end()) item->id = *it;
  std::string error;
  item->sample.response = string_field(j, "", "response", true, &error);
  if (!error.empty()) {
    item->error = error;
    return;
  }
  if (auto it = j.find("length"); it != j.end()) {
    std::int64_t length = 0;
    if (!as_int64(*it, &length) || length < 0) {
      item->error = "field 'length' must be a non-negative integer, got " + it->dump();
      return;
    }
    item->sample.length = length;
  }
  if (auto it = j.find("truncated"); it != j.end()) {
    if (!it->is_boolean()) {
      item->error = "field 'truncated' must be a boolean, got " + type_of(*it);
      return;
    }
    item->sample.truncated = it->get<bool>();
  }
  auto gold = j.find("gold");
  if (gold == j.end()) {
    item->error = "missing field 'gold'";
    return;
  }
  switch (kind) {
    case RewardKind::kMath:
    case RewardKind::kGsm8k:
    case RewardKind::kDemo:
      if (!gold_text(*gold, &item->sample.gold)) {
        item->error = "field 'gold' must be a string, got " + type_of(*gold);
      }
      return;
    case RewardKind::kCountdown: {
      if (!gold->is_object()) {
        item->error = "field 'gold' must be an object {\"target\": T, \"nums\": [...]}, got " +
                      type_of(*gold);
        return;
      }
      auto target = gold->find("target");
      if (target == gold->end()) {
        item->error = "missing field 'gold.target'";
        return;
      }
      if (!as_int64(*target, &item->sample.countdown.target)) {
        item->error = "field 'gold.target' must be an integer, got " + target->dump();
        return;
      }
      auto nums = gold->find("nums");
      if (nums == gold->end()) {
        item->error = "missing field 'gold.nums'";
        return;
      }
      if (!nums->is_array()) {
        item->error = "field 'gold.nums' must be an array of integers, got " + type_of(*nums);
        return;
      }
      for (std::size_t i = 0; i < nums->size(); ++i) {
        std::int64_t v = 0;
        if (!as_int64((*nums)[i], &v)) {
          item->error = "field 'gold.nums[" + std::to_string(i) + "]' must be an integer, got " +
                        (*nums)[i].dump();
          return;
        }
        item->sample.countdown.nums.push_back(v);
      }
      return;
    }
    case RewardKind::kCode: {
      if (!gold->is_object()) {
        item->error =
            "field 'gold' must be an object {\"test\", \"entry_point\", \"prompt\"}, got " +
            type_of(*gold);
        return;
      }
      item->sample.code.test = string_field(*gold, "gold.", "test", true, &error);
      if (error.empty()) {
        item->sample.code.entry_point = string_field(*gold, "gold.", "entry_point", true, &error);
      }
      if (error.empty())
        item->sample.code.prompt = string_field(*gold, "gold.", "prompt", false, &error);
      item->error = error;
      return;
    }
  }
}

// Keys in a fixed, readable order: line, id, reward, correct, breakdown, answer, detail, error.
nlohmann::ordered_json output_of(const Item& item) {
  const runtime::RewardBreakdown& r = item.result;
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  out["line"] = item.line;
  if (!item.id.is_null()) out["id"] = item.id;
  const bool failed = !item.error.empty() || !r.error.empty();
  out["reward"] = failed ? 0.0 : r.total;
  out["correct"] = !failed && r.correct;
  out["breakdown"] = {{"accuracy", failed ? 0.0 : r.accuracy},
                      {"format", failed ? 0.0 : r.format},
                      {"language", failed ? 0.0 : r.language},
                      {"length", failed ? 0.0 : r.length}};
  out["answer"] = failed ? "" : r.answer;
  if (!failed && !r.detail.empty()) out["detail"] = r.detail;
  if (!item.error.empty()) {
    out["error"] = "line " + std::to_string(item.line) + ": " + item.error;
  } else if (!r.error.empty()) {
    out["error"] = "line " + std::to_string(item.line) + ": " + r.error;
  }
  return out;
}

void score_items(std::vector<Item>& items, RewardKind kind, const runtime::RewardConfig& config,
                 const runtime::CodeScorer& code_scorer, int threads) {
  std::atomic<std::size_t> next{0};
  auto work = [&]() {
    for (std::size_t i = next++; i < items.size(); i = next++) {
      Item& item = items[i];
      try {
        if (item.error.empty()) parse_item(&item, kind);
        if (item.error.empty())
          item.result = runtime::score(kind, item.sample, config, code_scorer);
      } catch (const std::exception& e) {
        item.error = std::string("internal error: ") + e.what();
      } catch (...) {
        item.error = "internal error";
      }
    }
  };
  const int n = std::max(1, std::min<int>(threads, static_cast<int>(items.size())));
  std::vector<std::thread> pool;
  for (int t = 1; t < n; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
}

int run_verify(const Args& args) {
  auto kind = runtime::parse_reward_kind(args.kind);
  if (!kind.ok()) {
    std::fprintf(stderr, "error: --kind: %s\n", kind.status().message().c_str());
    return 2;
  }
  auto format = runtime::parse_answer_format(args.answer_format);
  if (!format.ok()) {
    std::fprintf(stderr, "error: --answer-format: %s\n", format.status().message().c_str());
    return 2;
  }
  if (args.threads < 1 || args.threads > kMaxThreads) {
    std::fprintf(stderr, "error: --threads must be in [1, %d], got %d\n", kMaxThreads,
                 args.threads);
    return 2;
  }
  runtime::RewardConfig config;
  config.accuracy_weight = args.accuracy_weight;
  config.format_weight = args.format_weight;
  config.language_weight = args.language_weight;
  config.length_weight = args.length_weight;
  config.answer_format = *format;
  config.language.target = args.language;
  config.format.require_think_open = !args.think_in_prompt;
  config.format.partial_credit = args.partial_format;
  config.overlong.max_length = args.max_length;
  config.overlong.cache_length = args.cache_length;
  config.overlong.punish_truncated = args.punish_truncated;
  if (Status st = runtime::validate_reward_config(config); !st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.message().c_str());
    return 2;
  }

  // Code runs in a bubblewrap sandbox pool (runtime/code_sandbox.h), one program per slot.
  runtime::CodeScorer code_scorer = nullptr;
  std::unique_ptr<runtime::SandboxPool> pool;
  int threads = args.threads;
  if (*kind == RewardKind::kCode) {
    runtime::SandboxLimits limits;
    limits.wall_seconds = args.timeout;
    limits.cpu_seconds = args.cpu_seconds;
    if (Status st = runtime::validate_sandbox_limits(limits); !st.ok()) {
      std::fprintf(stderr, "error: %s\n", st.message().c_str());
      return 2;
    }
    auto created = runtime::SandboxPool::create();
    if (!created.ok()) {
      std::fprintf(stderr, "error: code sandbox: %s\n", created.status().message().c_str());
      return 1;
    }
    pool = std::move(*created);
    code_scorer = runtime::make_code_scorer(*pool, limits);
    threads = std::max(threads, pool->slots());  // keep every slot busy
  }

  std::error_code ec;
  if (std::filesystem::is_directory(args.input, ec)) {
    std::fprintf(stderr, "error: cannot read input file '%s': it is a directory\n",
                 args.input.c_str());
    return 2;
  }
  std::ifstream in(args.input, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "error: cannot open input file '%s'\n", args.input.c_str());
    return 2;
  }
  std::ofstream file_out;
  if (!args.output.empty()) {
    file_out.open(args.output, std::ios::binary | std::ios::trunc);
    if (!file_out) {
      std::fprintf(stderr, "error: cannot write output file '%s'\n", args.output.c_str());
      return 2;
    }
  }
  std::ostream& out = args.output.empty() ? std::cout : file_out;

  const auto t0 = std::chrono::steady_clock::now();
  std::size_t samples = 0, correct = 0, errors = 0, line_no = 0;
  bool eof = false;
  while (!eof) {
    std::vector<Item> chunk;
    std::string line;
    while (chunk.size() < kChunkLines) {
      if (!std::getline(in, line)) {
        eof = true;
        break;
      }
      ++line_no;
      if (line.find_first_not_of(" \t\r\n") == std::string::npos) continue;
      Item item;
      item.line = line_no;
      if (line.size() > kMaxLineBytes) {
        item.error = "line longer than " + std::to_string(kMaxLineBytes >> 20) + " MiB";
      } else {
        item.text = std::move(line);
      }
      chunk.push_back(std::move(item));
    }
    if (in.bad()) {
      std::fprintf(stderr, "error: reading '%s' failed after line %zu\n", args.input.c_str(),
                   line_no);
      return 2;
    }
    score_items(chunk, *kind, config, code_scorer, threads);
    for (const Item& item : chunk) {
      nlohmann::ordered_json o = output_of(item);
      ++samples;
      if (o.contains("error")) ++errors;
      if (o["correct"].get<bool>()) ++correct;
      out << o.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << '\n';
    }
    out.flush();
    if (!out) {
      std::fprintf(stderr, "error: writing the output failed\n");
      return 1;
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr,
               "verify: kind %s, %zu samples, %zu correct (%.1f%%), %zu errors, %.3f s, "
               "%.1f samples/s\n",
               runtime::reward_kind_name(*kind), samples, correct,
               samples ? 100.0 * static_cast<double>(correct) / static_cast<double>(samples) : 0.0,
               errors, seconds, seconds > 0 ? static_cast<double>(samples) / seconds : 0.0);
  return 0;
}

}  // namespace

Command add_verify(CLI::App& app) {
  auto args = std::make_shared<Args>();
  Command c;
  c.sub =
      app.add_subcommand("verify", "score responses in a JSONL file with the rule-based rewards");
  c.sub->add_option("--kind", args->kind, "math, gsm8k, countdown, code or demo")->required();
  c.sub->add_option("--input", args->input, "JSONL file: one {\"response\", \"gold\"} per line")
      ->required();
  c.sub->add_option("--output", args->output, "JSONL file for the results (default: stdout)");
  c.sub->add_option("--threads", args->threads, "scoring threads (default 1)");
  c.sub->add_option("--answer-format", args->answer_format,
                    "math/gsm8k answer in responses: auto, boxed, answer_tag, gsm8k, answer_is, "
                    "last_number (default auto)");
  c.sub->add_option("--accuracy-weight", args->accuracy_weight, "weight of accuracy (default 1)");
  c.sub->add_option("--format-weight", args->format_weight,
                    "weight of the <think>/<answer> format term (default 0)");
  c.sub->add_option("--language", args->language,
                    "target language of the reasoning, e.g. en, zh, ja (default en)");
  c.sub->add_option("--language-weight", args->language_weight,
                    "weight of language consistency (default 0)");
  c.sub->add_option("--length-weight", args->length_weight,
                    "weight of the overlong term (default 1; active with --max-length)");
  c.sub->add_option("--max-length", args->max_length,
                    "DAPO Lmax in tokens (field `length`, else code points); 0 = off");
  c.sub->add_option("--cache-length", args->cache_length, "DAPO Lcache, the soft interval");
  c.sub->add_flag("--punish-truncated", args->punish_truncated,
                  "a response with \"truncated\": true gets length term -1");
  c.sub->add_flag("--think-in-prompt", args->think_in_prompt,
                  "the prompt ends with <think>: responses need not open with it");
  c.sub->add_flag("--partial-format", args->partial_format, "format term in quarters");
  c.sub->add_option("--timeout", args->timeout, "code: wall-clock seconds per program (default 10)");
  c.sub->add_option("--cpu-seconds", args->cpu_seconds, "code: CPU seconds per program (default 5)");
  c.run = [args]() { return run_verify(*args); };
  return c;
}

}  // namespace grpo::apps
