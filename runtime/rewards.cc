#include "runtime/rewards.h"

#include <unicode/uchar.h>
#include <unicode/uscript.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <numeric>
#include <string_view>
#include <utility>

#include "runtime/reward.h"

namespace grpo::runtime {
namespace {

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";
constexpr std::string_view kAnswerOpen = "<answer>";
constexpr std::string_view kAnswerClose = "</answer>";
constexpr int kMaxParseDepth = 100;
constexpr int kMaxLiteralDigits = 18;
// A $..$ or \(..\) span longer than this is not taken for math (its opener is plain text).
constexpr std::size_t kMaxMathSpanBytes = 4096;

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_ascii_digit(char c) { return c >= '0' && c <= '9'; }
bool is_ascii_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return is_ascii_space(c); });
}

std::string_view trim_view(std::string_view s) {
  while (!s.empty() && is_ascii_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ascii_space(s.back())) s.remove_suffix(1);
  return s;
}

std::size_t count_of(std::string_view s, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t p = s.find(needle); p != std::string_view::npos; p = s.find(needle, p + 1)) ++n;
  return n;
}

// The last kMaxRewardInputBytes of a response.
std::string_view tail_of(const std::string& s) {
  std::string_view v(s);
  if (v.size() > kMaxRewardInputBytes) v.remove_prefix(v.size() - kMaxRewardInputBytes);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Exact rationals with overflow checks. Values stay within (INT64_MIN, INT64_MAX] so that
// negation and std::gcd are always defined.

bool checked_mul(std::int64_t a, std::int64_t b, std::int64_t* out) {
  return !__builtin_mul_overflow(a, b, out) && *out != INT64_MIN;
}
bool checked_add(std::int64_t a, std::int64_t b, std::int64_t* out) {
  return !__builtin_add_overflow(a, b, out) && *out != INT64_MIN;
}

Rational reduced(std::int64_t num, std::int64_t den) {  // den > 0
  std::int64_t g = std::gcd(num, den);
  if (g > 1) {
    num /= g;
    den /= g;
  }
  return {num, den};
}

bool rational_add(const Rational& a, const Rational& b, bool subtract, Rational* out) {
  std::int64_t g = std::gcd(a.den, b.den);
  std::int64_t bn = subtract ? -b.num : b.num;
  std::int64_t den = 0, left = 0, right = 0, num = 0;
  if (!checked_mul(a.den / g, b.den, &den)) return false;
  if (!checked_mul(a.num, b.den / g, &left)) return false;
  if (!checked_mul(bn, a.den / g, &right)) return false;
  if (!checked_add(left, right, &num)) return false;
  *out = reduced(num, den);
  return true;
}

bool rational_mul(const Rational& a, const Rational& b, Rational* out) {
  std::int64_t g1 = std::gcd(a.num, b.den), g2 = std::gcd(b.num, a.den);
  if (g1 == 0) g1 = 1;
  if (g2 == 0) g2 = 1;
  std::int64_t num = 0, den = 0;
  if (!checked_mul(a.num / g1, b.num / g2, &num)) return false;
  if (!checked_mul(a.den / g2, b.den / g1, &den)) return false;
  *out = reduced(num, den);
  return true;
}

// a / b; the caller has checked b != 0.
bool rational_div(const Rational& a, const Rational& b, Rational* out) {
  Rational inv{b.num < 0 ? -b.den : b.den, b.num < 0 ? -b.num : b.num};
  return rational_mul(a, inv, out);
}

std::string rational_text(const Rational& r) {
  return r.den == 1 ? std::to_string(r.num) : std::to_string(r.num) + "/" + std::to_string(r.den);
}

std::string char_text(char c) {
  if (c >= 0x20 && c < 0x7f) return std::string("'") + c + "'";
  char buf[16];
  std::snprintf(buf, sizeof(buf), "byte 0x%02x", static_cast<unsigned char>(c));
  return buf;
}

// Recursive descent over: expr := term (('+'|'-') term)*; term := factor (('*'|'/') factor)*;
// factor := integer | '(' expr ')'.
class ArithmeticParser {
 public:
  ArithmeticParser(std::string_view text, std::vector<std::int64_t>* literals)
      : text_(text), literals_(literals) {}

  StatusOr<Rational> parse() {
    skip_spaces();
    if (pos_ == text_.size()) return invalid_argument("empty expression");
    Rational v;
    if (!parse_expr(&v)) return invalid_argument(error_);
    skip_spaces();
    if (pos_ != text_.size()) {
      return invalid_argument("unexpected " + char_text(text_[pos_]) + " at position " +
                              std::to_string(pos_));
    }
    return v;
  }

 private:
  void skip_spaces() {
    while (pos_ < text_.size() && is_ascii_space(text_[pos_])) ++pos_;
  }

  bool fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return false;
  }

  bool parse_expr(Rational* out) {
    if (!parse_term(out)) return false;
    while (true) {
      skip_spaces();
      if (pos_ == text_.size() || (text_[pos_] != '+' && text_[pos_] != '-')) return true;
      bool subtract = text_[pos_++] == '-';
      Rational rhs;
      if (!parse_term(&rhs)) return false;
      if (!rational_add(*out, rhs, subtract, out)) return fail("overflow");
    }
  }

  bool parse_term(Rational* out) {
    if (!parse_factor(out)) return false;
    while (true) {
      skip_spaces();
      if (pos_ == text_.size() || (text_[pos_] != '*' && text_[pos_] != '/')) return true;
      bool divide = text_[pos_++] == '/';
      Rational rhs;
      if (!parse_factor(&rhs)) return false;
      if (divide) {
        if (rhs.num == 0) return fail("division by zero");
        if (!rational_div(*out, rhs, out)) return fail("overflow");
      } else if (!rational_mul(*out, rhs, out)) {
        return fail("overflow");
      }
    }
  }

  bool parse_factor(Rational* out) {
    skip_spaces();
    if (pos_ == text_.size()) return fail("unexpected end of expression");
    char c = text_[pos_];
    if (c == '(') {
      if (++depth_ > kMaxParseDepth) return fail("parentheses nested too deeply");
      ++pos_;
      if (!parse_expr(out)) return false;
      skip_spaces();
      if (pos_ == text_.size() || text_[pos_] != ')') return fail("missing ')'");
      ++pos_;
      --depth_;
      return true;
    }
    if (!is_ascii_digit(c)) {
      return fail("unexpected " + char_text(c) + " at position " + std::to_string(pos_));
    }
    std::size_t begin = pos_;
    while (pos_ < text_.size() && is_ascii_digit(text_[pos_])) ++pos_;
    std::string_view digits = text_.substr(begin, pos_ - begin);
    while (digits.size() > 1 && digits.front() == '0') digits.remove_prefix(1);
    if (digits.size() > static_cast<std::size_t>(kMaxLiteralDigits)) {
      return fail("number too long at position " + std::to_string(begin));
    }
    std::int64_t value = 0;
    for (char d : digits) value = value * 10 + (d - '0');
    if (literals_) literals_->push_back(value);
    *out = {value, 1};
    return true;
  }

  std::string_view text_;
  std::vector<std::int64_t>* literals_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  std::string error_;
};

