// Rule-based rewards of the R1 recipe for the real datasets: accuracy (math, GSM8K, Countdown,
// and a hook for code), the <think>/<answer> format, language consistency of the reasoning, and
// DAPO's overlong length shaping; plus score(), which combines them with configurable weights.
//
//   format_reward()         1 when the response is <think>R</think> <answer>A</answer> (one of each
//                           tag, R and A not blank, nothing but whitespace between the blocks and
//                           after </answer>); 0 otherwise, or quarters with partial credit.
//   overlong_reward()       DAPO soft overlong punishment: 0 up to Lmax - Lcache tokens, a linear
//                           ramp down to -1 at Lmax, -1 beyond (and optionally for truncated ones).
//   language_consistency()  the share of the reasoning's letters written in the target language's
//                           scripts (ICU script property), in [0, 1].
//   check_countdown()       the answer is an arithmetic expression over the given numbers (each
//                           used exactly once; + - * / and parentheses) whose exact rational value
//                           is the target.
//   score()                 one sample of a dataset kind -> RewardBreakdown (total, each term).
//
// Model output never makes these functions fail or throw: a malformed response scores 0 on the
// terms it breaks. RewardBreakdown::error is set only when the *sample or configuration* is
// unusable (an empty gold answer, an unknown language, code without a code scorer); then the
// total is 0. Work is bounded: answers are searched for in the last kMaxMathResponseBytes (math,
// GSM8K) or kMaxRewardInputBytes (Countdown) of a response, the language term reads the first
// kMaxRewardInputBytes of the reasoning, the format term is one linear scan, Countdown
// expressions are capped at kMaxCountdownExpressionChars and a parse depth, and integer
// arithmetic is checked for overflow.
//
// Thread safety: every function here is stateless and may be called from any thread at once.
// Math answers go through math_equal(), which serializes GiNaC behind one process-wide mutex, so
// math scoring gains little from threads. A CodeScorer passed to score() must itself be safe to
// call from the threads that call score(). Pure C++ plus ICU: no LibTorch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "runtime/math_verify.h"

