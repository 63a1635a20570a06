// The demo recipe's building blocks on top of Policy and Trainer: cold-start SFT on synthetic
// traces, batch construction for GRPO, and R1-protocol evaluation (pass@1 averaged over k samples).
// Functions here are called by one thread at a time with the objects they are given.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "base/status.h"
#include "runtime/policy.h"
#include "runtime/reward.h"
#include "runtime/task.h"
#include "runtime/tokenizer.h"
#include "runtime/trainer.h"

namespace grpo::runtime {

struct SftOptions {
  int64_t steps = 200;
  int64_t batch_size = 64;
  int64_t traces = 4000;  // size of the synthetic trace set, cycled through
  uint64_t seed = 1;
  // Fraction of trace draws that carry one arithmetic slip (drawn afresh each time a problem is
  // used): cold-start data as imperfect as distilled traces are, which RL then corrects.
  double trace_error_rate = 0.0;
  // Fraction of trace draws whose answer is written without <answer> tags (a format slip).
  double format_error_rate = 0.0;
};

// Trains on `traces` synthetic worked solutions; calls on_step after each step and stops early,
// returning Cancelled, when it returns false.
Status run_sft(Trainer& trainer, const AdditionTask& task, const TaskTokenizer& tokenizer,
               const SftOptions& options,
               const std::function<bool(int64_t, const StepStats&)>& on_step);

struct EvalOptions {
  int32_t samples_per_prompt = 4;  // k of pass@1 averaged over k samples
  double temperature = 0.6;
  double top_p = 0.95;
  int32_t max_new_tokens = 48;
  int32_t batch_prompts = 64;
  uint64_t seed = 7;
};

struct EvalResult {
  double pass_at_1 = 0;     // mean accuracy over prompts x samples
  // Standard error of pass_at_1 from the spread of the per-prompt accuracies (each the mean of its
  // k samples): sd / sqrt(prompts). The noise of the figure from which prompts were drawn; two
  // policies scored on the same prompts differ by less than their two errors combined.
  double pass_at_1_stderr = 0;
  double cons_at_k = 0;     // majority vote over the k samples
  double format_rate = 0;
  double mean_response_tokens = 0;
  int64_t prompts = 0;
};

// Standard error of the mean of `values`: the sample standard deviation (n - 1) over sqrt(n); 0
// for fewer than two values.
double standard_error(const std::vector<double>& values);

StatusOr<EvalResult> evaluate(Policy& policy, const std::vector<Problem>& problems,
                              const TaskTokenizer& tokenizer, const EvalOptions& options);

// Prompt ids of a task prompt: <bos> followed by its characters.
StatusOr<std::vector<int32_t>> prompt_ids(const TaskTokenizer& tokenizer, const std::string& prompt);
// Response text of generated ids (the trailing <eos> removed).
std::string response_text(const TaskTokenizer& tokenizer, const std::vector<int32_t>& ids);

}  // namespace grpo::runtime