bool is_expression_char(char c) {
  return is_ascii_digit(c) || c == '+' || c == '-' || c == '*' || c == '/' || c == '(' ||
         c == ')' || c == '=' || c == ' ' || c == '\t';
}

// "55" with target 55 -> true (an optional sign and spaces are allowed around it).
bool is_target_literal(std::string_view s, std::int64_t target) {
  s = trim_view(s);
  if (s.empty() || s.size() > 20) return false;
  bool negative = false;
  if (s.front() == '-' || s.front() == '+') {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.empty()) return false;
  std::int64_t v = 0;
  for (char c : s) {
    if (!is_ascii_digit(c)) return false;
    if (!checked_mul(v, 10, &v) || !checked_add(v, c - '0', &v)) return false;
  }
  return (negative ? -v : v) == target;
}

std::string join_numbers(std::vector<std::int64_t> v) {
  std::sort(v.begin(), v.end());
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
  return out + "]";
}

// ---------------------------------------------------------------------------------------------
// Languages.

struct Language {
  const char* code;
  std::vector<UScriptCode> scripts;
};

const std::vector<Language>& languages() {
  static const std::vector<Language> k = [] {
    std::vector<Language> v;
    for (const char* code : {"en", "fr", "de", "es", "it", "pt", "nl", "pl", "sv", "da",
                             "no", "nb", "fi", "tr", "vi", "id", "ms", "cs", "sk", "ro",
                             "hu", "hr", "sl", "et", "lv", "lt", "ca", "af", "sw", "tl"}) {
      v.push_back({code, {USCRIPT_LATIN}});
    }
    v.push_back({"zh", {USCRIPT_HAN, USCRIPT_BOPOMOFO}});
    v.push_back({"ja", {USCRIPT_HAN, USCRIPT_HIRAGANA, USCRIPT_KATAKANA}});
    v.push_back({"ko", {USCRIPT_HANGUL, USCRIPT_HAN}});
    for (const char* code : {"ru", "uk", "be", "bg", "sr", "mk", "kk"}) {
      v.push_back({code, {USCRIPT_CYRILLIC}});
    }
    v.push_back({"el", {USCRIPT_GREEK}});
    for (const char* code : {"ar", "fa", "ur"}) v.push_back({code, {USCRIPT_ARABIC}});
    v.push_back({"he", {USCRIPT_HEBREW}});
    for (const char* code : {"hi", "mr", "ne"}) v.push_back({code, {USCRIPT_DEVANAGARI}});
    v.push_back({"bn", {USCRIPT_BENGALI}});
    v.push_back({"ta", {USCRIPT_TAMIL}});
    v.push_back({"te", {USCRIPT_TELUGU}});
    v.push_back({"th", {USCRIPT_THAI}});
    v.push_back({"ka", {USCRIPT_GEORGIAN}});
    v.push_back({"hy", {USCRIPT_ARMENIAN}});
    v.push_back({"am", {USCRIPT_ETHIOPIC}});
    return v;
  }();
  return k;
}