namespace grpo::runtime {

// Countdown answers are searched for in the last kMaxRewardInputBytes of a response; the language
// term reads the first kMaxRewardInputBytes of the reasoning.
inline constexpr std::size_t kMaxRewardInputBytes = 1 << 20;
// Math and GSM8K answers are searched for in the last kMaxMathResponseBytes of a response (the
// final answer is at the end; this also bounds the cost of math_verify's extraction on
// degenerate output such as thousands of repeated \boxed{}).
inline constexpr std::size_t kMaxMathResponseBytes = 32 << 10;
// A Countdown answer longer than this is not evaluated (it is wrong).
inline constexpr std::size_t kMaxCountdownExpressionChars = 1000;
// A Countdown task with more numbers than this is refused as invalid.
inline constexpr std::size_t kMaxCountdownNumbers = 64;

// ---------------------------------------------------------------------------------------------
// Format.

struct FormatOptions {
  // The response itself must open with <think> (after optional whitespace). Set false when the
  // prompt already ends with "<think>" (R1-Zero templates): then the response starts inside the
  // reasoning, and a leading <think> is still accepted but no other one.
  bool require_think_open = true;
  // Score in quarters instead of 0/1: 0.25 each for a well-formed reasoning block, a well-formed
  // answer block, the two in order with only whitespace between, and only whitespace after
  // </answer>. All four together is exactly the strict 1.
  bool partial_credit = false;
};

// 1 when the response follows the R1 template (see the file comment), else 0 (or the partial
// score). The tags are matched literally and case-sensitively; whitespace means ASCII whitespace.
double format_reward(const std::string& response, const FormatOptions& options = FormatOptions());

// The reasoning of a response: between <think> (or the start) and the first </think>; after
// <think> to the end when there is no </think>; the whole response when it has neither tag.
std::string reasoning_text(const std::string& response);

// ---------------------------------------------------------------------------------------------
// Overlong shaping (DAPO).

struct OverlongOptions {
  // Lmax, the generation budget in tokens; 0 disables the term (it is always 0).
  std::int64_t max_length = 0;
  // Lcache, the width of the soft punishment interval below Lmax; 0 gives a hard cut at Lmax.
  // Values above max_length are clamped to it.
  std::int64_t cache_length = 0;
  // A response cut off by the generation budget (no EOS) gets -1 whatever its length.
  bool punish_truncated = false;
};

// 0 when length <= Lmax - Lcache; (Lmax - Lcache - length) / Lcache when Lmax - Lcache < length
// <= Lmax; -1 when length > Lmax (or when truncated and punish_truncated). In [-1, 0].
double overlong_reward(std::int64_t length, const OverlongOptions& options, bool truncated = false);

// ---------------------------------------------------------------------------------------------
// Language consistency.

struct LanguageOptions {
  // ISO 639-1 code of the language the reasoning should be written in ("en", "zh", "ja", "ru",
  // ...; a region or script suffix such as "zh-CN" or "en_US" is ignored). supported_languages()
  // lists them with their scripts.
  std::string target = "en";
  // Only the reasoning (see reasoning_text()) is measured; false measures the whole response.
  bool reasoning_only = true;
  // Skip LaTeX math ($..$, $$..$$, \(..\), \[..\]) and a lone ASCII letter between non-letters
  // (a variable such as x), which are notation rather than language. LaTeX command names
  // (\frac, \alpha) are always skipped.
  bool skip_math = true;
  // The value when the text has no letter that counts (empty, or only digits, notation and
  // punctuation): 0 by default, so that saying nothing earns nothing.
  double empty_value = 0.0;
};

// "en: Latin, fr: Latin, ..., zh: Han, ja: Han Hiragana Katakana, ..." for messages and --help.
std::string supported_languages();
bool is_supported_language(const std::string& code);

// The share, in [0, 1], of the counted letters whose Unicode script (ICU uscript_getScript) is
// one of the target language's scripts. Letters are the code points of general category L*;
// Common and Inherited script characters, digits, punctuation, symbols, whitespace, invalid
// UTF-8 and the skipped notation are not counted. An unsupported target gives 0.
double language_consistency(const std::string& response,
                            const LanguageOptions& options = LanguageOptions());

// ---------------------------------------------------------------------------------------------
// Countdown.

// Reach `target` with an arithmetic expression that uses each of `nums` exactly once.
struct CountdownTask {
  std::int64_t target = 0;
  std::vector<std::int64_t> nums;
};

// A task is valid with 1..kMaxCountdownNumbers non-negative numbers.
Status validate_countdown_task(const CountdownTask& task);

// An exact rational value: den > 0, gcd(|num|, den) == 1.
struct Rational {
  std::int64_t num = 0;
  std::int64_t den = 1;
};

// Evaluates an expression of non-negative integer literals (at most 18 digits), binary + - * /,
// parentheses and spaces, in exact rational arithmetic with the usual precedence (left to right
// within one level). No unary signs, no implicit multiplication, no other characters. Fails on
// a syntax error, division by zero, an intermediate value outside int64 (overflow), more than
// kMaxCountdownExpressionChars characters or parentheses nested deeper than 100. `literals`
// (optional) receives the integer literals in order of appearance.
StatusOr<Rational> evaluate_arithmetic(const std::string& expression,
                                       std::vector<std::int64_t>* literals = nullptr);

// The candidate expression of a response: the content of the last <answer>...</answer> when
// there is one (an unclosed tag runs to the end), otherwise the trailing run of expression
// characters (digits, + - * / ( ) = and spaces) on the last non-blank line after </think>. A
// trailing "= target" and a leading "target =" are stripped, and a final period. "" when none.
std::string extract_countdown_expression(const std::string& response, std::int64_t target);

struct CountdownResult {
  bool correct = false;
  std::string expression;  // what was evaluated; "" when no expression was found
  std::string detail;      // why it is not correct ("" when correct)
};

// Correct when the response's expression uses exactly the multiset `task.nums` and evaluates to
// exactly `task.target`. An invalid task is never correct (detail says why).
CountdownResult check_countdown(const std::string& response, const CountdownTask& task);

// ---------------------------------------------------------------------------------------------
// Code (hook only: the sandbox that runs tests lives elsewhere and is passed in).

// A HumanEval-style problem: program = prompt + completion + test + "check(entry_point)".
struct CodeTask {
  std::string prompt;
  std::string test;
  std::string entry_point;
};

struct CodeOutcome {
  bool passed = false;   // every test passed
  double pass_rate = 0;  // share of tests passed, in [0, 1] (== passed when not measured)
  std::string detail;    // why it did not pass ("fail", "timeout"), for the breakdown
  std::string error;     // set when the sandbox itself failed: the sample is not scored
};

// Runs `completion` against `task` in a sandbox. Must not throw; must be thread-safe when
// score() is called from several threads.
using CodeScorer = std::function<CodeOutcome(const std::string& completion, const CodeTask& task)>;

// ---------------------------------------------------------------------------------------------
// The combined scorer.

enum class RewardKind {
  kMath,       // gold: an answer, or a solution text with \boxed{} (MATH, AIME, MATH-500)
  kGsm8k,      // gold: a GSM8K answer text ending "#### N", or a bare number
  kCountdown,  // gold: CountdownTask
  kCode,       // gold: CodeTask, scored by a CodeScorer
  kDemo,       // the embedded demo task (runtime/reward.h): integer in <answer>, strict template
};

// "math", "gsm8k", "countdown", "code", "demo".
const char* reward_kind_name(RewardKind kind);
StatusOr<RewardKind> parse_reward_kind(const std::string& name);

struct RewardConfig {
  // total = accuracy_weight * accuracy + format_weight * format + language_weight * language
  //       + length_weight * length.
  double accuracy_weight = 1.0;
  double format_weight = 0.0;
  double language_weight = 0.0;
  double length_weight = 1.0;  // the length term is 0 unless overlong.max_length > 0
  FormatOptions format;
  LanguageOptions language;
  OverlongOptions overlong;
  // Where the answer sits in math and GSM8K responses (kAuto finds \boxed, <answer>, "#### N",
  // "the answer is", the last number...).
  AnswerFormat answer_format = AnswerFormat::kAuto;
  EquivalenceOptions equivalence;
  // Code: accuracy is the pass rate instead of 0/1.
  bool code_pass_rate = false;
};

// The config's own mistakes: an unsupported language, non-finite weights, negative lengths.
Status validate_reward_config(const RewardConfig& config);

// One sample to score. Only the gold field of its kind is read.
struct RewardSample {
  std::string response;
  std::string gold;         // kMath, kGsm8k, kDemo
  CountdownTask countdown;  // kCountdown
  CodeTask code;            // kCode
  // Response length in tokens for the length term; negative: unknown, count Unicode code points.
  std::int64_t length = -1;
  // Generation stopped at the budget instead of EOS (length term; kDemo's format needs EOS).
  bool truncated = false;
};

struct RewardBreakdown {
  double total = 0;
  double accuracy = 0;  // 1 correct, 0 wrong (code with code_pass_rate: the pass rate)
  double format = 0;    // format_reward(), or the demo task's strict template for kDemo
  double language = 0;  // language_consistency()
  double length = 0;    // overlong_reward(), in [-1, 0]
  bool correct = false;
  std::string answer;  // the extracted answer or expression; "" when none was found
  std::string detail;  // why a wrong answer is wrong, when known
  std::string error;   // the sample or config cannot be scored: all terms and total are 0
};

// Scores one sample. `code_scorer` is needed for kCode only (without it the result is an error).
RewardBreakdown score(RewardKind kind, const RewardSample& sample,
                      const RewardConfig& config = RewardConfig(),
                      const CodeScorer& code_scorer = nullptr);

// Shorthand for the kinds whose gold is one string (kMath, kGsm8k, kDemo); other kinds give an
// error breakdown.
RewardBreakdown score(RewardKind kind, const std::string& response, const std::string& gold,
                      const RewardConfig& config = RewardConfig());

}  // namespace grpo::runtime
