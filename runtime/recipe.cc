#include "runtime/recipe.h"

#include <cmath>
#include <map>

namespace grpo::runtime {

StatusOr<std::vector<int32_t>> prompt_ids(const TaskTokenizer& tokenizer, const std::string& prompt) {
  GRPO_ASSIGN_OR_RETURN(auto ids, tokenizer.encode(prompt));
  ids.insert(ids.begin(), TaskTokenizer::kBos);
  return ids;
}

std::string response_text(const TaskTokenizer& tokenizer, const std::vector<int32_t>& ids) {
  std::vector<int32_t> body(ids);
  if (!body.empty() && body.back() == TaskTokenizer::kEos) body.pop_back();
  auto text = tokenizer.decode(body);
  return text.ok() ? *text : std::string();
}

Status run_sft(Trainer& trainer, const AdditionTask& task, const TaskTokenizer& tokenizer,
               const SftOptions& options,
               const std::function<bool(int64_t, const StepStats&)>& on_step) {
  std::vector<Problem> problems;
  problems.reserve(static_cast<size_t>(options.traces));
  for (int64_t i = 0; i < options.traces; ++i) problems.push_back(task.problem(options.seed, static_cast<uint64_t>(i)));
  size_t cursor = 0;
  uint64_t rng = options.seed;
  auto next_unit = [&rng]() {
    rng = mix64(rng);
    return static_cast<double>(rng >> 11) / 9007199254740992.0;
  };
  for (int64_t step = 0; step < options.steps; ++step) {
    std::vector<TrainSample> batch;
    for (int64_t b = 0; b < options.batch_size; ++b) {
      if (cursor == 0) {  // reshuffle each epoch
        for (size_t i = problems.size(); i > 1; --i) {
          rng = mix64(rng);
          std::swap(problems[i - 1], problems[rng % i]);
        }
      }
      const Problem& p = problems[cursor];
      cursor = (cursor + 1) % problems.size();
      int slip = -1, delta = 1;
      if (options.trace_error_rate > 0 && next_unit() < options.trace_error_rate) {
        slip = static_cast<int>(next_unit() * task.digits());
        delta = next_unit() < 0.5 ? -1 : 1;
      }
      bool tags = !(options.format_error_rate > 0 && next_unit() < options.format_error_rate);
      TrainSample s;
      GRPO_ASSIGN_OR_RETURN(s.prompt_ids, prompt_ids(tokenizer, p.prompt));
      GRPO_ASSIGN_OR_RETURN(s.response_ids,
                            tokenizer.encode(AdditionTask::solution(p.prompt, slip, delta, tags)));
      s.response_ids.push_back(TaskTokenizer::kEos);
      batch.push_back(std::move(s));
    }
    GRPO_ASSIGN_OR_RETURN(StepStats stats, trainer.sft_step(batch));
    if (on_step && !on_step(step, stats))
      return cancelled("SFT stopped after step " + std::to_string(step + 1));
  }
  return ok_status();
}

double standard_error(const std::vector<double>& values) {
  const size_t n = values.size();
  if (n < 2) return 0;
  double mean = 0;
  for (double v : values) mean += v;
  mean /= static_cast<double>(n);
  double ss = 0;
  for (double v : values) ss += (v - mean) * (v - mean);
  return std::sqrt(ss / static_cast<double>(n - 1) / static_cast<double>(n));
}

StatusOr<EvalResult> evaluate(Policy& policy, const std::vector<Problem>& problems,
                              const TaskTokenizer& tokenizer, const EvalOptions& options) {
  EvalResult result;
  std::vector<double> per_prompt;  // accuracy of each prompt over its samples
  per_prompt.reserve(problems.size());
  SamplingOptions sampling;
  sampling.temperature = options.temperature;
  sampling.top_p = options.top_p;
  sampling.max_new_tokens = options.max_new_tokens;
  sampling.eos_id = TaskTokenizer::kEos;
  double correct = 0, formatted = 0, tokens = 0, cons = 0, samples = 0;
  for (size_t start = 0; start < problems.size(); start += static_cast<size_t>(options.batch_prompts)) {
    size_t end = std::min(problems.size(), start + static_cast<size_t>(options.batch_prompts));
    std::vector<GenerationRequest> requests;
    for (size_t i = start; i < end; ++i) {
      GenerationRequest r;
      GRPO_ASSIGN_OR_RETURN(r.prompt_ids, prompt_ids(tokenizer, problems[i].prompt));
      r.num_samples = options.samples_per_prompt;
      requests.push_back(std::move(r));
    }
    GRPO_ASSIGN_OR_RETURN(auto outputs, policy.generate(requests, sampling, options.seed + start));
    for (size_t i = start; i < end; ++i) {
      std::map<std::string, int> votes;
      double prompt_correct = 0;
      for (const auto& s : outputs[i - start]) {
        std::string text = response_text(tokenizer, s.ids);
        Reward r = score_response(text, s.finished, problems[i].answer, RewardWeights{});
        correct += r.accuracy;
        prompt_correct += r.accuracy;
        formatted += r.format;
        tokens += static_cast<double>(s.ids.size());
        samples += 1;
        bool found = false;
        std::string ans = extract_answer(text, &found);
        if (found) votes[ans]++;
      }
      if (!outputs[i - start].empty())
        per_prompt.push_back(prompt_correct / static_cast<double>(outputs[i - start].size()));
      std::string best;
      int best_n = 0;
      for (const auto& [a, n] : votes)
        if (n > best_n) {
          best = a;
          best_n = n;
        }
      cons += (best_n > 0 && integers_equal(best, problems[i].answer)) ? 1 : 0;
    }
  }
  result.prompts = static_cast<int64_t>(problems.size());
  if (samples > 0) {
    result.pass_at_1 = correct / samples;
    result.pass_at_1_stderr = standard_error(per_prompt);
    result.format_rate = formatted / samples;
    result.mean_response_tokens = tokens / samples;
  }
  if (!problems.empty()) result.cons_at_k = cons / static_cast<double>(problems.size());
  return result;
}

}  // namespace grpo::runtime