// "zh-CN" -> the zh entry; nullptr when unsupported.
const Language* find_language(const std::string& code) {
  std::string base = code.substr(0, code.find_first_of("-_"));
  std::transform(base.begin(), base.end(), base.begin(), [](char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  });
  for (const Language& l : languages()) {
    if (base == l.code) return &l;
  }
  return nullptr;
}

// Finds spans of LaTeX math in a text and answers "where does the math that opens at i end?".
// The searches for each closer only move forward, so a whole scan is linear.
class MathSpans {
 public:
  explicit MathSpans(std::string_view s) : s_(s) {}

  // When a math span opens at `i`, the index just past its closer; otherwise npos.
  std::size_t span_end(std::size_t i) {
    char c = s_[i];
    if (c == '$') {
      if (i + 1 < s_.size() && s_[i + 1] == '$') {
        return bounded(i, next(&double_dollar_, "$$", i + 2), 2);
      }
      // An inline $ opens only before a non-space (so "$5 and $10" is prose).
      if (i + 1 >= s_.size() || is_ascii_space(s_[i + 1])) return std::string_view::npos;
      return bounded(i, next_single_dollar(i + 2), 1);
    }
    if (c == '\\' && i + 1 < s_.size()) {
      if (s_[i + 1] == '(') return bounded(i, next(&paren_, "\\)", i + 2), 2);
      if (s_[i + 1] == '[') return bounded(i, next(&bracket_, "\\]", i + 2), 2);
    }
    return std::string_view::npos;
  }

 private:
  struct Cache {
    std::size_t from = 0;
    std::size_t found = 0;
    bool valid = false;
  };

  std::size_t bounded(std::size_t open, std::size_t close, std::size_t closer_len) const {
    if (close == std::string_view::npos || close - open > kMaxMathSpanBytes) {
      return std::string_view::npos;
    }
    return close + closer_len;
  }

  // The first occurrence of `needle` at or after `from`, remembering the last answer.
  std::size_t next(Cache* cache, std::string_view needle, std::size_t from) {
    if (!cache->valid || from < cache->from ||
        (cache->found != std::string_view::npos && cache->found < from)) {
      cache->found = s_.find(needle, from);
      cache->from = from;
      cache->valid = true;
    }
    return cache->found;
  }

  // A closing $: preceded by a non-space and not followed by a digit.
  std::size_t next_single_dollar(std::size_t from) {
    Cache* cache = &single_dollar_;
    if (cache->valid && from >= cache->from &&
        (cache->found == std::string_view::npos || cache->found >= from)) {
      return cache->found;
    }
    std::size_t p = from;
    for (; p < s_.size(); ++p) {
      if (s_[p] == '$' && !is_ascii_space(s_[p - 1]) &&
          (p + 1 >= s_.size() || !is_ascii_digit(s_[p + 1]))) {
        break;
      }
    }
    cache->from = from;
    cache->found = p < s_.size() ? p : std::string_view::npos;
    cache->valid = true;
    return cache->found;
  }

