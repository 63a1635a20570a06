// Rule-based reward of the R1 recipe for the demo task: accuracy plus format.
//
// format = 1 when the response is exactly <think>...</think><answer>...</answer> and ended with EOS;
// accuracy = 1 when the answer inside <answer> equals the gold answer as a decimal integer (leading
// zeros and surrounding spaces ignored). total = accuracy_weight * accuracy + format_weight * format.
// Never fails on model output: malformed text simply scores 0 on the terms it breaks. Thread-safe.
#pragma once

#include <string>

namespace grpo::runtime {

struct RewardWeights {
  double accuracy = 1.0;
  double format = 0.1;
};

struct Reward {
  double total = 0;
  double accuracy = 0;
  double format = 0;
  bool correct = false;
};

// Returns the text inside the last <answer>...</answer>, or "" with *found = false.
std::string extract_answer(const std::string& response, bool* found);
bool integers_equal(const std::string& a, const std::string& b);
Reward score_response(const std::string& response, bool finished, const std::string& gold,
                      const RewardWeights& weights);

}  // namespace grpo::runtime
