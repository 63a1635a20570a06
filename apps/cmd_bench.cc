// `grpo bench generate [--model DIR] [--batches 1,8,64] [--new-tokens N] [--repeats R]
//   [--threads T] [--json]`: tokens/s of the generation engine next to a plain LibTorch loop that
// recomputes the whole sequence every step, measured side by side in this run. With --json:
// {"results": [{"batch": B, "engine_tokens_per_s": x, "baseline_tokens_per_s": y, "speedup": r}]}.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "apps/cli_util.h"
#include "apps/commands.h"
#include "runtime/bench_generate.h"
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
  c.run = [a, gen]() { return gen->parsed() ? run_bench_generate(*a) : 2; };
  return c;
}

}  // namespace grpo::apps