  std::string_view s_;
  Cache double_dollar_, single_dollar_, paren_, bracket_;
};

double language_share(std::string_view text, const Language& language,
                      const LanguageOptions& options) {
  if (text.size() > kMaxRewardInputBytes) text = text.substr(0, kMaxRewardInputBytes);
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  const auto length = static_cast<int32_t>(text.size());
  MathSpans math(text);
  std::size_t matched = 0, counted = 0;
  // The current run of letters (marks continue it): its letters are counted when it ends, so
  // that a lone ASCII letter can be dropped.
  std::size_t run_letters = 0, run_matched = 0;
  bool run_single_ascii = false;
  auto end_run = [&]() {
    if (!(options.skip_math && run_letters == 1 && run_single_ascii)) {
      counted += run_letters;
      matched += run_matched;
    }
    run_letters = run_matched = 0;
    run_single_ascii = false;
  };
  int32_t i = 0;
  while (i < length) {
    char c = text[static_cast<std::size_t>(i)];
    if (c == '\\' && i + 1 < length && is_ascii_letter(text[static_cast<std::size_t>(i) + 1])) {
      end_run();  // a LaTeX command name is notation
      ++i;
      while (i < length && is_ascii_letter(text[static_cast<std::size_t>(i)])) ++i;
      continue;
    }
    if (options.skip_math && (c == '$' || c == '\\')) {
      std::size_t end = math.span_end(static_cast<std::size_t>(i));
      if (end != std::string_view::npos) {
        end_run();
        i = static_cast<int32_t>(end);
        continue;
      }
    }
    UChar32 cp = 0;
    U8_NEXT(bytes, i, length, cp);
    if (cp < 0) {  // invalid UTF-8
      end_run();
      continue;
    }
    uint32_t mask = U_GET_GC_MASK(cp);
    if (mask & U_GC_M_MASK) continue;  // a combining mark continues its word
    if (!(mask & U_GC_L_MASK)) {
      end_run();
      continue;
    }
    UErrorCode err = U_ZERO_ERROR;
    UScriptCode script = uscript_getScript(cp, &err);
    if (U_FAILURE(err) || script == USCRIPT_COMMON || script == USCRIPT_INHERITED ||
        script == USCRIPT_UNKNOWN) {
      end_run();
      continue;
    }
    run_single_ascii = run_letters == 0 && cp < 0x80;
    ++run_letters;
    if (std::find(language.scripts.begin(), language.scripts.end(), script) !=
        language.scripts.end()) {
      ++run_matched;
    }
  }
  end_run();
  if (counted == 0) return options.empty_value;
  return static_cast<double>(matched) / static_cast<double>(counted);
}

