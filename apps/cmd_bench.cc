// `grpo bench generate [--model DIR] [--batches 1,8,64] [--new-tokens N] [--repeats R]
//   [--threads T] [--json]`: tokens/s of the generation engine next to a plain LibTorch loop that
// recomputes the whole sequence every step, measured side by side in this run. With --json:
// {"results": [{"batch": B, "engine_tokens_per_s": x, "baseline_tokens_per_s": y, "speedup": r}]}.
//
// `grpo bench learner [--steps N] [--sequences S] [--vocab V] [--tokens N] [--hidden D]
//   [--no-memory] [--threads T] [--json]`: tokens/s of a GRPO step on the demo model next to a plain
// LibTorch step (unfused log-softmax), and the peak extra memory of the logprob computation fused vs
// unfused at V x N. With --json: {"tokens_per_s", "baseline_tokens_per_s", "fused_peak_bytes",
// "unfused_peak_bytes", ...}.
//
// `grpo bench broadcast [--bytes N] [--chunk-bytes N] [--receivers 1,4,8] [--repeats R]
//   [--chains C] [--json]`: seconds until every receiver of the chained weight broadcast holds a
// verified blob of N bytes (tcp on 127.0.0.1), for each receiver count, next to one raw ZeroMQ
// PUSH/PULL transfer of the same chunks; medians of R. With --json:
// {"raw_seconds": x, "receivers": {"1": s1, "4": s4, "8": s8}, ...}.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "apps/bench_broadcast_cli.h"
#include "apps/cli_util.h"
#include "apps/commands.h"
#include "base/log.h"
#include "runtime/bench_generate.h"
#include "runtime/bench_learner.h"
#include "runtime/policy.h"

