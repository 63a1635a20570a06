// The generation benchmark behind `grpo bench generate`: tokens/s of the continuous-batching KV-cache
// engine next to a plain LibTorch loop that recomputes the whole sequence every step (no cache,
// the batch grown by concatenation), both measured in the same process on the same weights and the
// same workload (each sequence starts from BOS and decodes exactly new_tokens tokens, EOS ignored,
// temperature sampling). Pure interface (no LibTorch); call from one thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace grpo::runtime {

struct GenerateBenchOptions {
  std::string model_dir;             // Hugging Face directory; empty: a random stories260K-shaped model
  std::vector<int32_t> batches = {1, 8, 64};
  int32_t new_tokens = 200;
  int32_t bos_id = 1;
  double temperature = 0.8;
  int32_t repeats = 1;               // best of this many runs per measurement
  bool baseline = true;              // false: the engine alone (baseline_tokens_per_s stays 0)
  std::string device = "cpu";        // cpu, cuda or cuda:N
};

struct GenerateBenchRow {
  int32_t batch = 0;
  double engine_tokens_per_s = 0;
  double baseline_tokens_per_s = 0;
  int64_t tokens = 0;                // generated per run (batch x new_tokens)
  double speedup() const { return baseline_tokens_per_s > 0 ? engine_tokens_per_s / baseline_tokens_per_s : 0; }
};

StatusOr<std::vector<GenerateBenchRow>> bench_generate(const GenerateBenchOptions& options);

}  // namespace grpo::runtime