std::int64_t code_points(const std::string& s) {
  std::int64_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Format.

double format_reward(const std::string& response, const FormatOptions& options) {
  try {
    std::string_view s(response);
    std::size_t start = 0;
    while (start < s.size() && is_ascii_space(s[start])) ++start;
    const bool leading_open = s.compare(start, kThinkOpen.size(), kThinkOpen) == 0;
    const std::size_t n_open = count_of(s, kThinkOpen), n_close = count_of(s, kThinkClose);
    const std::size_t n_aopen = count_of(s, kAnswerOpen), n_aclose = count_of(s, kAnswerClose);
    const std::size_t think_close = s.find(kThinkClose);
    const std::size_t answer_open = s.find(kAnswerOpen);
    const std::size_t answer_close = s.find(kAnswerClose);

    bool opening_ok = options.require_think_open ? (leading_open && n_open == 1)
                                                 : (n_open == (leading_open ? 1u : 0u));
    bool think_ok = opening_ok && n_close == 1;
    if (think_ok) {
      std::size_t begin = leading_open ? start + kThinkOpen.size() : 0;
      think_ok = think_close >= begin && !is_blank(s.substr(begin, think_close - begin));
    }
    bool answer_ok = n_aopen == 1 && n_aclose == 1 && answer_close > answer_open;
    if (answer_ok) {
      std::size_t begin = answer_open + kAnswerOpen.size();
      answer_ok = answer_close >= begin && !is_blank(s.substr(begin, answer_close - begin));
    }
    bool order_ok = n_close == 1 && n_aopen == 1 && think_close < answer_open &&
                    is_blank(s.substr(think_close + kThinkClose.size(),
                                      answer_open - think_close - kThinkClose.size()));
    bool tail_ok = n_aclose == 1 && is_blank(s.substr(answer_close + kAnswerClose.size()));

    if (!options.partial_credit) return think_ok && answer_ok && order_ok && tail_ok ? 1.0 : 0.0;
    return 0.25 * (think_ok + answer_ok + order_ok + tail_ok);
  } catch (...) {
    return 0.0;
  }
}

std::string reasoning_text(const std::string& response) {
  try {
    std::size_t open = response.find(kThinkOpen);
    std::size_t close = response.find(kThinkClose);
    if (close != std::string::npos) {
      std::size_t begin =
          (open != std::string::npos && open < close) ? open + kThinkOpen.size() : 0;
      return response.substr(begin, close - begin);
    }
    if (open != std::string::npos) return response.substr(open + kThinkOpen.size());
    return response;
  } catch (...) {
    return std::string();
  }
}

// ---------------------------------------------------------------------------------------------
// Overlong.

double overlong_reward(std::int64_t length, const OverlongOptions& options, bool truncated) {
  if (options.max_length <= 0) return 0.0;
  if (truncated && options.punish_truncated) return -1.0;
  const std::int64_t cache = std::clamp<std::int64_t>(options.cache_length, 0, options.max_length);
  const std::int64_t soft_start = options.max_length - cache;
  if (length <= soft_start) return 0.0;
  if (length > options.max_length) return -1.0;
  return static_cast<double>(soft_start - length) / static_cast<double>(cache);
}

// ---------------------------------------------------------------------------------------------
// Language.

std::string supported_languages() {
  std::string out;
  for (const Language& l : languages()) {
    if (!out.empty()) out += ", ";
    out += std::string(l.code) + ":";
    for (UScriptCode s : l.scripts) out += std::string(" ") + uscript_getName(s);
  }
  return out;
}

bool is_supported_language(const std::string& code) { return find_language(code) != nullptr; }

double language_consistency(const std::string& response, const LanguageOptions& options) {
  try {
    const Language* language = find_language(options.target);
    if (language == nullptr) return 0.0;
    if (!options.reasoning_only) return language_share(response, *language, options);
    return language_share(reasoning_text(response), *language, options);
  } catch (...) {
    return 0.0;
  }
}

// ---------------------------------------------------------------------------------------------
// Countdown.

Status validate_countdown_task(const CountdownTask& task) {
  if (task.nums.empty()) return invalid_argument("countdown task has no numbers");
  if (task.nums.size() > kMaxCountdownNumbers) {
    return invalid_argument("countdown task has " + std::to_string(task.nums.size()) +
                            " numbers (at most " + std::to_string(kMaxCountdownNumbers) + ")");
  }
  for (std::int64_t n : task.nums) {
    if (n < 0)
      return invalid_argument("countdown numbers must be non-negative, got " + std::to_string(n));
  }
  return ok_status();
}

StatusOr<Rational> evaluate_arithmetic(const std::string& expression,
                                       std::vector<std::int64_t>* literals) {
  try {
    if (literals) literals->clear();
    if (expression.size() > kMaxCountdownExpressionChars) {
      return invalid_argument("expression longer than " +
                              std::to_string(kMaxCountdownExpressionChars) + " characters");
    }
    return ArithmeticParser(expression, literals).parse();
  } catch (const std::exception& e) {
    return internal_error(std::string("evaluate_arithmetic: ") + e.what());
  } catch (...) {
    return internal_error("evaluate_arithmetic: unknown exception");
  }
}

std::string extract_countdown_expression(const std::string& response, std::int64_t target) {
  try {
    std::string_view s = tail_of(response);
    std::string_view candidate;
    std::size_t open = s.rfind(kAnswerOpen);
    if (open != std::string_view::npos) {
      std::size_t begin = open + kAnswerOpen.size();
      std::size_t close = s.find(kAnswerClose, begin);
      candidate = s.substr(begin, close == std::string_view::npos ? close : close - begin);
    } else {
      std::size_t think = s.rfind(kThinkClose);
      if (think != std::string_view::npos) s.remove_prefix(think + kThinkClose.size());
      s = trim_view(s);
      std::size_t nl = s.rfind('\n');
      std::string_view line = nl == std::string_view::npos ? s : s.substr(nl + 1);
      line = trim_view(line);
      while (!line.empty() && (line.back() == '.' || is_ascii_space(line.back()))) {
        line.remove_suffix(1);
      }
      std::size_t b = line.size();
      while (b > 0 && is_expression_char(line[b - 1])) --b;
      line.remove_prefix(b);
      // An expression starts with a number or '('.
      while (!line.empty() && !is_ascii_digit(line.front()) && line.front() != '(') {
        line.remove_prefix(1);
      }
      candidate = line;
    }
    candidate = trim_view(candidate);
    while (!candidate.empty() && candidate.back() == '.') {
      candidate.remove_suffix(1);
      candidate = trim_view(candidate);
    }
    if (candidate.size() > kMaxCountdownExpressionChars * 4) {
      // Far too long to be an answer; keep a prefix so that evaluation reports the length.
      candidate = candidate.substr(0, kMaxCountdownExpressionChars + 1);
    }
    std::size_t last_eq = candidate.rfind('=');
    if (last_eq != std::string_view::npos &&
        is_target_literal(candidate.substr(last_eq + 1), target)) {
      candidate = trim_view(candidate.substr(0, last_eq));
    }
    std::size_t first_eq = candidate.find('=');
    if (first_eq != std::string_view::npos &&
        is_target_literal(candidate.substr(0, first_eq), target)) {
      candidate = trim_view(candidate.substr(first_eq + 1));
    }
    return std::string(candidate);
  } catch (...) {
    return std::string();
  }
}

CountdownResult check_countdown(const std::string& response, const CountdownTask& task) {
  CountdownResult r;
  try {
    if (Status st = validate_countdown_task(task); !st.ok()) {
      r.detail = "invalid task: " + st.message();
      return r;
    }
    r.expression = extract_countdown_expression(response, task.target);
    if (r.expression.empty()) {
      r.detail = "no expression found";
      return r;
    }
    std::vector<std::int64_t> used;
    StatusOr<Rational> value = evaluate_arithmetic(r.expression, &used);
    if (!value.ok()) {
      r.detail = value.status().message();
      return r;
    }
    std::vector<std::int64_t> given = task.nums;
    std::sort(given.begin(), given.end());
    std::sort(used.begin(), used.end());
    if (used != given) {
      r.detail = "numbers used " + join_numbers(used) + " are not the given " + join_numbers(given);
      return r;
    }
    if (value->den != 1 || value->num != task.target) {
      r.detail =
          "value " + rational_text(*value) + " is not the target " + std::to_string(task.target);
      return r;
    }
    r.correct = true;
  } catch (...) {
    r.correct = false;
    r.detail = "internal error";
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Combined.

const char* reward_kind_name(RewardKind kind) {
  switch (kind) {
    case RewardKind::kMath: return "math";
    case RewardKind::kGsm8k: return "gsm8k";
    case RewardKind::kCountdown: return "countdown";
    case RewardKind::kCode: return "code";
    case RewardKind::kDemo: return "demo";
  }
  return "?";
}

StatusOr<RewardKind> parse_reward_kind(const std::string& name) {
  for (RewardKind k : {RewardKind::kMath, RewardKind::kGsm8k, RewardKind::kCountdown,
                       RewardKind::kCode, RewardKind::kDemo}) {
    if (name == reward_kind_name(k)) return k;
  }
  return invalid_argument("unknown reward kind '" + name +
                          "' (math, gsm8k, countdown, code, demo)");
}

Status validate_reward_config(const RewardConfig& config) {
  for (auto [name, w] : {std::pair<const char*, double>{"accuracy_weight", config.accuracy_weight},
                         {"format_weight", config.format_weight},
                         {"language_weight", config.language_weight},
                         {"length_weight", config.length_weight}}) {
    if (!std::isfinite(w)) return invalid_argument(std::string(name) + " must be finite");
  }
  if (!is_supported_language(config.language.target)) {
    return invalid_argument("unsupported language '" + config.language.target +
                            "' (supported: " + supported_languages() + ")");
  }
  if (!(config.language.empty_value >= 0 && config.language.empty_value <= 1)) {
    return invalid_argument("language empty_value must be in [0, 1]");
  }
  if (config.overlong.max_length < 0 || config.overlong.cache_length < 0) {
    return invalid_argument("overlong max_length and cache_length must be >= 0");
  }
  return ok_status();
}

RewardBreakdown score(RewardKind kind, const RewardSample& sample, const RewardConfig& config,
                      const CodeScorer& code_scorer) {
  RewardBreakdown b;
  auto fail = [](std::string error) {
    RewardBreakdown e;
    e.error = std::move(error);
    return e;
  };
  try {
    if (Status st = validate_reward_config(config); !st.ok()) return fail(st.message());
    const std::string& response = sample.response;
    switch (kind) {
      case RewardKind::kMath:
      case RewardKind::kGsm8k: {
        std::string gold(trim_view(sample.gold));
        if (kind == RewardKind::kGsm8k && gold.find("####") != std::string::npos) {
          auto g = extract_answer_math(gold, AnswerFormat::kGsm8k);
          if (!g) return fail("gold answer has nothing after '####'");
          gold = *g;
        }
        if (gold.empty()) return fail("empty gold answer");
        auto answer =
            extract_answer_math(response.size() > kMaxMathResponseBytes
                                    ? response.substr(response.size() - kMaxMathResponseBytes)
                                    : response,
                                config.answer_format);
        if (!answer) {
          b.detail = std::string("no answer found (format ") +
                     answer_format_name(config.answer_format) + ")";
        } else {
          b.answer = *answer;
          b.correct = math_equal(*answer, gold, config.equivalence);
          if (!b.correct) b.detail = "answer differs from gold";
        }
        b.accuracy = b.correct ? 1.0 : 0.0;
        break;
      }
      case RewardKind::kCountdown: {
        if (Status st = validate_countdown_task(sample.countdown); !st.ok()) {
          return fail(st.message());
        }
        CountdownResult c = check_countdown(response, sample.countdown);
        b.correct = c.correct;
        b.answer = c.expression;
        b.detail = c.detail;
        b.accuracy = b.correct ? 1.0 : 0.0;
        break;
      }
      case RewardKind::kCode: {
        if (!code_scorer) {
          return fail("code scoring needs a sandbox: no code scorer was given");
        }
        CodeOutcome o = code_scorer(response, sample.code);
        if (!o.error.empty()) return fail("code sandbox: " + o.error);
        b.correct = o.passed;
        double rate = std::isfinite(o.pass_rate) ? std::clamp(o.pass_rate, 0.0, 1.0) : 0.0;
        b.accuracy = config.code_pass_rate ? rate : (o.passed ? 1.0 : 0.0);
        if (!b.correct) b.detail = o.detail.empty() ? "tests failed" : o.detail;
        break;
      }
      case RewardKind::kDemo: {
        if (is_blank(sample.gold)) return fail("empty gold answer");
        Reward r =
            score_response(response, !sample.truncated, sample.gold, RewardWeights{1.0, 1.0});
        bool found = false;
        b.answer = extract_answer(response, &found);
        b.correct = r.correct;
        b.accuracy = r.accuracy;
        b.format = r.format;
        if (!found)
          b.detail = "no <answer> tag";
        else if (!b.correct)
          b.detail = "answer differs from gold";
        break;
      }
    }
    if (kind != RewardKind::kDemo) b.format = format_reward(response, config.format);
    b.language = language_consistency(response, config.language);
    const std::int64_t length = sample.length >= 0 ? sample.length : code_points(response);
    b.length = overlong_reward(length, config.overlong, sample.truncated);
    b.total = config.accuracy_weight * b.accuracy + config.format_weight * b.format +
              config.language_weight * b.language + config.length_weight * b.length;
    return b;
  } catch (const std::exception& e) {
    return fail(std::string("internal error: ") + e.what());
  } catch (...) {
    return fail("internal error");
  }
}

RewardBreakdown score(RewardKind kind, const std::string& response, const std::string& gold,
                      const RewardConfig& config) {
  if (kind != RewardKind::kMath && kind != RewardKind::kGsm8k && kind != RewardKind::kDemo) {
    RewardBreakdown e;
    e.error = std::string("reward kind '") + reward_kind_name(kind) +
              "' needs a structured gold: use score(kind, RewardSample, ...)";
    return e;
  }
  RewardSample sample;
  sample.response = response;
  sample.gold = gold;
  return score(kind, sample, config);
}

}  // namespace grpo::runtime