namespace grpo::apps {
namespace {

struct BenchArgs {
  std::string model, batches = "1,8,64", device = "cpu";
  int new_tokens = 200, repeats = 1, threads = 0;
  bool json = false, no_baseline = false;
};

int run_bench_generate(const BenchArgs& a) {
  auto batches = parse_id_list(a.batches, "--batches");
  if (!batches.ok()) {
    std::fprintf(stderr, "error: %s\n", batches.status().message().c_str());
    return 2;
  }
  const int threads = runtime::set_compute_threads(
      a.threads > 0 ? a.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  runtime::set_blas_threads(1);
  runtime::GenerateBenchOptions o;
  o.model_dir = a.model;
  o.batches = *batches;
  o.new_tokens = a.new_tokens;
  o.repeats = a.repeats;
  o.baseline = !a.no_baseline;
  o.device = a.device;
  auto rows = runtime::bench_generate(o);
  if (!rows.ok()) {
    std::fprintf(stderr, "error: %s\n", rows.status().message().c_str());
    return 2;
  }
  if (a.json) {
    nlohmann::json res = nlohmann::json::array();
    for (const auto& r : *rows)
      res.push_back({{"batch", r.batch}, {"engine_tokens_per_s", r.engine_tokens_per_s},
                     {"baseline_tokens_per_s", r.baseline_tokens_per_s}, {"speedup", r.speedup()}});
    nlohmann::json j{{"results", res}, {"new_tokens", a.new_tokens}, {"threads", threads},
                     {"model", a.model.empty() ? "random stories260K-shaped" : a.model}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("model: %s, %d new tokens per sequence, %d thread(s)\n",
              a.model.empty() ? "random stories260K-shaped" : a.model.c_str(), a.new_tokens, threads);
  std::printf("%6s  %18s  %20s  %8s\n", "batch", "engine tokens/s", "baseline tokens/s", "speedup");
  for (const auto& r : *rows)
    std::printf("%6d  %18.0f  %20.0f  %7.1fx\n", r.batch, r.engine_tokens_per_s, r.baseline_tokens_per_s, r.speedup());
  return 0;
}

struct LearnerArgs {
  runtime::LearnerBenchOptions o;
  int threads = 0;
  bool json = false, no_memory = false;
};

int run_bench_learner(LearnerArgs a) {
  const int threads = runtime::set_compute_threads(
      a.threads > 0 ? a.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  runtime::set_blas_threads(threads);
  a.o.memory = !a.no_memory;
  auto r = runtime::bench_learner(a.o);
  if (!r.ok()) {
    std::fprintf(stderr, "error: %s\n", r.status().message().c_str());
    return 2;
  }
  const double ratio = r->baseline_tokens_per_s > 0 ? r->tokens_per_s / r->baseline_tokens_per_s : 0;
  if (a.json) {
    nlohmann::json j{{"tokens_per_s", r->tokens_per_s},
                     {"baseline_tokens_per_s", r->baseline_tokens_per_s},
                     {"speedup", ratio},
                     {"tokens_per_step", r->tokens_per_step},
                     {"model_vocab", r->vocab},
                     {"max_weight_diff", r->max_weight_diff},
                     {"threads", threads}};
    if (a.o.memory) {
      j["fused_peak_bytes"] = r->fused_peak_bytes;
      j["unfused_peak_bytes"] = r->unfused_peak_bytes;
      j["memory_vocab"] = a.o.memory_vocab;
      j["memory_tokens"] = a.o.memory_tokens;
      j["memory_hidden"] = a.o.memory_hidden;
      j["fused_seconds"] = r->fused_seconds;
      j["unfused_seconds"] = r->unfused_seconds;
    }
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("GRPO step, demo model (dim %lld, %lld layers, vocab %lld), %lld sequences, %lld response tokens/step, %d thread(s)\n",
              static_cast<long long>(a.o.dim), static_cast<long long>(a.o.layers), static_cast<long long>(r->vocab),
              static_cast<long long>(a.o.sequences), static_cast<long long>(r->tokens_per_step), threads);
  std::printf("  grpo learner step   %10.0f tokens/s\n", r->tokens_per_s);
  std::printf("  plain LibTorch step %10.0f tokens/s   (learner / plain: %.2fx; weights differ by at most %.2g)\n",
              r->baseline_tokens_per_s, ratio, r->max_weight_diff);
  if (a.o.memory) {
    std::printf("logprobs + gradient at vocab %lld x %lld tokens (hidden %lld), peak extra memory:\n",
                static_cast<long long>(a.o.memory_vocab), static_cast<long long>(a.o.memory_tokens),
                static_cast<long long>(a.o.memory_hidden));
    std::printf("  fused   %10.1f MB  %6.2f s\n  unfused %10.1f MB  %6.2f s   (fused memory = 1/%.0f of unfused)\n",
                static_cast<double>(r->fused_peak_bytes) / 1e6, r->fused_seconds,
                static_cast<double>(r->unfused_peak_bytes) / 1e6, r->unfused_seconds,
                r->fused_peak_bytes > 0 ? static_cast<double>(r->unfused_peak_bytes) / static_cast<double>(r->fused_peak_bytes) : 0.0);
  }
  return 0;
}

}  // namespace

Command add_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  Command c;
  c.sub = app.add_subcommand("bench", "benchmarks measured against a baseline in the same run");
  c.sub->require_subcommand(1);
  auto* gen = c.sub->add_subcommand("generate", "generation engine vs a recompute-everything LibTorch loop");
  gen->add_option("--model", a->model, "Hugging Face model folder (default: random stories260K-shaped)");
  gen->add_option("--batches", a->batches, "batch sizes, e.g. 1,8,64");
  gen->add_option("--new-tokens", a->new_tokens, "tokens decoded per sequence")->check(CLI::Range(1, 100000));
  gen->add_option("--repeats", a->repeats, "best of R runs")->check(CLI::Range(1, 100));
  gen->add_option("--threads", a->threads, "compute threads (0 = all cores)")->check(CLI::Range(0, 1024));
  gen->add_option("--device", a->device, "cpu, cuda or cuda:N (default cpu)");
  gen->add_flag("--no-baseline", a->no_baseline, "measure the engine only");
  gen->add_flag("--json", a->json, "print JSON");
  auto l = std::make_shared<LearnerArgs>();
  auto* learn = c.sub->add_subcommand("learner", "GRPO step vs a plain LibTorch step; fused vs unfused logprob memory");
  learn->add_option("--steps", l->o.steps, "timed steps per side")->check(CLI::Range(1, 1000));
  learn->add_option("--sequences", l->o.sequences, "sequences per step (demo: 16 groups x 8)")->check(CLI::Range(1, 1 << 20));
  learn->add_option("--micro-batch-tokens", l->o.micro_batch_tokens, "the learner's micro-batch budget (0: whole batch)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  learn->add_option("--response-tokens", l->o.response_tokens, "longest response (drawn in [N/2, N])")->check(CLI::Range(1, 1 << 16));
  learn->add_option("--vocab", l->o.memory_vocab, "vocabulary of the memory measurement")->check(CLI::Range(1, 1 << 24));
  learn->add_option("--tokens", l->o.memory_tokens, "tokens of the memory measurement")->check(CLI::Range(1, 1 << 24));
  learn->add_option("--hidden", l->o.memory_hidden, "hidden size of the memory measurement")->check(CLI::Range(1, 1 << 16));
  learn->add_option("--threads", l->threads, "compute threads (0 = all cores)")->check(CLI::Range(0, 1024));
  learn->add_flag("--no-memory", l->no_memory, "skip the memory measurement (it needs about 2 x vocab x tokens x 4 bytes)");
  learn->add_flag("--json", l->json, "print JSON");
  auto* bcast = c.sub->add_subcommand("broadcast", "chained weight broadcast to 1/4/8 receivers vs one raw ZeroMQ transfer");
  std::function<int()> run_broadcast = add_bench_broadcast_options(bcast);
  c.run = [a, gen, l, learn, bcast, run_broadcast]() {
    if (gen->parsed()) return run_bench_generate(*a);
    if (learn->parsed()) return run_bench_learner(*l);
    if (bcast->parsed()) return run_broadcast();
    return 2;
  };
  return c;
}

}  // namespace grpo::apps
