// Math answer extraction and equivalence: the exact part of the rule-based accuracy reward.
//
// extract_answer_math() finds the final answer in a model response (the last \boxed{...} with
// nested braces, an <answer> tag, GSM8K's "#### N", "The answer is ...", or the last number).
// math_equal() decides whether a predicted answer means the same as a gold answer: numbers with
// thousands separators, decimal commas, scientific notation and a relative tolerance; fractions,
// mixed numbers, percentages, roots, pi, degrees, units and \text{} wrappers; tuples, intervals,
// sets, matrices and lists of several answers; and symbolic equality of expressions, equations and
// inequalities through GiNaC (expanding the difference, then evaluating at fixed pseudo-random
// points). Both sides are parsed by the same small LaTeX/plain-text grammar; nothing is evaluated
// by an interpreter, so a response cannot run code here.
//
// Bounded and total: answers longer than EquivalenceOptions::max_answer_chars are refused, parsed
// expressions and exact powers and factorials are size-capped, symbolic expansion is skipped when
// its estimated size is too large, and every exception is caught. Neither function throws, and the
// result depends only on the inputs and options (the evaluation points are fixed).
//
// Thread safety: both functions may be called from any thread. GiNaC itself is not thread-safe, so
// math_equal() serializes its symbolic section behind one process-wide mutex; run scorers in
// several processes, not threads, when math throughput matters. No LibTorch here.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "base/status.h"

namespace grpo::runtime {

// Where the final answer sits in a response.
enum class AnswerFormat {
  kAuto,        // <answer>..</answer> (searched inside), then \boxed, then "#### N", then
                // "final answer is"/"the answer is", then the trailing math ($..$, \[..\]),
                // then the whole text if it is a bare answer, then the last number.
  kBoxed,       // the last \boxed{...} or \fbox{...}; boxes separated only by "and", commas or
                // spacing at the end of the text are joined into one comma list.
  kAnswerTag,   // the content of the last <answer>...</answer> (an unclosed tag runs to the end).
  kGsm8k,       // what follows the last "####" on its line.
  kAnswerIs,    // what follows the last "answer is" / "answer:" up to the end of the sentence.
  kLastNumber,  // the last number in the text (integers, decimals, thousands commas, a/b).
};

// "auto", "boxed", "answer_tag", "gsm8k", "answer_is", "last_number".
const char* answer_format_name(AnswerFormat format);
StatusOr<AnswerFormat> parse_answer_format(const std::string& name);

// The answer text in `text` for `format`, trimmed; nullopt when there is none. Texts longer than
// 1 MiB are searched in their last 1 MiB only.
std::optional<std::string> extract_answer_math(const std::string& text,
                                               AnswerFormat format = AnswerFormat::kAuto);

struct EquivalenceOptions {
  // Numbers written with a decimal point (or compared with one) are equal when
  // |a - b| <= max(rel_tol * max(|a|, |b|), abs_tol). Exact values (integers, fractions, roots)
  // compared with each other must be equal exactly.
  double rel_tol = 1e-6;
  double abs_tol = 1e-12;
  // Run extract_answer_math(kAuto) on each side first, so a whole response or a solution text can
  // be passed; a bare answer comes back unchanged.
  bool extract = true;
  // "50%" equals both 0.5 and 50.
  bool percent_equivalence = true;
  // A decimal literal with at least 2 places equals an exact value it rounds to (0.33 == 1/3).
  bool rounded_decimals = true;
  // Comma lists of several answers ("1, -2") compare as multisets. \{...\} sets always do;
  // parenthesized tuples and intervals never do.
  bool unordered_lists = true;
  // Compare expressions with GiNaC; when false only numbers, structures and strings are compared.
  bool symbolic = true;
  // Points at which expressions with free variables are evaluated (all must agree).
  int random_points = 6;
  // Inputs to the equivalence test (after extraction) longer than this are never equal unless
  // identical.
  std::size_t max_answer_chars = 2000;
  // Caps on one parsed answer: GiNaC nodes built, and the estimated number of terms of an
  // expansion (beyond it only the numeric test runs).
  int max_expr_nodes = 2000;
  int max_expand_terms = 2000;
};

// True when `pred` and `gold` denote the same answer. Never throws.
bool math_equal(const std::string& pred, const std::string& gold,
                const EquivalenceOptions& options = EquivalenceOptions());

}  // namespace grpo::runtime
