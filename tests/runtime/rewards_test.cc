// Unit tests of the rule-based rewards (runtime/rewards.h): format, overlong shaping, language
// consistency, Countdown with exact arithmetic, and the combined scorer, including malformed and
// hostile model output.
#include "runtime/rewards.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

namespace grpo::runtime {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string repeat(const std::string& s, std::size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (std::size_t i = 0; i < n; ++i) out += s;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Format.

TEST(FormatRewardTest, WellFormedResponsesScoreOne) {
  EXPECT_EQ(format_reward("<think>add the units</think><answer>42</answer>"), 1.0);
  EXPECT_EQ(format_reward("<think>\nstep 1\nstep 2\n</think>\n\n<answer> 42 </answer>\n  "), 1.0);
  EXPECT_EQ(format_reward("  \n<think>r</think><answer>x</answer>"), 1.0);
}

TEST(FormatRewardTest, BrokenTemplatesScoreZero) {
  const std::vector<std::string> bad = {
      "",
      "42",
      "<think>r</think>",                                      // no answer
      "<answer>42</answer>",                                   // no reasoning
      "r</think><answer>42</answer>",                          // no <think> (required)
      "<think>r<answer>42</answer>",                           // unclosed think
      "<think>r</think><answer>42",                            // unclosed answer
      "<think>r</think><answer>42</answer> trailing words",    // text after </answer>
      "<think>r</think><answer>42</answer><|im_end|>",         // special token after it
      "<think>   </think><answer>42</answer>",                 // blank reasoning
      "<think>r</think><answer> \n </answer>",                 // blank answer
      "<think>r</think>so<answer>42</answer>",                 // text between blocks
      "<answer>42</answer><think>r</think>",                   // wrong order
      "<think>r</think><think>s</think><answer>42</answer>",   // two reasoning blocks
      "<think>r</think><answer>1</answer><answer>2</answer>",  // two answers
      "<think>a <think> b</think><answer>42</answer>",         // nested open
      "<think>r</think><answer>4</answer>2</answer>",          // extra close
      "<think>r</answer></think><answer>42</answer>",          // close inside reasoning
      "text <think>r</think><answer>42</answer>",              // text before <think>
      "<THINK>r</THINK><ANSWER>42</ANSWER>",                   // tags are case-sensitive
  };
  for (const auto& r : bad) EXPECT_EQ(format_reward(r), 0.0) << r;
}

TEST(FormatRewardTest, ThinkOpenMayComeFromThePrompt) {
  FormatOptions opts;
  opts.require_think_open = false;
  EXPECT_EQ(format_reward("the sum is 5</think>\n<answer>5</answer>", opts), 1.0);
  EXPECT_EQ(format_reward("<think>the sum is 5</think><answer>5</answer>", opts), 1.0);
  EXPECT_EQ(format_reward("so <think>the sum</think><answer>5</answer>", opts), 0.0);
  EXPECT_EQ(format_reward("</think><answer>5</answer>", opts), 0.0);          // blank reasoning
  EXPECT_EQ(format_reward("the sum is 5</think>\n<answer>5</answer>"), 0.0);  // required default
}

TEST(FormatRewardTest, PartialCreditCountsQuarters) {
  FormatOptions opts;
  opts.partial_credit = true;
  EXPECT_EQ(format_reward("<think>r</think><answer>1</answer>", opts), 1.0);
  EXPECT_EQ(format_reward("<think>r</think><answer>1</answer> extra", opts), 0.75);
  EXPECT_EQ(format_reward("<think>r</think> so <answer>1</answer>", opts), 0.75);
  EXPECT_EQ(format_reward("<think>r</think>", opts), 0.25);
  EXPECT_EQ(format_reward("<answer>1</answer>", opts), 0.5);  // answer block and its tail
  EXPECT_EQ(format_reward("<answer>1</answer><think>r</think>", opts), 0.25);  // answer only
  EXPECT_EQ(format_reward("", opts), 0.0);
  EXPECT_EQ(format_reward("no tags at all", opts), 0.0);
}

TEST(FormatRewardTest, HugeResponsesAreLinearAndStillJudged) {
  const std::string reasoning = repeat("think harder ", 500000);  // 6.5 MB
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(format_reward("<think>" + reasoning + "</think><answer>1</answer>"), 1.0);
  EXPECT_EQ(format_reward("<think>" + reasoning + "</think><answer>1</answer>x"), 0.0);
  EXPECT_EQ(format_reward(repeat("</think>", 200000)), 0.0);
  EXPECT_LT(seconds_since(t0), 5.0);
}

TEST(FormatRewardTest, ReasoningTextIsInsideThink) {
  EXPECT_EQ(reasoning_text("<think>abc</think><answer>1</answer>"), "abc");
  EXPECT_EQ(reasoning_text("abc</think><answer>1</answer>"), "abc");
  EXPECT_EQ(reasoning_text("<think>unfinished"), "unfinished");
  EXPECT_EQ(reasoning_text("plain"), "plain");
  EXPECT_EQ(reasoning_text(""), "");
}

// ---------------------------------------------------------------------------------------------
// Overlong.

TEST(OverlongRewardTest, FollowsDapoSoftPunishment) {
  OverlongOptions o;
  o.max_length = 100;
  o.cache_length = 20;
  EXPECT_EQ(overlong_reward(0, o), 0.0);
  EXPECT_EQ(overlong_reward(80, o), 0.0);
  EXPECT_DOUBLE_EQ(overlong_reward(81, o), -0.05);
  EXPECT_DOUBLE_EQ(overlong_reward(90, o), -0.5);
  EXPECT_DOUBLE_EQ(overlong_reward(100, o), -1.0);
  EXPECT_EQ(overlong_reward(101, o), -1.0);
  EXPECT_EQ(overlong_reward(1000000000000, o), -1.0);
  // Monotone non-increasing and within [-1, 0].
  double prev = 0;
  for (int l = 0; l <= 120; ++l) {
    double r = overlong_reward(l, o);
    EXPECT_LE(r, prev);
    EXPECT_GE(r, -1.0);
    prev = r;
  }
}

TEST(OverlongRewardTest, EdgeOptions) {
  OverlongOptions off;
  EXPECT_EQ(overlong_reward(1 << 30, off), 0.0);  // max_length 0: disabled
  OverlongOptions hard;
  hard.max_length = 10;
  EXPECT_EQ(overlong_reward(10, hard), 0.0);
  EXPECT_EQ(overlong_reward(11, hard), -1.0);
  OverlongOptions wide;
  wide.max_length = 10;
  wide.cache_length = 50;  // clamped to 10: the ramp starts at 0
  EXPECT_DOUBLE_EQ(overlong_reward(5, wide), -0.5);
  OverlongOptions trunc;
  trunc.max_length = 100;
  trunc.cache_length = 20;
  EXPECT_EQ(overlong_reward(50, trunc, /*truncated=*/true), 0.0);
  trunc.punish_truncated = true;
  EXPECT_EQ(overlong_reward(50, trunc, /*truncated=*/true), -1.0);
  EXPECT_EQ(overlong_reward(50, trunc, /*truncated=*/false), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Language.

double lang(const std::string& text, const std::string& target) {
  LanguageOptions o;
  o.target = target;
  return language_consistency(text, o);
}

TEST(LanguageConsistencyTest, SingleScriptTexts) {
  EXPECT_EQ(lang("First add the units, then carry the one.", "en"), 1.0);
  EXPECT_EQ(lang("首先把个位相加，然后进位。", "zh"), 1.0);
  EXPECT_EQ(lang("これは日本語の文です。カタカナも使います。", "ja"), 1.0);
  EXPECT_EQ(lang("Сначала сложим единицы.", "ru"), 1.0);
  EXPECT_EQ(lang("먼저 일의 자리를 더합니다.", "ko"), 1.0);
  EXPECT_EQ(lang("Πρώτα προσθέτουμε τις μονάδες.", "el"), 1.0);
  EXPECT_EQ(lang("नमस्ते दुनिया", "hi"), 1.0);  // vowel signs are marks inside words
  EXPECT_EQ(lang("First add the units.", "zh"), 0.0);
  EXPECT_EQ(lang("Сначала сложим единицы.", "en"), 0.0);
}

TEST(LanguageConsistencyTest, MixedScriptsGiveTheShareOfLetters) {
  // 2 Han letters, "test" 4 Latin letters; the lone "a" is notation-like and skipped.
  EXPECT_NEAR(lang("这是 a test", "zh"), 2.0 / 6.0, 1e-12);
  // Japanese counts Han as its own; Chinese does not count kana.
  const std::string ja = "日本語のテスト";  // 3 Han, 1 Hiragana, 3 Katakana
  EXPECT_EQ(lang(ja, "ja"), 1.0);
  EXPECT_NEAR(lang(ja, "zh"), 3.0 / 7.0, 1e-12);
  EXPECT_NEAR(lang("hello мир", "en"), 5.0 / 8.0, 1e-12);
}

TEST(LanguageConsistencyTest, NotationDigitsAndSymbolsAreIgnored) {
  EXPECT_EQ(lang("设 $x^2 + y^2 = r$，则 \\frac{a}{b} = 3。", "zh"), 1.0);
  EXPECT_EQ(lang("所以 \\(\\sqrt{x}\\) 和 \\[ \\int f \\] 相等", "zh"), 1.0);
  EXPECT_EQ(lang("设 x = 3，则 y = 2x + 1 = 7。", "zh"), 1.0);  // lone letters are variables
  EXPECT_EQ(lang("hello 😀 world!!! 123 + 456 = 579", "en"), 1.0);
  EXPECT_EQ(lang("cafe\xcc\x81 na\xc3\xafve", "en"), 1.0);  // combining acute, precomposed ï
  // A $ amount is prose, not math: "and" counts against Chinese.
  EXPECT_NEAR(lang("价格是$5 and $10", "zh"), 3.0 / 6.0, 1e-12);
  LanguageOptions keep;
  keep.target = "zh";
  keep.skip_math = false;
  EXPECT_NEAR(language_consistency("设 $xy$", keep), 1.0 / 3.0, 1e-12);
}

TEST(LanguageConsistencyTest, OnlyTheReasoningIsMeasured) {
  const std::string r = "<think>先算个位再进位</think><answer>The answer is 5</answer>";
  EXPECT_EQ(lang(r, "zh"), 1.0);
  LanguageOptions whole;
  whole.target = "zh";
  whole.reasoning_only = false;
  EXPECT_LT(language_consistency(r, whole), 0.5);
}

TEST(LanguageConsistencyTest, EmptyAndUnsupported) {
  EXPECT_EQ(lang("", "en"), 0.0);
  EXPECT_EQ(lang("123 + 456 = 579 !?", "en"), 0.0);
  LanguageOptions o;
  o.empty_value = 1.0;
  EXPECT_EQ(language_consistency("12345", o), 1.0);
  EXPECT_EQ(lang("hello", "xx"), 0.0);
  EXPECT_TRUE(is_supported_language("zh-CN"));
  EXPECT_TRUE(is_supported_language("EN_us"));
  EXPECT_FALSE(is_supported_language("klingon"));
  EXPECT_FALSE(is_supported_language(""));
  EXPECT_NE(supported_languages().find("ja: Han Hiragana Katakana"), std::string::npos)
      << supported_languages();
}

TEST(LanguageConsistencyTest, InvalidUtf8AndHugeInputAreSafe) {
  EXPECT_EQ(lang("\xff\xfe abc \xc3 def \xe4\xb8", "en"), 1.0);
  EXPECT_EQ(lang(std::string("ab\0cd", 5), "en"), 1.0);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(lang(repeat("word ", 1000000), "en"), 1.0);  // 5 MB: first 1 MiB read
  EXPECT_EQ(lang(repeat("$x ", 1000000), "en"), 0.0);    // unclosed $: prose, lone letters
  EXPECT_EQ(lang(repeat("\\(", 1000000), "en"), 0.0);    // unclosed \( openers
  EXPECT_EQ(lang(repeat("$$a", 500000), "en"), 0.0);
  EXPECT_LT(seconds_since(t0), 10.0);
}

// ---------------------------------------------------------------------------------------------
// Countdown.

Rational eval(const std::string& e) {
  auto r = evaluate_arithmetic(e);
  EXPECT_TRUE(r.ok()) << e << ": " << r.status();
  return r.ok() ? *r : Rational{-999, 1};
}

std::string eval_error(const std::string& e) {
  auto r = evaluate_arithmetic(e);
  EXPECT_FALSE(r.ok()) << e << " evaluated to " << (r.ok() ? r->num : 0);
  return r.ok() ? "" : r.status().message();
}

TEST(CountdownTest, EvaluatesExactly) {
  auto eq = [](Rational r, std::int64_t num, std::int64_t den) {
    return r.num == num && r.den == den;
  };
  EXPECT_TRUE(eq(eval("6/(1-3/4)"), 24, 1));
  EXPECT_TRUE(eq(eval("(1/3)*3"), 1, 1));
  EXPECT_TRUE(eq(eval("1/3 + 1/6"), 1, 2));
  EXPECT_TRUE(eq(eval("7/2"), 7, 2));
  EXPECT_TRUE(eq(eval("2-5"), -3, 1));
  EXPECT_TRUE(eq(eval("8-3-2"), 3, 1));  // left associative
  EXPECT_TRUE(eq(eval("16/4/2"), 2, 1));
  EXPECT_TRUE(eq(eval("2+3*4"), 14, 1));  // precedence
  EXPECT_TRUE(eq(eval(" ( 2 + 3 ) * 4 "), 20, 1));
  EXPECT_TRUE(eq(eval("0/5"), 0, 1));
  EXPECT_TRUE(eq(eval("1/(2-5)"), -1, 3));  // sign kept in the numerator
  EXPECT_TRUE(eq(eval("007"), 7, 1));
  std::vector<std::int64_t> literals;
  ASSERT_TRUE(evaluate_arithmetic("(96 - 74) * 3 / 007", &literals).ok());
  EXPECT_EQ(literals, (std::vector<std::int64_t>{96, 74, 3, 7}));
}

TEST(CountdownTest, RejectsBadExpressions) {
  EXPECT_EQ(eval_error("3/(5-5)"), "division by zero");
  EXPECT_EQ(eval_error("1/0"), "division by zero");
  EXPECT_EQ(eval_error("999999999999999999*999999999999999999"), "overflow");
  EXPECT_EQ(eval_error("999999999999999999*10-1+999999999999999999*10"), "overflow");
  EXPECT_EQ(eval_error("1/999999999999999999 + 1/999999999999999998"), "overflow");
  EXPECT_NE(eval_error("1234567890123456789").find("number too long"), std::string::npos);
  EXPECT_EQ(eval_error(""), "empty expression");
  EXPECT_EQ(eval_error("   "), "empty expression");
  EXPECT_NE(eval_error("-3+5").find("unexpected '-'"), std::string::npos);  // no unary minus
  EXPECT_NE(eval_error("+3").find("unexpected '+'"), std::string::npos);
  EXPECT_NE(eval_error("3x7").find("unexpected 'x'"), std::string::npos);
  EXPECT_NE(eval_error("3\xc3\x97"
                       "7")
                .find("byte 0xc3"),
            std::string::npos);  // ×
  EXPECT_NE(eval_error("3**7").find("unexpected '*'"), std::string::npos);
  EXPECT_NE(eval_error("3^2").find("unexpected '^'"), std::string::npos);
  EXPECT_NE(eval_error("2(3)").find("unexpected '('"), std::string::npos);
  EXPECT_NE(eval_error("1.5+2").find("unexpected '.'"), std::string::npos);
  EXPECT_EQ(eval_error("(1+2"), "missing ')'");
  EXPECT_NE(eval_error("1+2)").find("unexpected ')'"), std::string::npos);
  EXPECT_EQ(eval_error("1+"), "unexpected end of expression");
  EXPECT_NE(eval_error("1 = 1").find("unexpected '='"), std::string::npos);
  EXPECT_EQ(eval_error(repeat("(", 150) + "1" + repeat(")", 150)), "parentheses nested too deeply");
  EXPECT_NE(eval_error(repeat("1+", 600) + "1").find("longer than"), std::string::npos);
  EXPECT_TRUE(evaluate_arithmetic(repeat("(", 90) + "1" + repeat(")", 90)).ok());
}

CountdownTask task(std::int64_t target, std::vector<std::int64_t> nums) {
  CountdownTask t;
  t.target = target;
  t.nums = std::move(nums);
  return t;
}

TEST(CountdownTest, CorrectAnswersInTheUsualShapes) {
  const CountdownTask t = task(56, {40, 74, 58});
  for (const std::string r : {
           "<think>74-58=16, 40+16=56</think>\n<answer>40 + 74 - 58</answer>",
           "<think>...</think><answer>(74 - 58) + 40 = 56</answer>",
           "<think>...</think><answer>56 = 40 + (74 - 58)</answer>",
           "<answer> 74-58+40. </answer>",
           "<answer>40+74-58",  // unclosed tag runs to the end
           "<answer>1+2</answer> no wait <answer>40 + 74 - 58</answer>",
           "Let me try.\nSo the equation is 40 + 74 - 58 = 56.",
           "<think>hmm</think>\n(74 - 58) + 40\n",
       }) {
    CountdownResult c = check_countdown(r, t);
    EXPECT_TRUE(c.correct) << r << " -> '" << c.expression << "': " << c.detail;
  }
  // Fractions are exact: 6 / (1 - 3/4) = 24.
  EXPECT_TRUE(check_countdown("<answer>6/(1-3/4)</answer>", task(24, {1, 3, 4, 6})).correct);
  // Repeated numbers in the task must each be used.
  EXPECT_TRUE(check_countdown("<answer>2*2+3</answer>", task(7, {2, 3, 2})).correct);
}

TEST(CountdownTest, WrongAnswersAreRejectedWithAReason) {
  const CountdownTask t = task(26, {3, 5, 7});
  auto detail = [&](const std::string& r) {
    CountdownResult c = check_countdown(r, t);
    EXPECT_FALSE(c.correct) << r;
    return c.detail;
  };
  EXPECT_TRUE(check_countdown("<answer>3*7+5</answer>", t).correct);  // sanity: this one is right
  EXPECT_EQ(detail("<answer>3*7+5+3-3</answer>"),
            "numbers used [3, 3, 3, 5, 7] are not the given [3, 5, 7]");  // reused
  EXPECT_EQ(detail("<answer>3*7</answer>"), "numbers used [3, 7] are not the given [3, 5, 7]");
  EXPECT_EQ(detail("<answer>21+5</answer>"), "numbers used [5, 21] are not the given [3, 5, 7]");
  EXPECT_EQ(detail("<answer>26</answer>"), "numbers used [26] are not the given [3, 5, 7]");
  EXPECT_EQ(detail("<answer>3*5+7</answer>"), "value 22 is not the target 26");
  EXPECT_EQ(detail("<answer>7/3+5</answer>"), "value 22/3 is not the target 26");
  EXPECT_EQ(detail("<answer>3*7+5 = 27</answer>").find("unexpected '='"), 0u);  // wrong claim
  EXPECT_EQ(detail("<answer>7/(5-5)+3</answer>"), "division by zero");
  EXPECT_EQ(detail("<answer>3×7+5</answer>"), "unexpected byte 0xc3 at position 1");
  EXPECT_EQ(detail(""), "no expression found");
  EXPECT_EQ(detail("I give up."), "no expression found");
  EXPECT_EQ(detail("<answer></answer>"), "no expression found");
  const CountdownTask dup = task(7, {2, 3, 2});
  EXPECT_FALSE(check_countdown("<answer>2*2+3-2+2</answer>", dup).correct);
  EXPECT_FALSE(check_countdown("<answer>2+5</answer>", dup).correct);
}

TEST(CountdownTest, HostileInputsNeverThrow) {
  const CountdownTask t = task(26, {3, 5, 7});
  auto t0 = std::chrono::steady_clock::now();
  // A huge response: only its tail is searched, and the answer there still counts.
  EXPECT_TRUE(check_countdown(repeat("noise (((( ", 300000) + "<answer>3*7+5</answer>", t).correct);
  EXPECT_FALSE(check_countdown("<answer>" + repeat("(", 100000) + "</answer>", t).correct);
  EXPECT_FALSE(check_countdown("<answer>" + repeat("1+", 100000) + "1</answer>", t).correct);
  EXPECT_FALSE(check_countdown(repeat("\n", 100000), t).correct);
  EXPECT_FALSE(check_countdown(std::string("<answer>3\0*7+5</answer>", 23), t).correct);
  EXPECT_LT(seconds_since(t0), 5.0);
  // Invalid tasks are reported, not crashed on.
  EXPECT_NE(check_countdown("<answer>1</answer>", task(1, {})).detail.find("invalid task"),
            std::string::npos);
  EXPECT_FALSE(validate_countdown_task(task(1, {-1, 2})).ok());
  EXPECT_FALSE(validate_countdown_task(task(1, std::vector<std::int64_t>(65, 1))).ok());
  EXPECT_TRUE(validate_countdown_task(task(1, {0, 2})).ok());
}

TEST(CountdownTest, ExtractionStripsOnlyTheTarget) {
  EXPECT_EQ(extract_countdown_expression("<answer>1+2 = 3</answer>", 3), "1+2");
  EXPECT_EQ(extract_countdown_expression("<answer>3 = 1+2</answer>", 3), "1+2");
  EXPECT_EQ(extract_countdown_expression("<answer>1+2 = 4</answer>", 3), "1+2 = 4");
  EXPECT_EQ(extract_countdown_expression("The answer: (1 + 2) * 3 = 9.", 9), "(1 + 2) * 3");
  EXPECT_EQ(extract_countdown_expression("<think>1+1</think>Step 2: 4 - 1", 3), "4 - 1");
  EXPECT_EQ(extract_countdown_expression("no numbers here", 3), "");
}

// ---------------------------------------------------------------------------------------------
// Combined scorer.

TEST(RewardScoreTest, MathWithFormatWeight) {
  RewardConfig config;
  config.format_weight = 0.1;
  RewardBreakdown b =
      score(RewardKind::kMath, "<think>half of one</think><answer>\\boxed{\\frac{1}{2}}</answer>",
            "0.5", config);
  EXPECT_TRUE(b.correct) << b.detail << b.error;
  EXPECT_EQ(b.accuracy, 1.0);
  EXPECT_EQ(b.format, 1.0);
  EXPECT_EQ(b.language, 1.0);
  EXPECT_EQ(b.length, 0.0);
  EXPECT_DOUBLE_EQ(b.total, 1.1);
  EXPECT_EQ(b.answer, "\\frac{1}{2}");
  EXPECT_TRUE(b.error.empty());

  RewardBreakdown wrong = score(RewardKind::kMath, "so \\boxed{3}", "\\frac{1}{2}", config);
  EXPECT_FALSE(wrong.correct);
  EXPECT_EQ(wrong.total, 0.0);
  EXPECT_EQ(wrong.answer, "3");
  // A gold given as a whole solution is extracted.
  EXPECT_TRUE(score(RewardKind::kMath, "\\boxed{x^2+2x+1}", "so it is \\boxed{(x+1)^2}.").correct);
  RewardBreakdown none = score(RewardKind::kMath, "", "7", config);
  EXPECT_FALSE(none.correct);
  EXPECT_TRUE(none.error.empty());
  EXPECT_NE(none.detail.find("no answer"), std::string::npos) << none.answer;
}

TEST(RewardScoreTest, Gsm8kGoldAsTextOrNumber) {
  const std::string gold_text = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\n#### 1,234";
  EXPECT_TRUE(score(RewardKind::kGsm8k, "She makes 1234 dollars.\n#### 1234", gold_text).correct);
  EXPECT_TRUE(score(RewardKind::kGsm8k, "The answer is 1,234.", gold_text).correct);
  EXPECT_TRUE(score(RewardKind::kGsm8k, "<answer>18</answer>", "18").correct);
  EXPECT_TRUE(score(RewardKind::kGsm8k, "So she pays $18.00 in total.", " 18 ").correct);
  EXPECT_FALSE(score(RewardKind::kGsm8k, "The answer is 17.", "18").correct);
  RewardBreakdown bad = score(RewardKind::kGsm8k, "18", "work\n####  ");
  EXPECT_NE(bad.error.find("####"), std::string::npos);
  EXPECT_EQ(bad.total, 0.0);
}

TEST(RewardScoreTest, ErrorsZeroEverything) {
  RewardConfig config;
  config.format_weight = 1;
  RewardBreakdown b = score(RewardKind::kMath, "<think>r</think><answer>1</answer>", "  ", config);
  EXPECT_EQ(b.error, "empty gold answer");
  EXPECT_EQ(b.total, 0.0);
  EXPECT_EQ(b.format, 0.0);
  EXPECT_FALSE(b.correct);
  config.language.target = "xx";
  EXPECT_NE(score(RewardKind::kMath, "\\boxed{1}", "1", config).error.find("unsupported language"),
            std::string::npos);
  RewardConfig nan;
  nan.format_weight = std::nan("");
  EXPECT_FALSE(validate_reward_config(nan).ok());
  EXPECT_NE(score(RewardKind::kMath, "\\boxed{1}", "1", nan).error.find("finite"),
            std::string::npos);
  EXPECT_NE(score(RewardKind::kCountdown, "1", "1").error.find("structured gold"),
            std::string::npos);
  EXPECT_TRUE(validate_reward_config(RewardConfig()).ok());
}

TEST(RewardScoreTest, CountdownThroughSample) {
  RewardConfig config;
  config.format_weight = 0.1;
  RewardSample s;
  s.countdown = task(56, {40, 74, 58});
  s.response = "<think>74 - 58 = 16 and 40 + 16 = 56</think>\n<answer>40 + (74 - 58)</answer>";
  RewardBreakdown b = score(RewardKind::kCountdown, s, config);
  EXPECT_TRUE(b.correct) << b.detail;
  EXPECT_DOUBLE_EQ(b.total, 1.1);
  EXPECT_EQ(b.answer, "40 + (74 - 58)");
  s.response = "<think>try</think>\n<answer>40 + 74 + 58</answer>";
  b = score(RewardKind::kCountdown, s, config);
  EXPECT_FALSE(b.correct);
  EXPECT_DOUBLE_EQ(b.total, 0.1);  // TinyZero's "format only" score
  EXPECT_EQ(b.detail, "value 172 is not the target 56");
  s.countdown.nums.clear();
  EXPECT_EQ(score(RewardKind::kCountdown, s, config).error, "countdown task has no numbers");
}

TEST(RewardScoreTest, CodeGoesThroughTheHook) {
  RewardSample s;
  s.response = "    return 1\n";
  s.code.entry_point = "f";
  s.code.test = "def check(c):\n    assert c() == 1\n";
  EXPECT_NE(score(RewardKind::kCode, s).error.find("sandbox"), std::string::npos);
  CodeScorer pass = [](const std::string& completion, const CodeTask& t) {
    CodeOutcome o;
    o.passed = completion.find("return 1") != std::string::npos && t.entry_point == "f";
    o.pass_rate = o.passed ? 1.0 : 0.5;
    return o;
  };
  RewardBreakdown b = score(RewardKind::kCode, s, RewardConfig(), pass);
  EXPECT_TRUE(b.correct);
  EXPECT_EQ(b.total, 1.0);
  s.response = "    return 2\n";
  RewardConfig rate;
  rate.code_pass_rate = true;
  EXPECT_EQ(score(RewardKind::kCode, s, rate, pass).accuracy, 0.5);
  CodeScorer broken = [](const std::string&, const CodeTask&) {
    CodeOutcome o;
    o.error = "bwrap: Can't fork";
    return o;
  };
  EXPECT_EQ(score(RewardKind::kCode, s, RewardConfig(), broken).error,
            "code sandbox: bwrap: Can't fork");
}

TEST(RewardScoreTest, DemoKindMatchesTheDemoReward) {
  RewardConfig config;
  config.format_weight = 0.1;
  RewardSample s;
  s.response = "<think>7+5=12</think><answer>012</answer>";
  s.gold = "12";
  RewardBreakdown b = score(RewardKind::kDemo, s, config);
  EXPECT_TRUE(b.correct);
  EXPECT_EQ(b.format, 1.0);
  EXPECT_DOUBLE_EQ(b.total, 1.1);
  s.truncated = true;  // the demo template needs EOS
  EXPECT_EQ(score(RewardKind::kDemo, s, config).format, 0.0);
}

TEST(RewardScoreTest, LanguageAndLengthTerms) {
  RewardConfig config;
  config.language_weight = 0.5;
  config.language.target = "zh";
  config.overlong.max_length = 100;
  config.overlong.cache_length = 20;
  RewardSample s;
  s.gold = "5";
  s.response = "<think>先算个位</think><answer>\\boxed{5}</answer>";
  s.length = 90;
  RewardBreakdown b = score(RewardKind::kMath, s, config);
  EXPECT_TRUE(b.correct);
  EXPECT_EQ(b.language, 1.0);
  EXPECT_DOUBLE_EQ(b.length, -0.5);
  EXPECT_DOUBLE_EQ(b.total, 1.0 + 0.5 - 0.5);
  s.length = -1;  // unknown: code points (48 here), under the soft interval
  EXPECT_EQ(score(RewardKind::kMath, s, config).length, 0.0);
  s.response = "<think>" + repeat("思", 200) + "</think><answer>\\boxed{5}</answer>";
  EXPECT_EQ(score(RewardKind::kMath, s, config).length, -1.0);
}

TEST(RewardScoreTest, KindNames) {
  for (RewardKind k : {RewardKind::kMath, RewardKind::kGsm8k, RewardKind::kCountdown,
                       RewardKind::kCode, RewardKind::kDemo}) {
    auto parsed = parse_reward_kind(reward_kind_name(k));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, k);
  }
  EXPECT_FALSE(parse_reward_kind("Math").ok());
  EXPECT_FALSE(parse_reward_kind("").ok());
}

TEST(RewardScoreTest, HugeResponsesAreBounded) {
  RewardConfig config;
  config.format_weight = 0.1;
  const std::string big =
      "<think>" + repeat("let me think again. ", 200000) + "</think><answer>\\boxed{42}</answer>";
  auto t0 = std::chrono::steady_clock::now();
  RewardBreakdown b = score(RewardKind::kMath, big, "42", config);
  EXPECT_TRUE(b.correct);
  EXPECT_EQ(b.format, 1.0);
  RewardBreakdown junk = score(RewardKind::kMath, repeat("\\boxed{", 100000), "42", config);
  EXPECT_FALSE(junk.correct);
  EXPECT_LT(seconds_since(t0), 20.0);
}

TEST(RewardScoreTest, ConcurrentScoringMatchesSequential) {
  struct Case {
    RewardKind kind;
    RewardSample sample;
  };
  std::vector<Case> cases;
  for (int i = 0; i < 40; ++i) {
    RewardSample s;
    s.response = "<think>r</think><answer>\\boxed{" + std::to_string(i) + "/2}</answer>";
    s.gold = i % 3 ? "\\frac{" + std::to_string(i) + "}{2}" : "0.25";
    cases.push_back({RewardKind::kMath, s});
    RewardSample c;
    c.countdown = task(i, {i, 1, 1});
    c.response = "<answer>" + std::to_string(i) + (i % 2 ? "*1*1" : "+1-1") + "</answer>";
    cases.push_back({RewardKind::kCountdown, c});
  }
  std::vector<bool> expected;
  for (const Case& c : cases) expected.push_back(score(c.kind, c.sample).correct);
  std::vector<std::vector<bool>> got(4, std::vector<bool>(cases.size()));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t]() {
      for (std::size_t i = 0; i < cases.size(); ++i) {
        got[t][i] = score(cases[i].kind, cases[i].sample).correct;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(got[t], expected);
  EXPECT_TRUE(expected[2 * 2]);      // 2/2 == 1? gold 1: i=2 -> "\frac{2}{2}"
  EXPECT_TRUE(expected[2 * 0 + 1]);  // countdown 0+1-1 = 0
}

}  // namespace
}  // namespace grpo::runtime
