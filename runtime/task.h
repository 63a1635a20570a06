// The demo's synthetic, verifiable reasoning task: multi-digit addition in the R1 format.
//
// A problem "357+468=" is answered as
//   <think>7+8=15,5+6+1=12,3+4+1=8</think><answer>825</answer>
// (digit sums from the right, with the carry added in). Problems are drawn deterministically from
// (seed, index), so a prompt stream is reproducible and a held-out set drawn with another seed is
// disjoint in practice. Problems can also be read from a JSONL file (one object per line with
// "question" like "357+468" and "answer" like "825"). Stateless; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace grpo::runtime {

struct Problem {
  std::string prompt;  // "357+468="
  std::string answer;  // "825"
};

class AdditionTask {
 public:
  // digits: operand width (zero-padded), 1..9.
  explicit AdditionTask(int digits) : digits_(digits) {}

  int digits() const { return digits_; }
  Problem problem(uint64_t seed, uint64_t index) const;
  std::vector<Problem> problems(uint64_t seed, uint64_t count) const;
  // The worked reasoning trace and answer for SFT: "<think>...</think><answer>...</answer>".
  // With slip_step >= 0 the trace makes one arithmetic slip: the digit sum of that step (counted
  // from the right) is off by slip_delta (+1 or -1), and the rest of the trace and the answer follow
  // consistently from the wrong sum, as an imperfect demonstration would.
  // With answer_tags false the answer follows </think> bare, without <answer> tags (a format slip).
  static std::string solution(const std::string& prompt, int slip_step = -1, int slip_delta = 1,
                              bool answer_tags = true);

  // Reads problems from a JSONL file; errors name the file and line.
  static StatusOr<std::vector<Problem>> load_jsonl(const std::string& path);

 private:
  int digits_;
};

// SplitMix64: the deterministic mixer behind every seeded draw of the task.
uint64_t mix64(uint64_t x);

}  // namespace grpo::runtime
