// Math answer extraction and equivalence; see math_verify.h for the contract.
//
// Layout of this file: (1) string helpers, (2) extraction, (3) normalization of an answer string,
// (4) a tokenizer and a recursive-descent parser from LaTeX/plain text to a small value tree whose
// leaves are GiNaC expressions, (5) comparison of value trees, (6) math_equal.
#include "runtime/math_verify.h"

#include <ginac/ginac.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace grpo::runtime {
namespace {

constexpr std::size_t kMaxResponseChars = std::size_t{1} << 20;

// ---------------------------------------------------------------------------------------------
// (1) String helpers.

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string to_lower(std::string s) {
  for (char& c : s) c = lower(c);
  return s;
}

std::string trim(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

bool starts_with(const std::string& s, std::size_t pos, const char* w) {
  std::size_t n = std::strlen(w);
  return pos + n <= s.size() && s.compare(pos, n, w) == 0;
}

// Case-insensitive: last position of `needle` in s, or npos.
std::size_t rfind_ci(const std::string& s, const std::string& needle) {
  if (needle.empty() || needle.size() > s.size()) return std::string::npos;
  for (std::size_t i = s.size() - needle.size() + 1; i-- > 0;) {
    bool ok = true;
    for (std::size_t k = 0; k < needle.size(); ++k) {
      if (lower(s[i + k]) != lower(needle[k])) {
        ok = false;
        break;
      }
    }
    if (ok) return i;
  }
  return std::string::npos;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  std::size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
}

std::string strip_trailing_punct(std::string s) {
  s = trim(s);
  while (!s.empty()) {
    char c = s.back();
    if (c == '.' || c == ',' || c == ';' || c == ':' || c == '?' || is_space(c)) {
      s.pop_back();
    } else if (s.size() >= 2 && s.compare(s.size() - 2, 2, "\\\\") == 0) {
      s.resize(s.size() - 2);
    } else {
      break;
    }
  }
  return trim(s);
}

// Index of the '}' matching the '{' at `open`, skipping escaped characters; npos when unclosed.
std::size_t match_brace(const std::string& s, std::size_t open) {
  int depth = 0;
  for (std::size_t k = open; k < s.size(); ++k) {
    char c = s[k];
    if (c == '\\') {
      ++k;
      continue;
    }
    if (c == '{') ++depth;
    if (c == '}' && --depth == 0) return k;
  }
  return std::string::npos;
}

const std::set<std::string>& text_commands() {
  static const std::set<std::string> k = {
      "text",   "textbf",     "textit",       "textrm", "textnormal", "textsf",
      "texttt", "mbox",       "hbox",         "mathrm", "mathbf",     "mathit",
      "mathsf", "boldsymbol", "operatorname", "emph",   "textup"};
  return k;
}

// ---------------------------------------------------------------------------------------------
// (2) Extraction.

struct Box {
  std::size_t cmd_begin, content_begin, content_end, end;
};

std::vector<Box> find_boxes(const std::string& s) {
  std::vector<Box> out;
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t p1 = s.find("\\boxed", i), p2 = s.find("\\fbox", i);
    std::size_t p = std::min(p1, p2);
    if (p == std::string::npos) break;
    std::size_t q = p + (p == p1 ? 6 : 5);
    if (q < s.size() && is_alpha(s[q])) {  // \boxedx is another command
      i = q;
      continue;
    }
    while (q < s.size() && (s[q] == ' ' || s[q] == '\t')) ++q;
    if (q < s.size() && s[q] == '{') {
      std::size_t close = match_brace(s, q);
      if (close == std::string::npos) {
        out.push_back({p, q + 1, s.size(), s.size()});
        break;
      }
      out.push_back({p, q + 1, close, close + 1});
      i = close + 1;
    } else {
      std::size_t k = q;
      while (k < s.size() && !is_space(s[k]) && s[k] != '$') ++k;
      if (k > q) out.push_back({p, q, k, k});
      i = std::max(k, p + 1);
    }
  }
  return out;
}

// True when the text between two boxes only separates them ("and", commas, spacing, math
// delimiters), so that the boxes together form one answer list.
bool is_box_gap(const std::string& g) {
  std::size_t i = 0;
  while (i < g.size()) {
    char c = g[i];
    if (is_space(c) || c == ',' || c == ';' || c == '.' || c == '$' || c == '&' || c == '~') {
      ++i;
      continue;
    }
    if (c == '\\') {
      std::size_t j = i + 1;
      if (j < g.size() && !is_alpha(g[j])) {
        char d = g[j];
        if (d == '(' || d == ')' || d == '[' || d == ']' || d == ',' || d == ' ' || d == ';' ||
            d == '!' || d == ':' || d == '\\') {
          i = j + 1;
          continue;
        }
        return false;
      }
      while (j < g.size() && is_alpha(g[j])) ++j;
      std::string cmd = g.substr(i + 1, j - i - 1);
      if (cmd == "quad" || cmd == "qquad") {
        i = j;
        continue;
      }
      if (cmd == "hspace" || cmd == "text" || cmd == "mbox" || cmd == "textrm" || cmd == "mathrm") {
        // \hspace{1em}, \text{ and }, \text{or}.
        i = j;
        while (i < g.size() && is_space(g[i])) ++i;
        if (i >= g.size() || g[i] != '{') return false;
        std::size_t close = match_brace(g, i);
        if (close == std::string::npos) return false;
        std::string inner = to_lower(trim(g.substr(i + 1, close - i - 1)));
        if (cmd != "hspace" &&
            !(inner.empty() || inner == "and" || inner == "or" || inner == ",")) {
          return false;
        }
        i = close + 1;
        continue;
      }
      return false;
    }
    if (is_alpha(c)) {
      std::size_t j = i;
      while (j < g.size() && is_alpha(g[j])) ++j;
      std::string w = to_lower(g.substr(i, j - i));
      if (w != "and" && w != "or") return false;
      i = j;
      continue;
    }
    return false;
  }
  return true;
}

std::optional<std::string> extract_boxed(const std::string& s) {
  std::vector<Box> boxes = find_boxes(s);
  if (boxes.empty()) return std::nullopt;
  std::size_t first = boxes.size() - 1;
  while (first > 0) {
    const Box& a = boxes[first - 1];
    const Box& b = boxes[first];
    if (!is_box_gap(s.substr(a.end, b.cmd_begin - a.end))) break;
    --first;
  }
  std::string out;
  for (std::size_t k = first; k < boxes.size(); ++k) {
    std::string part =
        trim(s.substr(boxes[k].content_begin, boxes[k].content_end - boxes[k].content_begin));
    if (part.empty()) continue;
    if (!out.empty()) out += ", ";
    out += part;
  }
  out = trim(out);
  if (out.empty()) return std::nullopt;
  return out;
}

std::optional<std::string> extract_answer_tag(const std::string& s) {
  std::size_t open = s.rfind("<answer>");
  if (open == std::string::npos) return std::nullopt;
  std::size_t begin = open + 8;
  std::size_t close = s.find("</answer>", begin);
  std::string inner =
      trim(s.substr(begin, close == std::string::npos ? std::string::npos : close - begin));
  if (inner.empty()) return std::nullopt;
  return inner;
}

std::optional<std::string> extract_gsm8k(const std::string& s) {
  std::size_t p = s.rfind("####");
  if (p == std::string::npos) return std::nullopt;
  std::size_t begin = p + 4;
  std::size_t end = s.find('\n', begin);
  std::string out = strip_trailing_punct(
      s.substr(begin, end == std::string::npos ? std::string::npos : end - begin));
  if (out.empty()) return std::nullopt;
  return out;
}

// Last number: optional sign, digits with optional thousands commas, optional decimal part,
// optional "/digits". It must not be glued to a letter on its left ("K2" is no number).
std::optional<std::string> extract_last_number(const std::string& raw) {
  std::string s = raw;
  replace_all(s, "{,}", ",");
  replace_all(s, ",\\!", ",");
  std::optional<std::string> last;
  std::size_t i = 0;
  while (i < s.size()) {
    bool dot_start =
        s[i] == '.' && i + 1 < s.size() && is_digit(s[i + 1]) && (i == 0 || !is_digit(s[i - 1]));
    if (!is_digit(s[i]) && !dot_start) {
      ++i;
      continue;
    }
    std::size_t start = i;
    bool glued =
        start > 0 && (is_alpha(s[start - 1]) || s[start - 1] == '_' || s[start - 1] == '^');
    std::size_t j = i;
    if (dot_start) {
      j = i + 1;
      while (j < s.size() && is_digit(s[j])) ++j;
    } else {
      while (j < s.size() && is_digit(s[j])) ++j;
      // Thousands groups.
      if (j - i <= 3 && s[i] != '0') {
        while (j + 3 < s.size() && s[j] == ',' && is_digit(s[j + 1]) && is_digit(s[j + 2]) &&
               is_digit(s[j + 3]) && (j + 4 >= s.size() || !is_digit(s[j + 4]))) {
          j += 4;
        }
      }
      // Decimal part (point, or a comma followed by digits that are not a thousands group).
      if (j + 1 < s.size() && (s[j] == '.' || s[j] == ',') && is_digit(s[j + 1])) {
        std::size_t k = j + 1;
        while (k < s.size() && is_digit(s[k])) ++k;
        bool list_follows = s[j] == ',' && k < s.size() && s[k] == ',';  // "1,2,3" is a list
        if (!list_follows) j = k;
      }
    }
    std::size_t end = j;
    // Simple fraction a/b.
    if (end + 1 < s.size() && s[end] == '/' && is_digit(s[end + 1])) {
      std::size_t k = end + 1;
      while (k < s.size() && is_digit(s[k])) ++k;
      end = k;
    }
    bool negative =
        start > 0 && s[start - 1] == '-' &&
        (start == 1 || !(is_digit(s[start - 2]) || is_alpha(s[start - 2]) || s[start - 2] == ')'));
    if (!glued) last = (negative ? "-" : "") + s.substr(start, end - start);
    i = std::max(end, start + 1);
  }
  return last;
}

struct Segment {
  std::size_t open, content_begin, content_end, close_end;
};

// Math segments: $$..$$, \[..\], \(..\), $..$ (an escaped \$ is not a delimiter).
std::vector<Segment> find_math_segments(const std::string& s) {
  std::vector<Segment> out;
  std::size_t i = 0;
  auto unescaped_dollar = [&](std::size_t k) {
    return s[k] == '$' && (k == 0 || s[k - 1] != '\\');
  };
  while (i < s.size()) {
    if (starts_with(s, i, "\\[") || starts_with(s, i, "\\(")) {
      if (i > 0 && s[i - 1] == '\\') {
        i += 2;
        continue;
      }
      const char* close = s[i + 1] == '[' ? "\\]" : "\\)";
      std::size_t c = s.find(close, i + 2);
      if (c == std::string::npos) {
        i += 2;
        continue;
      }
      out.push_back({i, i + 2, c, c + 2});
      i = c + 2;
      continue;
    }
    if (unescaped_dollar(i)) {
      bool dd = i + 1 < s.size() && s[i + 1] == '$';
      std::size_t begin = i + (dd ? 2 : 1);
      std::size_t c = begin;
      bool found = false;
      while (c < s.size()) {
        if (unescaped_dollar(c)) {
          if (!dd || (c + 1 < s.size() && s[c + 1] == '$')) {
            found = true;
            break;
          }
        }
        ++c;
      }
      if (!found) {
        i = begin;
        continue;
      }
      out.push_back({i, begin, c, c + (dd ? 2 : 1)});
      i = c + (dd ? 2 : 1);
      continue;
    }
    ++i;
  }
  return out;
}

bool is_connective_word(const std::string& w) {
  return w == "and" || w == "or" || w == "percent" || w == "pct" || w == "percentage";
}

const std::set<std::string>& math_words() {
  static const std::set<std::string> k = {
      "and",  "or",     "percent", "pct",    "percentage", "sin",  "cos",  "tan", "cot", "sec",
      "csc",  "arcsin", "arccos",  "arctan", "sinh",       "cosh", "tanh", "ln",  "log", "exp",
      "sqrt", "pi",     "inf",     "infty",  "infinity",   "oo",   "abs",  "mod"};
  return k;
}

const std::set<std::string>& short_english() {
  static const std::set<std::string> k = {
      "is", "of", "in",  "so",  "it",  "to",   "be",   "we",    "an",   "as",   "at",  "by",
      "if", "on", "the", "are", "for", "that", "this", "which", "with", "then", "thus"};
  return k;
}

// A bare answer, as opposed to prose that needs extraction: no words except math words, at most
// two unit words after the last digit, or a short all-words answer ("Evelyn", "odd").
bool is_clean_answer(const std::string& s) {
  if (s.size() > 400) return false;
  std::size_t first_digit = std::string::npos, last_digit = std::string::npos;
  std::vector<std::size_t> unknown;  // positions of prose words
  std::size_t words = 0;
  bool has_symbolic = false;
  std::size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (c == '\\') {
      std::size_t b = i + 1;
      while (b < s.size() && s[b] == '\\') ++b;  // "\\frac" (escaped twice) is \frac
      std::size_t j = b;
      while (j < s.size() && is_alpha(s[j])) ++j;
      std::string cmd = s.substr(b, j - b);
      has_symbolic = true;
      if (text_commands().count(cmd) || cmd == "begin" || cmd == "end") {
        std::size_t k = j;
        while (k < s.size() && is_space(s[k])) ++k;
        if (k < s.size() && s[k] == '{') {
          std::size_t close = match_brace(s, k);
          if (close != std::string::npos) j = close + 1;
        }
      }
      i = std::max(j, i + 2);
      continue;
    }
    if (is_digit(c)) {
      if (first_digit == std::string::npos) first_digit = i;
      last_digit = i;
      ++i;
      continue;
    }
    if (is_alpha(c)) {
      std::size_t j = i;
      while (j < s.size() && is_alpha(s[j])) ++j;
      std::string w = to_lower(s.substr(i, j - i));
      ++words;
      bool prose = (w.size() >= 3 && !math_words().count(w)) || short_english().count(w);
      if (prose) unknown.push_back(i);
      i = j;
      continue;
    }
    if (std::strchr("+-*/^=<>()[]{}|_", c)) has_symbolic = true;
    ++i;
  }
  if (unknown.empty()) return true;
  if (first_digit == std::string::npos && !has_symbolic && words <= 4 && s.size() <= 60)
    return true;
  if (last_digit != std::string::npos && unknown.size() <= 2 && unknown.front() > last_digit) {
    // Units follow the number directly ("125 miles"), not after a sentence end ("19. Next").
    std::string gap = s.substr(last_digit + 1, unknown.front() - last_digit - 1);
    if (gap.find_first_of(".,;:!?<>|") == std::string::npos) return true;
  }
  return false;
}

// The answer inside a short stretch of text (after "final answer is", or a whole text).
std::optional<std::string> resolve_piece(const std::string& raw) {
  std::string p = strip_trailing_punct(raw);
  if (p.empty()) return std::nullopt;
  if (is_clean_answer(p)) return p;
  std::vector<Segment> segs = find_math_segments(p);
  if (!segs.empty()) {
    // Words outside the segments: connectives only (or units after the last one) keep the whole.
    bool whole = true;
    std::size_t prev = 0;
    for (std::size_t k = 0; k <= segs.size() && whole; ++k) {
      std::size_t b = prev, e = (k < segs.size()) ? segs[k].open : p.size();
      std::string gap = p.substr(b, e - b);
      std::size_t i = 0;
      while (i < gap.size()) {
        if (!is_alpha(gap[i])) {
          ++i;
          continue;
        }
        std::size_t j = i;
        while (j < gap.size() && is_alpha(gap[j])) ++j;
        std::string w = to_lower(gap.substr(i, j - i));
        bool units_ok = (k == segs.size()) && segs.size() >= 1;
        if (!is_connective_word(w) && !(units_ok && w.size() >= 2)) whole = false;
        i = j;
      }
      if (k == segs.size() && whole) {
        // Units after the last segment: at most two words.
        std::size_t n = 0;
        for (std::size_t t = 0; t < gap.size();) {
          if (is_alpha(gap[t])) {
            ++n;
            while (t < gap.size() && is_alpha(gap[t])) ++t;
          } else {
            ++t;
          }
        }
        if (n > 2) whole = false;
      }
      if (k < segs.size()) prev = segs[k].close_end;
    }
    if (whole) return p;
    const Segment& last = segs.back();
    // A number written after the last math segment is the later statement.
    if (auto num = extract_last_number(p.substr(last.close_end))) return num;
    std::string inner = trim(p.substr(last.content_begin, last.content_end - last.content_begin));
    if (!inner.empty()) return inner;
  }
  if (auto num = extract_last_number(p)) return num;
  return std::nullopt;
}

std::optional<std::string> extract_answer_is(const std::string& s) {
  std::size_t p = rfind_ci(s, "answer is");
  std::size_t skip = 9;
  std::size_t q = rfind_ci(s, "answer:");
  if (q != std::string::npos && (p == std::string::npos || q > p)) {
    p = q;
    skip = 7;
  }
  if (p == std::string::npos) return std::nullopt;
  std::size_t b = p + skip;
  while (b < s.size() && (is_space(s[b]) || s[b] == ':' || s[b] == '*')) ++b;
  std::size_t e = s.size();
  std::size_t nl = s.find('\n', b);
  if (nl != std::string::npos) e = std::min(e, nl);
  std::size_t hope = rfind_ci(s.substr(b, e - b), "i hope");
  if (hope != std::string::npos) e = b + hope;
  // End of sentence: ". " not inside a number.
  for (std::size_t k = b; k + 1 < e; ++k) {
    if (s[k] == '.' && is_space(s[k + 1])) {
      std::string before = s.substr(b, k - b);
      // Do not cut inside an open $...$.
      if (std::count(before.begin(), before.end(), '$') % 2 == 0) {
        e = k;
        break;
      }
    }
  }
  std::string piece = s.substr(b, e - b);
  if (auto boxed = extract_boxed(piece)) return boxed;
  return resolve_piece(piece);
}

std::optional<std::string> extract_final_answer(const std::string& s) {
  std::size_t p = rfind_ci(s, "final answer");
  if (p == std::string::npos) return std::nullopt;
  std::size_t b = p + 12;
  std::size_t e = s.size();
  std::size_t hope = rfind_ci(s.substr(b), "i hope");
  if (hope != std::string::npos) e = b + hope;
  std::size_t nl = s.find('\n', b);
  while (nl != std::string::npos && nl == b) nl = s.find('\n', ++b);
  if (nl != std::string::npos && nl < e) e = nl;
  std::string piece = s.substr(b, e - b);
  std::size_t i = 0;
  while (i < piece.size() && (is_space(piece[i]) || piece[i] == ':' || piece[i] == '*')) ++i;
  piece = piece.substr(i);
  if (auto boxed = extract_boxed(piece)) return boxed;
  // "The volume of $V$ is 120." -> what follows the last " is ".
  std::size_t is_pos = rfind_ci(piece, " is ");
  if (is_pos != std::string::npos)
    piece = piece.substr(is_pos + 4);
  else if (starts_with(to_lower(piece), 0, "is "))
    piece = piece.substr(3);
  return resolve_piece(piece);
}

std::optional<std::string> extract_auto(const std::string& text) {
  std::string s = text;
  // Chat-template special tokens (<|im_end|>, <|im_start|>) end a line of text.
  for (std::size_t p = s.find("<|"); p != std::string::npos; p = s.find("<|", p)) {
    std::size_t q = s.find("|>", p + 2);
    if (q == std::string::npos || q - p > 40) {
      p += 2;
      continue;
    }
    s.replace(p, q + 2 - p, "\n");
  }
  std::size_t think = s.rfind("</think>");
  if (think != std::string::npos) {
    std::string after = trim(s.substr(think + 8));
    if (!after.empty()) s = after;
  }
  bool from_tag = false;
  if (auto tag = extract_answer_tag(s)) {
    s = *tag;
    from_tag = true;
  }
  // A "final answer" statement after the last box wins over the box.
  std::vector<Box> boxes = find_boxes(s);
  std::size_t final_pos = rfind_ci(s, "final answer");
  if (final_pos != std::string::npos && (boxes.empty() || final_pos > boxes.back().end)) {
    if (auto f = extract_final_answer(s)) return f;
  }
  if (auto boxed = extract_boxed(s)) return boxed;
  if (auto g = extract_gsm8k(s)) return g;
  if (auto f = extract_final_answer(s)) return f;
  if (auto a = extract_answer_is(s)) return a;
  if (auto r = resolve_piece(s)) return r;
  if (from_tag) return trim(s);
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// (3) Normalization of one answer string (before tokenizing).

const std::set<std::string>& known_commands() {
  static const std::set<std::string> k = {
      "frac",     "dfrac",    "tfrac",        "cfrac",  "sqrt",   "left",         "right",
      "le",       "leq",      "ge",           "geq",    "lt",     "gt",           "ne",
      "neq",      "text",     "textbf",       "textit", "textrm", "textnormal",   "mbox",
      "mathrm",   "mathbf",   "boxed",        "fbox",   "pi",     "infty",        "cdot",
      "times",    "div",      "in",           "cup",    "cap",    "pm",           "mp",
      "circ",     "approx",   "begin",        "end",    "sin",    "cos",          "tan",
      "cot",      "sec",      "csc",          "ln",     "log",    "exp",          "binom",
      "dbinom",   "tbinom",   "theta",        "alpha",  "beta",   "gamma",        "infty",
      "leqslant", "geqslant", "operatorname", "quad",   "qquad",  "displaystyle", "dots",
      "ldots",    "cdots"};
  return k;
}

// Drops or maps UTF-8 characters to ASCII/LaTeX.
std::string ascii_fold(const std::string& s) {
  static const std::pair<const char*, const char*> kMap[] = {{"\xe2\x88\x92", "-"},
                                                             {"\xc3\x97", "*"},
                                                             {"\xc2\xb7", "*"},
                                                             {"\xc3\xb7", "/"},
                                                             {"\xe2\x89\xa4", "\\le "},
                                                             {"\xe2\x89\xa5", "\\ge "},
                                                             {"\xe2\x89\xa0", "\\ne "},
                                                             {"\xe2\x89\x88", "\\approx "},
                                                             {"\xe2\x88\x9e", "\\infty "},
                                                             {"\xcf\x80", "\\pi "},
                                                             {"\xe2\x88\x9a", "\\sqrt"},
                                                             {"\xc2\xb0", ""},
                                                             {"\xc2\xb2", "^2"},
                                                             {"\xc2\xb3", "^3"},
                                                             {"\xe2\x88\xaa", "\\cup "},
                                                             {"\xe2\x88\x88", "\\in "},
                                                             {"\xc2\xa0", " "},
                                                             {"\xe2\x80\x93", "-"},
                                                             {"\xe2\x80\x94", "-"},
                                                             {"\xef\xbc\x8c", ","}};
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += (c < 0x20 && !is_space(static_cast<char>(c))) ? ' ' : static_cast<char>(c);
      ++i;
      continue;
    }
    bool mapped = false;
    for (const auto& m : kMap) {
      if (starts_with(s, i, m.first)) {
        out += m.second;
        i += std::strlen(m.first);
        mapped = true;
        break;
      }
    }
    if (mapped) continue;
    std::size_t len = (c >= 0xF0) ? 4 : (c >= 0xE0) ? 3 : (c >= 0xC0) ? 2 : 1;
    out += ' ';
    i += len;
  }
  return out;
}

std::string normalize_answer(const std::string& in) {
  std::string s = ascii_fold(in);
  // "\\frac" written with a doubled backslash (JSON escaping twice) -> "\frac".
  {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
      if (s[i] != '\\') {
        out += s[i++];
        continue;
      }
      std::size_t run = i;
      while (run < s.size() && s[run] == '\\') ++run;
      std::size_t n = run - i;
      if (n == 2 && run < s.size() && is_alpha(s[run])) {
        std::size_t j = run;
        while (j < s.size() && is_alpha(s[j])) ++j;
        if (known_commands().count(s.substr(run, j - run))) n = 1;  // drop one backslash
      }
      out.append(n, '\\');
      i = run;
    }
    s = out;
  }
  // Thousands separators written as {,} or ,\! ; then thin spaces.
  {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '{' && i + 2 < s.size() && s[i + 1] == ',' &&
          (s[i + 2] == '}' || (s[i + 2] == ' ' && i + 3 < s.size() && s[i + 3] == '}'))) {
        while (!out.empty() && out.back() == ' ') out.pop_back();
        out += ',';
        i += (s[i + 2] == '}') ? 2 : 3;
        while (i + 1 < s.size() && s[i + 1] == ' ') ++i;
        continue;
      }
      if (s[i] == ',' && starts_with(s, i + 1, "\\!")) {
        out += ',';
        i += 2;
        while (i + 1 < s.size() && s[i + 1] == ' ') ++i;
        continue;
      }
      out += s[i];
    }
    s = out;
  }
  replace_all(s, "\\!", "");
  replace_all(s, "^{\\circ}", "");
  replace_all(s, "^{\\circ }", "");
  replace_all(s, "^\\circ", "");
  replace_all(s, "^{\\degree}", "");
  replace_all(s, "^\\degree", "");
  replace_all(s, "\\degree", "");
  replace_all(s, "\\circ", "");
  replace_all(s, "\\%", "%");
  replace_all(s, "\\$", " ");
  replace_all(s, "$", " ");
  // Math delimiters \( \) \[ \] (not a row break followed by a bracket: "\\[").
  {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\\' && i + 1 < s.size() &&
          (s[i + 1] == '(' || s[i + 1] == ')' || s[i + 1] == '[' || s[i + 1] == ']') &&
          !(i > 0 && s[i - 1] == '\\')) {
        out += ' ';
        ++i;
        continue;
      }
      out += s[i];
    }
    s = out;
  }
  s = strip_trailing_punct(s);
  while (!s.empty() && (s[0] == ':' || s[0] == ',')) s = trim(s.substr(1));
  // A whole answer wrapped in \text{...} (or \textbf, \mbox, ...) is its content.
  for (int round = 0; round < 3; ++round) {
    if (s.empty() || s[0] != '\\') break;
    std::size_t j = 1;
    while (j < s.size() && is_alpha(s[j])) ++j;
    if (!text_commands().count(s.substr(1, j - 1)) && s.substr(1, j - 1) != "boxed") break;
    std::size_t k = j;
    while (k < s.size() && is_space(s[k])) ++k;
    if (k >= s.size() || s[k] != '{') break;
    std::size_t close = match_brace(s, k);
    if (close != s.size() - 1) break;
    s = strip_trailing_punct(s.substr(k + 1, close - k - 1));
  }
  return s;
}

// A whole-word answer ("Evelyn", "even", "ellipse"), compared case-insensitively.
bool is_text_answer(const std::string& s) {
  bool long_word = false;
  std::size_t run = 0;
  for (char c : s) {
    if (is_alpha(c)) {
      if (++run >= 3) long_word = true;
      continue;
    }
    run = 0;
    if (c == ' ' || c == '-' || c == '\'' || c == '.') continue;
    return false;
  }
  if (!long_word) return false;
  // Words that are math (sin x, pi) are not text.
  std::size_t i = 0;
  while (i < s.size()) {
    if (!is_alpha(s[i])) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < s.size() && is_alpha(s[j])) ++j;
    std::string w = to_lower(s.substr(i, j - i));
    if (math_words().count(w) && !is_connective_word(w)) return false;
    i = j;
  }
  return true;
}

std::string canonical_text(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (is_space(c)) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += lower(c);
    }
  }
  return trim(out);
}

std::string squash(const std::string& s) {
  std::string out;
  for (char c : s)
    if (!is_space(c)) out += c;
  return out;
}

// ---------------------------------------------------------------------------------------------
// (4) Tokenizer and parser.

struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class Tk { kNum, kSym, kWord, kCmd, kText, kOp, kEnd };

struct Token {
  Tk type = Tk::kEnd;
  std::string s;
};

const std::set<std::string>& function_names() {
  static const std::set<std::string> k = {
      "sin",  "cos",  "tan",  "cot",  "sec", "csc", "arcsin", "arccos", "arctan", "asin", "acos",
      "atan", "sinh", "cosh", "tanh", "ln",  "log", "lg",     "exp",    "sqrt",   "abs",  "arccot"};
  return k;
}

const std::set<std::string>& greek_names() {
  static const std::set<std::string> k = {
      "alpha",    "beta",    "gamma", "delta",  "epsilon", "varepsilon", "zeta",  "eta",   "theta",
      "vartheta", "iota",    "kappa", "lambda", "mu",      "nu",         "xi",    "rho",   "sigma",
      "tau",      "upsilon", "phi",   "varphi", "chi",     "psi",        "omega", "Gamma", "Delta",
      "Theta",    "Lambda",  "Xi",    "Sigma",  "Phi",     "Psi",        "Omega"};
  return k;
}

const std::set<std::string>& short_units() {
  static const std::set<std::string> k = {"cm", "mm", "km",  "m",  "kg", "mg",  "g",   "ft", "yd",
                                          "mi", "lb", "lbs", "oz", "hr", "hrs", "min", "ms", "ml",
                                          "mL", "s",  "in",  "sq", "cc", "mph", "kph"};
  return k;
}

std::vector<Token> tokenize(const std::string& s) {
  std::vector<Token> out;
  int depth = 0;  // ( [ \{ nesting, for thousands separators
  std::size_t i = 0;
  auto push = [&](Tk t, std::string v) { out.push_back({t, std::move(v)}); };
  while (i < s.size()) {
    if (out.size() > 1500) throw ParseError("too many tokens");
    char c = s[i];
    if (is_space(c) || c == '~' || c == '"' || c == '\'' || c == '`') {
      ++i;
      continue;
    }
    if (is_digit(c) || (c == '.' && i + 1 < s.size() && is_digit(s[i + 1]))) {
      std::size_t j = i;
      while (j < s.size() && is_digit(s[j])) ++j;
      std::string num = s.substr(i, j - i);
      if (depth == 0 && !num.empty() && num.size() <= 3 && num[0] != '0') {
        while (j + 3 < s.size() && s[j] == ',' && is_digit(s[j + 1]) && is_digit(s[j + 2]) &&
               is_digit(s[j + 3]) && (j + 4 >= s.size() || !is_digit(s[j + 4]))) {
          num += s.substr(j + 1, 3);
          j += 4;
        }
      }
      if (j < s.size() && s[j] == '.' && j + 1 < s.size() && is_digit(s[j + 1])) {
        std::size_t k = j + 1;
        while (k < s.size() && is_digit(s[k])) ++k;
        num += s.substr(j, k - j);
        j = k;
      } else if (j < s.size() && s[j] == '.' && !num.empty() &&
                 !(j + 1 < s.size() && (is_alpha(s[j + 1]) || s[j + 1] == '.'))) {
        ++j;  // "5." is 5
      }
      if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
        std::size_t k = j + 1;
        if (k < s.size() && (s[k] == '+' || s[k] == '-')) ++k;
        if (k < s.size() && is_digit(s[k])) {
          std::size_t m = k;
          while (m < s.size() && is_digit(s[m])) ++m;
          if (m >= s.size() || !is_alpha(s[m])) {
            num += "e" + s.substr(j + 1, m - j - 1);
            j = m;
          }
        }
      }
      if (num.size() > 400) throw ParseError("number too long");
      push(Tk::kNum, num);
      i = j;
      continue;
    }
    if (is_alpha(c)) {
      std::size_t j = i;
      while (j < s.size() && is_alpha(s[j])) ++j;
      std::string w = s.substr(i, j - i);
      push(w.size() == 1 ? Tk::kSym : Tk::kWord, w);
      i = j;
      continue;
    }
    if (c == '\\') {
      if (i + 1 >= s.size()) {
        ++i;
        continue;
      }
      char d = s[i + 1];
      if (is_alpha(d)) {
        std::size_t j = i + 1;
        while (j < s.size() && is_alpha(s[j])) ++j;
        std::string cmd = s.substr(i + 1, j - i - 1);
        i = j;
        static const std::map<std::string, std::string> kOps = {{"le", "<="},
                                                                {"leq", "<="},
                                                                {"leqslant", "<="},
                                                                {"ge", ">="},
                                                                {"geq", ">="},
                                                                {"geqslant", ">="},
                                                                {"lt", "<"},
                                                                {"gt", ">"},
                                                                {"ne", "!="},
                                                                {"neq", "!="},
                                                                {"cdot", "*"},
                                                                {"times", "*"},
                                                                {"ast", "*"},
                                                                {"div", "/"},
                                                                {"approx", "~="},
                                                                {"simeq", "~="},
                                                                {"sim", "~="},
                                                                {"pm", "+-"},
                                                                {"mp", "-+"},
                                                                {"in", "in"},
                                                                {"cup", "cup"},
                                                                {"cap", "cap"},
                                                                {"colon", ":"},
                                                                {"mid", "|"},
                                                                {"vert", "|"},
                                                                {"lvert", "|"},
                                                                {"rvert", "|"},
                                                                {"to", "to"},
                                                                {"setminus", "setminus"},
                                                                {"land", "and"},
                                                                {"lor", "or"},
                                                                {"wedge", "and"},
                                                                {"lbrace", "\\{"},
                                                                {"rbrace", "\\}"},
                                                                {"langle", "("},
                                                                {"rangle", ")"},
                                                                {"equiv", "="}};
        auto op = kOps.find(cmd);
        if (op != kOps.end()) {
          if (op->second == "and" || op->second == "or")
            push(Tk::kWord, op->second);
          else
            push(Tk::kOp, op->second);
          continue;
        }
        if (text_commands().count(cmd)) {
          std::size_t k = i;
          while (k < s.size() && is_space(s[k])) ++k;
          std::string content;
          if (k < s.size() && s[k] == '{') {
            std::size_t close = match_brace(s, k);
            if (close == std::string::npos) throw ParseError("unclosed text");
            content = s.substr(k + 1, close - k - 1);
            i = close + 1;
          } else if (k < s.size()) {
            content = s.substr(k, 1);
            i = k + 1;
          }
          push(Tk::kText, trim(content));
          continue;
        }
        if (cmd == "left" || cmd == "right" || cmd == "bigl" || cmd == "bigr" || cmd == "Bigl" ||
            cmd == "Bigr" || cmd == "big" || cmd == "Big" || cmd == "bigg" || cmd == "Bigg" ||
            cmd == "biggl" || cmd == "biggr") {
          while (i < s.size() && is_space(s[i])) ++i;
          if (i < s.size() && s[i] == '.') ++i;
          continue;
        }
        static const std::set<std::string> kSkip = {"displaystyle", "textstyle",
                                                    "scriptstyle",  "boxed",
                                                    "fbox",         "limits",
                                                    "nolimits",     "quad",
                                                    "qquad",        "dots",
                                                    "ldots",        "cdots",
                                                    "hline",        "overline",
                                                    "underline",    "bar",
                                                    "hat",          "vec",
                                                    "widehat",      "tilde",
                                                    "widetilde",    "overrightarrow",
                                                    "mathbb",       "mathcal",
                                                    "dot",          "ddot",
                                                    "noindent",     "hfill",
                                                    "smallskip",    "medskip",
                                                    "bigskip",      "centering",
                                                    "mathop",       "nonumber",
                                                    "notag",        "phantom"};
        if (kSkip.count(cmd)) continue;
        static const std::map<std::string, std::string> kAlias = {
            {"dfrac", "frac"},        {"tfrac", "frac"},         {"cfrac", "frac"},
            {"dbinom", "binom"},      {"tbinom", "binom"},       {"infin", "infty"},
            {"emptyset", "emptyset"}, {"varnothing", "emptyset"}};
        auto al = kAlias.find(cmd);
        push(Tk::kCmd, al == kAlias.end() ? cmd : al->second);
        continue;
      }
      if (d == '\\') {
        push(Tk::kOp, "\\\\");
        i += 2;
        continue;
      }
      if (d == '{' || d == '}') {
        depth += (d == '{') ? 1 : -1;
        push(Tk::kOp, d == '{' ? "\\{" : "\\}");
        i += 2;
        continue;
      }
      if (d == '%') {
        push(Tk::kOp, "%");
        i += 2;
        continue;
      }
      if (d == '|') {
        push(Tk::kOp, "|");
        i += 2;
        continue;
      }
      i += 2;  // \, \; \: \  \$ \# and other spacing or escapes
      continue;
    }
    if ((c == '<' || c == '>' || c == '!' || c == '=') && i + 1 < s.size() && s[i + 1] == '=') {
      push(Tk::kOp, c == '=' ? "=" : std::string(1, c) + "=");
      i += 2;
      continue;
    }
    if (c == '=' && i + 1 < s.size() && s[i + 1] == '>') {  // "=>" reads as >=
      push(Tk::kOp, ">=");
      i += 2;
      continue;
    }
    if (c == '(' || c == '[') ++depth;
    if (c == ')' || c == ']') --depth;
    if (std::strchr("+-*/^_()[]{},;:=<>!|&%", c)) {
      push(Tk::kOp, std::string(1, c));
      ++i;
      continue;
    }
    throw ParseError(std::string("unexpected character '") + c + "'");
  }
  out.push_back({Tk::kEnd, ""});
  return out;
}

using GiNaC::ex;
using GiNaC::numeric;

// A parsed answer. Leaves are GiNaC expressions; the rest is structure.
struct Val {
  enum Kind { kExpr, kText, kTuple, kSet, kList, kUnion, kMatrix, kRel } kind = kExpr;
  ex e;
  bool inexact = false;      // a decimal literal went into it
  bool percent = false;      // written with % / percent
  int decimal_places = -1;   // it is exactly one decimal literal with this many places
  bool int_literal = false;  // it is exactly one unsigned integer literal
  bool simple_frac = false;  // \frac of two integer literals (for mixed numbers)
  std::string name;          // a lone symbol's or literal's spelling (for subscripts)
  std::string text;          // kText
  std::string open, close;   // kTuple brackets
  std::vector<Val> items;    // tuple/set/list/union items, matrix entries row-major, rel {lhs, rhs}
  int rows = 0, cols = 0;    // kMatrix
  std::string op;            // kRel: "=", "<", "<=", "!=", "in"
  bool assignment = false;   // kRel: the lhs only names the value on the right
};

Val expr_val(const ex& e) {
  Val v;
  v.e = e;
  return v;
}

struct Ctx {
  const EquivalenceOptions* opts = nullptr;
  std::map<std::string, GiNaC::symbol> syms;
  int nodes = 0;

  ex sym(const std::string& name) {
    auto it = syms.find(name);
    if (it == syms.end()) {
      if (syms.size() > 40) throw ParseError("too many symbols");
      it = syms.emplace(name, GiNaC::symbol(name)).first;
    }
    return it->second;
  }
  ex pm() { return sym("__pm__"); }
  ex inf() { return sym("__oo__"); }
  void count(int n = 1) {
    nodes += n;
    if (nodes > opts->max_expr_nodes) throw ParseError("expression too large");
  }
};

bool has_free_symbols(const ex& e) {
  for (auto it = e.preorder_begin(); it != e.preorder_end(); ++it) {
    if (GiNaC::is_a<GiNaC::symbol>(*it)) {
      const std::string& n = GiNaC::ex_to<GiNaC::symbol>(*it).get_name();
      if (n != "__oo__") return true;
    }
  }
  return false;
}

void collect_symbols(const ex& e, std::map<std::string, ex>& out) {
  for (auto it = e.preorder_begin(); it != e.preorder_end(); ++it) {
    if (GiNaC::is_a<GiNaC::symbol>(*it)) out[GiNaC::ex_to<GiNaC::symbol>(*it).get_name()] = *it;
  }
}

// Bit length of a rational's numerator plus denominator.
long bits_of(const numeric& n) {
  if (n.is_zero()) return 1;
  if (!n.is_rational()) return 64;
  return n.numer().int_length() + n.denom().int_length();
}

class Parser {
 public:
  Parser(std::vector<Token> toks, Ctx& ctx) : toks_(std::move(toks)), ctx_(ctx) {}

  Val parse_answer() {
    Val v = parse_list();
    if (peek().type != Tk::kEnd) throw ParseError("trailing input: " + peek().s);
    return v;
  }

 private:
  // ---- token access
  const Token& peek(std::size_t k = 0) const {
    std::size_t idx = std::min(pos_ + k, toks_.size() - 1);
    return toks_[idx];
  }
  bool is_op(const char* s, std::size_t k = 0) const {
    const Token& t = peek(k);
    return t.type == Tk::kOp && t.s == s;
  }
  Token next() {
    Token t = peek();
    if (pos_ < toks_.size() - 1) ++pos_;
    return t;
  }
  void expect_op(const char* s) {
    if (!is_op(s)) throw ParseError(std::string("expected ") + s);
    next();
  }
  struct DepthGuard {
    explicit DepthGuard(int& d) : d_(d) {
      if (++d_ > 400) throw ParseError("nested too deeply");
    }
    ~DepthGuard() { --d_; }
    int& d_;
  };

  bool is_closer(const Token& t) const {
    return t.type == Tk::kEnd ||
           (t.type == Tk::kOp && (t.s == ")" || t.s == "]" || t.s == "}" || t.s == "\\}" ||
                                  t.s == "&" || t.s == "\\\\"));
  }
  bool is_separator(const Token& t) const {
    if (t.type == Tk::kOp) return t.s == "," || t.s == ";";
    if (t.type == Tk::kWord) {
      std::string w = to_lower(t.s);
      return w == "and" || w == "or";
    }
    if (t.type == Tk::kText) {
      std::string w = to_lower(t.s);
      return w == "and" || w == "or" || w == "," || w == "or " || w.empty();
    }
    return false;
  }
  bool is_relop(const Token& t) const {
    return t.type == Tk::kOp && (t.s == "=" || t.s == "<" || t.s == ">" || t.s == "<=" ||
                                 t.s == ">=" || t.s == "!=" || t.s == "~=" || t.s == "in");
  }

  // ---- lists, relations
  Val parse_list() {
    DepthGuard g(depth_);
    std::vector<Val> items;
    std::vector<std::string> seps;
    items.push_back(parse_relation());
    while (is_separator(peek())) {
      Token sep = next();
      while (is_separator(peek())) next();
      seps.push_back(sep.type == Tk::kOp ? sep.s : ",");
      if (is_closer(peek())) break;
      items.push_back(parse_relation());
      if (items.size() > 200) throw ParseError("list too long");
    }
    if (items.size() == 1) return items[0];
    bool semi = std::find(seps.begin(), seps.end(), ";") != seps.end();
    bool comma = std::find(seps.begin(), seps.end(), ",") != seps.end();
    Val list;
    list.kind = Val::kList;
    if (semi && comma && seps.size() + 1 == items.size()) {
      // "p=5, q=2; p=7, q=2": semicolons separate tuples.
      std::vector<Val> group;
      auto flush = [&]() {
        if (group.size() == 1) {
          list.items.push_back(group[0]);
        } else if (!group.empty()) {
          Val t;
          t.kind = Val::kTuple;
          t.open = "(";
          t.close = ")";
          for (Val& g2 : group) t.items.push_back(value_of(g2));
          list.items.push_back(t);
        }
        group.clear();
      };
      for (std::size_t k = 0; k < items.size(); ++k) {
        group.push_back(items[k]);
        if (k < seps.size() && seps[k] == ";") flush();
      }
      flush();
      return list;
    }
    list.items = std::move(items);
    return list;
  }

  static Val value_of(const Val& v) {
    if (v.kind == Val::kRel && v.assignment) return v.items[1];
    return v;
  }

  bool var_like(const Val& v) const {
    if (v.kind == Val::kTuple) {
      for (const Val& it : v.items)
        if (!var_like(it)) return false;
      return !v.items.empty();
    }
    if (v.kind != Val::kExpr) return false;
    const ex& e = v.e;
    auto plain_symbol = [](const ex& x) {
      if (!GiNaC::is_a<GiNaC::symbol>(x)) return false;
      const std::string& n = GiNaC::ex_to<GiNaC::symbol>(x).get_name();
      return n != "__pm__" && n != "__oo__";
    };
    if (plain_symbol(e)) return true;
    if (GiNaC::is_a<GiNaC::mul>(e) || GiNaC::is_a<GiNaC::power>(e)) {
      std::vector<ex> factors;
      if (GiNaC::is_a<GiNaC::mul>(e)) {
        for (std::size_t k = 0; k < e.nops(); ++k) factors.push_back(e.op(k));
      } else {
        factors.push_back(e);
      }
      for (const ex& f : factors) {
        if (plain_symbol(f)) continue;
        if (GiNaC::is_a<GiNaC::power>(f) && plain_symbol(f.op(0)) &&
            GiNaC::is_a<GiNaC::numeric>(f.op(1)) &&
            GiNaC::ex_to<GiNaC::numeric>(f.op(1)).is_integer()) {
          continue;
        }
        return false;
      }
      return true;
    }
    return false;
  }

  static bool val_has_symbols(const Val& v) {
    if (v.kind == Val::kExpr) return has_free_symbols(v.e);
    for (const Val& it : v.items)
      if (val_has_symbols(it)) return true;
    return v.kind == Val::kText;
  }

  Val make_rel(const std::string& op, Val lhs, Val rhs) {
    Val r;
    r.kind = Val::kRel;
    r.op = op;
    r.items.push_back(std::move(lhs));
    r.items.push_back(std::move(rhs));
    return r;
  }

  Val parse_relation() {
    DepthGuard g(depth_);
    std::vector<Val> parts;
    std::vector<std::string> ops;
    parts.push_back(parse_set_expr());
    while (is_relop(peek())) {
      ops.push_back(next().s);
      parts.push_back(parse_set_expr());
      if (parts.size() > 20) throw ParseError("relation chain too long");
    }
    if (ops.empty()) return parts[0];
    // a = b ~= c: the approximation is a remark when an equality precedes it.
    auto approx = std::find(ops.begin(), ops.end(), "~=");
    if (approx != ops.end()) {
      bool eq_before = std::find(ops.begin(), approx, "=") != approx;
      if (eq_before) {
        std::size_t k = approx - ops.begin();
        ops.resize(k);
        parts.resize(k + 1);
      } else {
        for (auto& o : ops)
          if (o == "~=") o = "=";
      }
    }
    if (ops.size() == 1 && ops[0] == "in") {
      Val r = make_rel("in", parts[0], parts[1]);
      r.assignment = true;
      return r;
    }
    bool all_eq =
        std::all_of(ops.begin(), ops.end(), [](const std::string& o) { return o == "="; });
    if (all_eq) {
      Val r = make_rel("=", parts.front(), parts.back());
      if (parts.size() >= 3) {
        r.assignment = true;
      } else {
        r.assignment =
            var_like(parts[0]) || (!val_has_symbols(parts[0]) && !val_has_symbols(parts[1]));
      }
      return r;
    }
    auto is_less = [](const std::string& o) { return o == "<" || o == "<="; };
    auto is_greater = [](const std::string& o) { return o == ">" || o == ">="; };
    if (ops.size() == 1) {
      const std::string& o = ops[0];
      if (o == "!=") return make_rel("!=", parts[0], parts[1]);
      if (is_less(o)) return make_rel(o, parts[0], parts[1]);
      if (is_greater(o)) return make_rel(o == ">" ? "<" : "<=", parts[1], parts[0]);
      throw ParseError("bad relation");
    }
    if (ops.size() == 2) {
      // a < x <= b is the interval (a, b].
      if (is_less(ops[0]) && is_less(ops[1])) {
        return interval(parts[0], parts[2], ops[0] == "<", ops[1] == "<");
      }
      if (is_greater(ops[0]) && is_greater(ops[1])) {
        return interval(parts[2], parts[0], ops[1] == ">", ops[0] == ">");
      }
    }
    throw ParseError("unsupported relation chain");
  }

  Val interval(Val lo, Val hi, bool open_lo, bool open_hi) {
    Val t;
    t.kind = Val::kTuple;
    t.open = open_lo ? "(" : "[";
    t.close = open_hi ? ")" : "]";
    t.items.push_back(std::move(lo));
    t.items.push_back(std::move(hi));
    return t;
  }

  Val parse_set_expr() {
    Val v = parse_expr();
    if (!is_op("cup")) return v;
    Val u;
    u.kind = Val::kUnion;
    u.items.push_back(std::move(v));
    while (is_op("cup")) {
      next();
      u.items.push_back(parse_expr());
      if (u.items.size() > 100) throw ParseError("union too long");
    }
    return u;
  }

  // ---- arithmetic on values
  static void merge_flags(Val& out, const Val& a, const Val& b) {
    out.inexact = a.inexact || b.inexact;
    out.percent = a.percent || b.percent;
  }

  Val add(const Val& a, const Val& b, int sign) {
    if (a.kind == Val::kMatrix && b.kind == Val::kMatrix) {
      if (a.rows != b.rows || a.cols != b.cols) throw ParseError("matrix shape");
      Val m = a;
      for (std::size_t k = 0; k < m.items.size(); ++k)
        m.items[k] = add(a.items[k], b.items[k], sign);
      return m;
    }
    require_expr(a);
    require_expr(b);
    ctx_.count();
    Val v = expr_val(sign > 0 ? a.e + b.e : a.e - b.e);
    merge_flags(v, a, b);
    return v;
  }

  Val mul(const Val& a, const Val& b) {
    if (a.kind == Val::kMatrix && b.kind == Val::kMatrix) {
      if (a.cols != b.rows) throw ParseError("matrix shape");
      Val m;
      m.kind = Val::kMatrix;
      m.rows = a.rows;
      m.cols = b.cols;
      for (int r = 0; r < a.rows; ++r) {
        for (int c = 0; c < b.cols; ++c) {
          Val acc = expr_val(0);
          for (int k = 0; k < a.cols; ++k)
            acc = add(acc, mul(a.items[r * a.cols + k], b.items[k * b.cols + c]), 1);
          m.items.push_back(acc);
        }
      }
      return m;
    }
    if (a.kind == Val::kMatrix || b.kind == Val::kMatrix) {
      const Val& m = a.kind == Val::kMatrix ? a : b;
      const Val& s = a.kind == Val::kMatrix ? b : a;
      Val out = m;
      for (Val& it : out.items) it = mul(it, s);
      return out;
    }
    require_expr(a);
    require_expr(b);
    ctx_.count();
    Val v = expr_val(a.e * b.e);
    merge_flags(v, a, b);
    return v;
  }

  Val div(const Val& a, const Val& b) {
    require_expr(a);
    require_expr(b);
    if (b.e.is_zero()) throw ParseError("division by zero");
    ctx_.count();
    Val v = expr_val(a.e / b.e);
    merge_flags(v, a, b);
    return v;
  }

  Val neg(const Val& a) {
    if (a.kind == Val::kMatrix) {
      Val m = a;
      for (Val& it : m.items) it = neg(it);
      return m;
    }
    require_expr(a);
    ctx_.count();
    Val v = expr_val(-a.e);
    v.inexact = a.inexact;
    v.percent = a.percent;
    v.decimal_places = a.decimal_places;
    return v;
  }

  Val pow(const Val& a, const Val& b) {
    require_expr(a);
    require_expr(b);
    ctx_.count();
    const ex& base = a.e;
    const ex& expo = b.e;
    if (GiNaC::is_a<numeric>(expo)) {
      const numeric& n = GiNaC::ex_to<numeric>(expo);
      if (!n.is_rational()) throw ParseError("exponent");
      long mag = n.numer().int_length();
      if (mag > 20) throw ParseError("exponent too large");
      if (GiNaC::is_a<numeric>(base)) {
        const numeric& bn = GiNaC::ex_to<numeric>(base);
        if (bn.is_zero() && n.is_negative()) throw ParseError("division by zero");
        // |exponent| * bits(base) bounds the size of an exact result.
        double est = std::fabs(n.to_double()) * static_cast<double>(bits_of(bn));
        if (bn.is_rational() && est > 40000) throw ParseError("power too large");
      }
    }
    Val v = expr_val(GiNaC::pow(base, expo));
    merge_flags(v, a, b);
    return v;
  }

  static void require_expr(const Val& v) {
    if (v.kind != Val::kExpr) throw ParseError("arithmetic on a structure");
  }

  // ---- expressions
  Val parse_expr() {
    DepthGuard g(depth_);
    Val v = parse_term();
    while (true) {
      if (is_op("+")) {
        next();
        v = add(v, parse_term(), 1);
      } else if (is_op("-")) {
        next();
        v = add(v, parse_term(), -1);
      } else if (is_op("+-") || is_op("-+")) {
        bool plus = is_op("+-");
        next();
        Val t = parse_term();
        require_expr(t);
        t = mul(expr_val(plus ? ctx_.pm() : -ctx_.pm()), t);
        v = add(v, t, 1);
      } else {
        break;
      }
    }
    return v;
  }

  bool can_start_atom(const Token& t) const {
    switch (t.type) {
      case Tk::kNum:
      case Tk::kSym:
        return true;
      case Tk::kCmd:
        return t.s != "end";
      case Tk::kWord: {
        std::string w = to_lower(t.s);
        return !(w == "and" || w == "or" || is_connective_word(w));
      }
      case Tk::kOp:
        return t.s == "(" || (t.s == "|" && abs_depth_ == 0) || t.s == "{";
      default:
        return false;
    }
  }

  // The token after a unit (and its optional ^n) ends the item.
  bool unit_ends_item(std::size_t k) const {
    if (is_op("^", k)) k += 2;
    const Token& t = peek(k);
    return is_closer(t) || is_separator(t) || is_relop(t) || is_op("%", k) ||
           (t.type == Tk::kOp && t.s == "cup");
  }

  void skip_unit_power() {
    if (is_op("^")) {
      next();
      if (is_op("{")) {
        int d = 0;
        do {
          if (is_op("{")) ++d;
          if (is_op("}")) --d;
          if (peek().type == Tk::kEnd) throw ParseError("unclosed");
          next();
        } while (d > 0);
      } else {
        next();
      }
    }
  }

  void split_word() {
    Token w = toks_[pos_];
    std::vector<Token> letters;
    for (char c : w.s) letters.push_back({Tk::kSym, std::string(1, c)});
    toks_.erase(toks_.begin() + static_cast<long>(pos_));
    toks_.insert(toks_.begin() + static_cast<long>(pos_), letters.begin(), letters.end());
  }

  Val parse_term() {
    DepthGuard g(depth_);
    Val v = parse_unary();
    while (true) {
      const Token& t = peek();
      if (is_op("*")) {
        next();
        v = mul(v, parse_unary());
      } else if (is_op("/") || is_op(":")) {
        next();
        v = div(v, parse_unary());
      } else if (is_op("%")) {
        next();
        v.percent = true;
      } else if (t.type == Tk::kText) {
        if (is_separator(t)) break;
        // A unit such as \text{ cm}^2 after a value.
        next();
        skip_unit_power();
      } else if (t.type == Tk::kWord) {
        std::string w = to_lower(t.s);
        if (w == "and" || w == "or") break;
        if (w == "percent" || w == "pct" || w == "percentage") {
          next();
          v.percent = true;
          continue;
        }
        bool unit = !function_names().count(w) && !math_words().count(w) && unit_ends_item(1) &&
                    (w.size() >= 3 || short_units().count(t.s)) && v.kind == Val::kExpr &&
                    !has_free_symbols(v.e);
        if (unit) {
          next();
          skip_unit_power();
          continue;
        }
        v = implicit_mul(v, parse_power());
      } else if (can_start_atom(t)) {
        v = implicit_mul(v, parse_power());
      } else {
        break;
      }
    }
    return v;
  }

  Val implicit_mul(const Val& a, const Val& b) {
    if (a.int_literal && b.simple_frac) {  // 1\frac{4}{5} is a mixed number
      Val v = add(a, b, 1);
      return v;
    }
    return mul(a, b);
  }

  Val parse_unary() {
    DepthGuard g(depth_);
    if (is_op("-")) {
      next();
      return neg(parse_unary());
    }
    if (is_op("+")) {
      next();
      return parse_unary();
    }
    if (is_op("+-")) {
      next();
      Val t = parse_unary();
      return mul(expr_val(ctx_.pm()), t);
    }
    return parse_power();
  }

  Val parse_exponent() {
    DepthGuard g(depth_);
    if (is_op("-")) {
      next();
      return neg(parse_exponent());
    }
    if (is_op("+")) {
      next();
      return parse_exponent();
    }
    Val b = parse_postfix();
    if (is_op("^")) {
      next();
      Val e = parse_exponent();
      b = pow(b, e);
    }
    return b;
  }

  Val parse_power() {
    DepthGuard g(depth_);
    Val base = parse_postfix();
    if (is_op("^")) {
      next();
      Val e = parse_exponent();
      if (base.kind == Val::kMatrix) throw ParseError("matrix power");
      return pow(base, e);
    }
    return base;
  }

  std::string read_subscript() {
    // After '_': a braced group or one token, as plain text.
    std::string out;
    if (is_op("{")) {
      next();
      int d = 1;
      while (true) {
        const Token& t = peek();
        if (t.type == Tk::kEnd) throw ParseError("unclosed subscript");
        if (t.type == Tk::kOp && t.s == "{") ++d;
        if (t.type == Tk::kOp && t.s == "}" && --d == 0) {
          next();
          break;
        }
        out += t.s;
        next();
      }
    } else {
      Token t = next();
      if (t.type == Tk::kEnd) throw ParseError("empty subscript");
      out = t.s;
    }
    return out;
  }

  Val parse_postfix() {
    DepthGuard g(depth_);
    Val v = parse_atom();
    while (true) {
      if (is_op("!")) {
        next();
        require_expr(v);
        if (GiNaC::is_a<numeric>(v.e)) {
          const numeric& n = GiNaC::ex_to<numeric>(v.e);
          if (!n.is_nonneg_integer() || n > numeric(2000)) throw ParseError("factorial");
        }
        ctx_.count();
        Val f = expr_val(GiNaC::factorial(v.e));
        f.inexact = v.inexact;
        v = f;
      } else if (is_op("_")) {
        next();
        std::string sub = read_subscript();
        if (!v.name.empty()) {
          // x_1 is a new symbol; 204_5 is a base-5 numeral, kept as a name.
          std::string nm = v.name + "_" + sub;
          Val s = expr_val(ctx_.sym(nm));
          s.name = nm;
          v = s;
        } else {
          throw ParseError("subscript");
        }
      } else {
        break;
      }
    }
    return v;
  }

  // A LaTeX macro argument: a braced group, or one character/token.
  Val parse_arg() {
    DepthGuard g(depth_);
    const Token& t = peek();
    if (t.type == Tk::kNum && t.s.size() > 1) {
      // \frac12: only the first digit belongs to the argument.
      std::string first = t.s.substr(0, 1);
      if (first == ".") return parse_atom();
      toks_[pos_].s = t.s.substr(1);
      return number_val(first);
    }
    if (t.type == Tk::kWord) split_word();  // \frac ab: one letter each
    return parse_atom();
  }

  Val number_val(const std::string& lit) {
    std::string mant = lit, expo;
    std::size_t e = lit.find('e');
    if (e != std::string::npos) {
      mant = lit.substr(0, e);
      expo = lit.substr(e + 1);
    }
    std::string digits;
    int places = 0;
    bool dot = false;
    for (char c : mant) {
      if (c == '.') {
        dot = true;
        continue;
      }
      digits += c;
      if (dot) ++places;
    }
    while (digits.size() > 1 && digits[0] == '0') digits.erase(0, 1);
    if (digits.empty()) digits = "0";
    numeric n(digits.c_str());
    if (places > 0) n = n / GiNaC::pow(numeric(10), numeric(places));
    if (!expo.empty()) {
      long x = std::stol(expo);
      if (x > 400 || x < -400) throw ParseError("exponent too large");
      n = n * GiNaC::pow(numeric(10), numeric(x));
    }
    ctx_.count();
    Val v = expr_val(n);
    v.inexact = dot || !expo.empty();
    if (dot && expo.empty()) v.decimal_places = places;
    v.int_literal = !dot && expo.empty();
    v.name = lit;
    return v;
  }

  Val parse_group_until(const char* close) {
    Val v = parse_list();
    expect_op(close);
    return v;
  }

  Val parse_atom() {
    DepthGuard g(depth_);
    Token t = peek();
    switch (t.type) {
      case Tk::kNum: {
        next();
        Val v = number_val(t.s);
        if (v.int_literal && peek().type == Tk::kCmd && peek().s == "frac") {
          std::size_t save = pos_;
          Val f = parse_atom();
          if (f.simple_frac) return add(v, f, 1);
          pos_ = save;
        }
        return v;
      }
      case Tk::kSym: {
        next();
        Val v;
        if (t.s == "i")
          v = expr_val(GiNaC::I);
        else if (t.s == "e")
          v = expr_val(GiNaC::exp(ex(1)));
        else
          v = expr_val(ctx_.sym(t.s));
        v.name = t.s;
        ctx_.count();
        return v;
      }
      case Tk::kWord: {
        std::string w = to_lower(t.s);
        if (function_names().count(w)) {
          next();
          return parse_function(w);
        }
        if (w == "pi") {
          next();
          return expr_val(GiNaC::Pi);
        }
        if (w == "inf" || w == "infty" || w == "infinity" || w == "oo") {
          next();
          return expr_val(ctx_.inf());
        }
        split_word();
        return parse_atom();
      }
      case Tk::kText: {
        next();
        std::string c = trim(t.s);
        if (c.empty()) throw ParseError("empty text");
        if (c.size() == 1 && is_alpha(c[0])) {
          Val v = expr_val(ctx_.sym(c));
          v.name = c;
          return v;
        }
        // Text holding math (\text{13}, \mathbf{v}): parse it as such.
        bool mathy = std::all_of(c.begin(), c.end(), [](char ch) {
          return is_digit(ch) || ch == '.' || ch == '-' || ch == ' ' || ch == '(' || ch == ')';
        });
        if (mathy) {
          Parser sub(tokenize(c), ctx_);
          return sub.parse_answer();
        }
        Val v;
        v.kind = Val::kText;
        v.text = canonical_text(c);
        return v;
      }
      case Tk::kCmd:
        next();
        return parse_command(t.s);
      case Tk::kOp:
        break;
      case Tk::kEnd:
        throw ParseError("unexpected end");
    }
    // Operators that open something.
    if (t.s == "(" || t.s == "[") {
      next();
      Val inner = parse_list();
      if (!(is_op(")") || is_op("]"))) throw ParseError("unclosed bracket");
      std::string close = next().s;
      if (inner.kind == Val::kList && inner.items.size() >= 2) {
        Val tup;
        tup.kind = Val::kTuple;
        tup.open = t.s;
        tup.close = close;
        tup.items = std::move(inner.items);
        return tup;
      }
      if ((t.s == "(" && close == ")") || (t.s == "[" && close == "]")) {
        Val v = inner;
        v.int_literal = false;
        v.simple_frac = false;
        v.name.clear();
        return v;
      }
      throw ParseError("mismatched bracket");
    }
    if (t.s == "{") {
      next();
      if (is_op("}")) throw ParseError("empty group");
      Val v = parse_group_until("}");
      return v;
    }
    if (t.s == "\\{") {
      next();
      Val set;
      set.kind = Val::kSet;
      if (is_op("\\}")) {
        next();
        return set;
      }
      Val inner = parse_group_until("\\}");
      if (inner.kind == Val::kList)
        set.items = std::move(inner.items);
      else
        set.items.push_back(std::move(inner));
      return set;
    }
    if (t.s == "|") {
      next();
      ++abs_depth_;
      Val inner = parse_expr();
      --abs_depth_;
      expect_op("|");
      require_expr(inner);
      ctx_.count();
      Val v = expr_val(GiNaC::abs(inner.e));
      v.inexact = inner.inexact;
      return v;
    }
    throw ParseError("unexpected '" + t.s + "'");
  }

  Val parse_command(const std::string& cmd) {
    if (cmd == "frac") {
      Val a = parse_arg();
      Val b = parse_arg();
      Val v = div(a, b);
      v.simple_frac = a.int_literal && b.int_literal;
      return v;
    }
    if (cmd == "binom") {
      Val a = parse_arg();
      Val b = parse_arg();
      require_expr(a);
      require_expr(b);
      if (GiNaC::is_a<numeric>(a.e) && GiNaC::ex_to<numeric>(a.e) > numeric(2000)) {
        throw ParseError("binomial too large");
      }
      ctx_.count();
      return expr_val(GiNaC::binomial(a.e, b.e));
    }
    if (cmd == "sqrt") {
      Val index = expr_val(2);
      if (is_op("[")) {
        next();
        index = parse_expr();
        expect_op("]");
      }
      Val a = parse_arg();
      require_expr(index);
      if (index.e.is_zero()) throw ParseError("root index");
      return pow(a, div(expr_val(1), index));
    }
    if (cmd == "pi") return expr_val(GiNaC::Pi);
    if (cmd == "infty") return expr_val(ctx_.inf());
    if (cmd == "emptyset") {
      Val set;
      set.kind = Val::kSet;
      return set;
    }
    if (function_names().count(cmd)) return parse_function(cmd);
    if (cmd == "arcsec" || cmd == "arccsc") return parse_function(cmd);
    if (cmd == "begin") return parse_environment();
    if (cmd == "end") throw ParseError("stray end");
    if (greek_names().count(cmd)) {
      Val v = expr_val(ctx_.sym(cmd));
      v.name = cmd;
      return v;
    }
    // An unknown command names a symbol of its own.
    Val v = expr_val(ctx_.sym("\\" + cmd));
    v.name = cmd;
    return v;
  }

  Val parse_function(const std::string& name) {
    Val power;
    bool has_power = false;
    if (is_op("^")) {
      next();
      power = parse_exponent();
      has_power = true;
    }
    Val base;
    bool has_base = false;
    if ((name == "log") && is_op("_")) {
      next();
      base = parse_arg();
      has_base = true;
    }
    Val arg;
    if (is_op("(")) {
      arg = parse_postfix();
    } else if (is_op("{")) {
      arg = parse_atom();
    } else {
      // \sin 2x, \sin b \cos a: a run of implicit factors up to the next function.
      arg = parse_power();
      while (true) {
        const Token& t = peek();
        bool fn = (t.type == Tk::kCmd &&
                   (function_names().count(t.s) || t.s == "frac" || t.s == "sqrt")) ||
                  (t.type == Tk::kWord && function_names().count(to_lower(t.s)));
        if (fn || !can_start_atom(t) || is_op("(") || is_op("{")) break;
        if (t.type == Tk::kWord) break;
        arg = mul(arg, parse_power());
      }
    }
    require_expr(arg);
    ctx_.count(2);
    const ex& x = arg.e;
    bool inverse = has_power && power.kind == Val::kExpr && power.e == ex(-1);
    std::string fn = name;
    if (inverse) {
      static const std::map<std::string, std::string> kInv = {
          {"sin", "arcsin"}, {"cos", "arccos"}, {"tan", "arctan"}, {"cot", "arccot"}};
      auto it = kInv.find(name);
      if (it != kInv.end()) {
        fn = it->second;
        has_power = false;
      }
    }
    ex r;
    if (fn == "sin")
      r = GiNaC::sin(x);
    else if (fn == "cos")
      r = GiNaC::cos(x);
    else if (fn == "tan")
      r = GiNaC::tan(x);
    else if (fn == "cot")
      r = GiNaC::cos(x) / GiNaC::sin(x);
    else if (fn == "sec")
      r = 1 / GiNaC::cos(x);
    else if (fn == "csc")
      r = 1 / GiNaC::sin(x);
    else if (fn == "arcsin" || fn == "asin")
      r = GiNaC::asin(x);
    else if (fn == "arccos" || fn == "acos")
      r = GiNaC::acos(x);
    else if (fn == "arctan" || fn == "atan")
      r = GiNaC::atan(x);
    else if (fn == "arccot")
      r = GiNaC::atan(1 / x);
    else if (fn == "arcsec")
      r = GiNaC::acos(1 / x);
    else if (fn == "arccsc")
      r = GiNaC::asin(1 / x);
    else if (fn == "sinh")
      r = GiNaC::sinh(x);
    else if (fn == "cosh")
      r = GiNaC::cosh(x);
    else if (fn == "tanh")
      r = GiNaC::tanh(x);
    else if (fn == "exp")
      r = GiNaC::exp(x);
    else if (fn == "ln")
      r = GiNaC::log(x);
    else if (fn == "lg")
      r = GiNaC::log(x) / GiNaC::log(ex(10));
    else if (fn == "log") {
      if (has_base) {
        require_expr(base);
        r = GiNaC::log(x) / GiNaC::log(base.e);
      } else {
        r = GiNaC::log(x);
      }
    } else if (fn == "sqrt")
      r = GiNaC::sqrt(x);
    else if (fn == "abs")
      r = GiNaC::abs(x);
    else
      throw ParseError("unknown function " + fn);
    Val v = expr_val(r);
    v.inexact = arg.inexact;
    if (has_power) v = pow(v, power);
    return v;
  }

  std::string read_env_name() {
    expect_op("{");
    std::string name;
    while (!is_op("}")) {
      if (peek().type == Tk::kEnd) throw ParseError("unclosed environment name");
      name += next().s;
    }
    next();
    return name;
  }

  Val parse_environment() {
    std::string env = read_env_name();
    bool matrix = env.find("matrix") != std::string::npos || env == "array";
    if (!matrix) throw ParseError("environment " + env);
    if (env == "array" && is_op("{")) {
      next();
      while (!is_op("}")) {
        if (peek().type == Tk::kEnd) throw ParseError("unclosed array spec");
        next();
      }
      next();
    }
    Val m;
    m.kind = Val::kMatrix;
    std::vector<Val> row;
    auto end_row = [&]() {
      if (row.empty()) return;
      if (m.cols == 0) m.cols = static_cast<int>(row.size());
      if (static_cast<int>(row.size()) != m.cols) throw ParseError("ragged matrix");
      for (Val& v : row) m.items.push_back(std::move(v));
      row.clear();
      ++m.rows;
    };
    while (true) {
      if (peek().type == Tk::kCmd && peek().s == "end") {
        next();
        read_env_name();
        end_row();
        break;
      }
      if (peek().type == Tk::kEnd) throw ParseError("unclosed matrix");
      if (is_op("\\\\")) {
        next();
        end_row();
        continue;
      }
      if (is_op("&")) throw ParseError("empty matrix cell");
      row.push_back(parse_expr());
      if (is_op("&")) {
        next();
        if (is_op("\\\\") || (peek().type == Tk::kCmd && peek().s == "end")) {
          throw ParseError("empty matrix cell");
        }
      }
      if (m.items.size() + row.size() > 400) throw ParseError("matrix too large");
    }
    if (m.rows == 0) throw ParseError("empty matrix");
    return m;
  }

  std::vector<Token> toks_;
  Ctx& ctx_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  int abs_depth_ = 0;
};

// Expands "a \pm b" (a symbol __pm__ in the expression) into the two values it stands for, inside
// lists and sets and at the top.
void expand_pm(Val& v, Ctx& ctx) {
  ex pm = ctx.pm();
  auto split = [&](const Val& x, std::vector<Val>& out) {
    if (x.kind == Val::kExpr && x.e.has(pm)) {
      Val a = x, b = x;
      a.e = x.e.subs(pm == 1);
      b.e = x.e.subs(pm == -1);
      out.push_back(a);
      out.push_back(b);
    } else {
      out.push_back(x);
    }
  };
  for (Val& it : v.items) expand_pm(it, ctx);
  if (v.kind == Val::kList || v.kind == Val::kSet) {
    std::vector<Val> out;
    for (const Val& it : v.items) {
      if (it.kind == Val::kList) {
        for (const Val& sub : it.items) out.push_back(sub);  // a \pm item already split
      } else {
        split(it, out);
      }
    }
    v.items = std::move(out);
  } else if (v.kind == Val::kExpr && v.e.has(pm)) {
    Val list;
    list.kind = Val::kList;
    split(v, list.items);
    v = list;
  }
}

// ---------------------------------------------------------------------------------------------
// (5) Comparison.

class Comparer {
 public:
  Comparer(const EquivalenceOptions& opts, Ctx& ctx) : opts_(opts), ctx_(ctx) {}

  bool equal(const Val& a0, const Val& b0) {
    if (++calls_ > 4000) return false;
    const Val& a = unwrap(a0);
    const Val& b = unwrap(b0);
    // "15 39/40 or 639/40": a list of equal forms against one value.
    bool a_list = a.kind == Val::kList, b_list = b.kind == Val::kList;
    if (a_list != b_list && (a_list ? b : a).kind != Val::kSet) {
      std::vector<Val> d = dedupe((a_list ? a : b).items);
      if (d.size() == 1) return equal(a_list ? d[0] : a, a_list ? b : d[0]);
    }
    if (a.kind == Val::kRel || b.kind == Val::kRel) return rel_equal(a, b);
    if (a.kind == Val::kExpr && b.kind == Val::kExpr) return expr_equal(a, b);
    if (a.kind == Val::kText && b.kind == Val::kText) return a.text == b.text;
    if (a.kind == Val::kTuple && b.kind == Val::kTuple) {
      return a.open == b.open && a.close == b.close && ordered(a.items, b.items);
    }
    if ((a.kind == Val::kTuple && b.kind == Val::kList) ||
        (a.kind == Val::kList && b.kind == Val::kTuple)) {
      const Val& t = a.kind == Val::kTuple ? a : b;
      if (t.open != "(" || t.close != ")") return false;
      return ordered(a.items, b.items);
    }
    bool a_coll = a.kind == Val::kList || a.kind == Val::kSet;
    bool b_coll = b.kind == Val::kList || b.kind == Val::kSet;
    if (a_coll && b_coll) {
      if (a.kind == Val::kSet || b.kind == Val::kSet || opts_.unordered_lists) {
        return unordered(a.items, b.items);
      }
      return ordered(a.items, b.items);
    }
    if (a.kind == Val::kUnion && b.kind == Val::kUnion) return unordered(a.items, b.items);
    if (a.kind == Val::kMatrix && b.kind == Val::kMatrix) {
      return a.rows == b.rows && a.cols == b.cols && ordered(a.items, b.items);
    }
    if ((a.kind == Val::kMatrix && b.kind == Val::kTuple) ||
        (a.kind == Val::kTuple && b.kind == Val::kMatrix)) {
      const Val& m = a.kind == Val::kMatrix ? a : b;
      const Val& t = a.kind == Val::kMatrix ? b : a;
      if (t.open != "(" || t.close != ")" || (m.rows != 1 && m.cols != 1)) return false;
      return ordered(m.items, t.items);
    }
    return false;
  }

 private:
  static const Val& unwrap(const Val& v) {
    if ((v.kind == Val::kList) && v.items.size() == 1) return unwrap(v.items[0]);
    return v;
  }

  bool ordered(const std::vector<Val>& a, const std::vector<Val>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t k = 0; k < a.size(); ++k)
      if (!equal(a[k], b[k])) return false;
    return true;
  }

  // Drops repeated answers: lists of solutions compare as sets.
  std::vector<Val> dedupe(const std::vector<Val>& in) {
    std::vector<Val> out;
    for (const Val& x : in) {
      bool seen = false;
      for (const Val& y : out) {
        if (equal(x, y)) {
          seen = true;
          break;
        }
      }
      if (!seen) out.push_back(x);
    }
    return out;
  }

  bool unordered(const std::vector<Val>& a0, const std::vector<Val>& b0) {
    if (a0.size() > 64 || b0.size() > 64) return false;
    std::vector<Val> a = dedupe(a0), b = dedupe(b0);
    if (a.size() != b.size()) return false;
    std::vector<bool> used(b.size(), false);
    for (const Val& x : a) {
      bool found = false;
      for (std::size_t k = 0; k < b.size(); ++k) {
        if (!used[k] && equal(x, b[k])) {
          used[k] = true;
          found = true;
          break;
        }
      }
      if (!found) return false;
    }
    return true;
  }

  bool rel_equal(const Val& a, const Val& b) {
    if (a.kind == Val::kRel && b.kind == Val::kRel) {
      if (a.assignment && b.assignment && a.op == b.op && equal(a.items[1], b.items[1]))
        return true;
      if (a.op != b.op) {
        // x \in [a, b] against a <= x <= b style intervals: compare the sets.
        return false;
      }
      if (a.op == "in") return equal(a.items[0], b.items[0]) && equal(a.items[1], b.items[1]);
      const Val &al = a.items[0], &ar = a.items[1], &bl = b.items[0], &br = b.items[1];
      if (al.kind != Val::kExpr || ar.kind != Val::kExpr || bl.kind != Val::kExpr ||
          br.kind != Val::kExpr) {
        return equal(al, bl) && equal(ar, br);
      }
      bool positive = a.op == "<" || a.op == "<=";
      return proportional(al.e - ar.e, bl.e - br.e, positive);
    }
    const Val& r = a.kind == Val::kRel ? a : b;
    const Val& o = a.kind == Val::kRel ? b : a;
    if (r.assignment) return equal(r.items[1], o);
    return false;
  }

  // ---- numbers and expressions
  std::optional<numeric> eval_numeric(const ex& e) {
    ex v = e.evalf();
    if (!GiNaC::is_a<numeric>(v)) return std::nullopt;
    return GiNaC::ex_to<numeric>(v);
  }

  static bool close(const numeric& x, const numeric& y, double rel, double abs_tol) {
    numeric d = GiNaC::abs(x - y);
    numeric m = GiNaC::abs(x);
    numeric my = GiNaC::abs(y);
    if (m < my) m = my;
    return d <= numeric(abs_tol) || d <= numeric(rel) * m;
  }

  // Upper bound on the number of terms of expand(e), saturating.
  static double expand_terms(const ex& e) {
    if (GiNaC::is_a<GiNaC::add>(e)) {
      double s = 0;
      for (std::size_t k = 0; k < e.nops(); ++k) s += expand_terms(e.op(k));
      return std::min(s, 1e12);
    }
    if (GiNaC::is_a<GiNaC::mul>(e)) {
      double p = 1;
      for (std::size_t k = 0; k < e.nops(); ++k) p *= expand_terms(e.op(k));
      return std::min(p, 1e12);
    }
    if (GiNaC::is_a<GiNaC::power>(e)) {
      double t = expand_terms(e.op(0));
      const ex& n = e.op(1);
      if (GiNaC::is_a<numeric>(n) && GiNaC::ex_to<numeric>(n).is_integer()) {
        double k = std::fabs(GiNaC::ex_to<numeric>(n).to_double());
        if (t <= 1) return 1;
        // C(k + t - 1, t - 1) <= (k+1)^(t-1), bounded.
        double bound = std::pow(k + 1, std::min(t - 1, 30.0));
        return std::min(bound, 1e12);
      }
      return t > 1 ? 1e12 : 1;
    }
    if (GiNaC::is_a<GiNaC::function>(e)) {
      double s = 1;
      for (std::size_t k = 0; k < e.nops(); ++k) s = std::max(s, expand_terms(e.op(k)));
      return s > 1 ? s * 4 : 1;
    }
    return 1;
  }

  // expand(d) == 0. (normal() would also cancel rational functions, but its gcds can take
  // seconds on small inputs; the numeric test covers those identities.)
  bool symbolic_zero(const ex& d) {
    if (!opts_.symbolic) return false;
    if (expand_terms(d) > opts_.max_expand_terms) return false;
    return GiNaC::expand(d).is_zero();
  }

  // Evaluation points: one value per symbol (sorted by name), fixed seeds, in [0.35, 2.35).
  std::vector<GiNaC::exmap> points(const ex& a, const ex& b) {
    std::map<std::string, ex> syms;
    collect_symbols(a, syms);
    collect_symbols(b, syms);
    std::vector<GiNaC::exmap> out;
    std::uint64_t state = 0x9E3779B97F4A7C15ull;
    auto next = [&]() {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      return static_cast<double>(state >> 11) / 9007199254740992.0;
    };
    int n = std::max(1, opts_.random_points);
    for (int p = 0; p < n; ++p) {
      GiNaC::exmap m;
      for (auto& kv : syms) {
        double v = 0.35 + 2.0 * next();
        if (kv.first == "__oo__") v = 1e6 + 1000 * next();
        m[kv.second] = numeric(v);
      }
      out.push_back(std::move(m));
    }
    return out;
  }

  // Equal at every evaluation point (that evaluates on both sides); at least half must evaluate.
  bool numeric_equal_at_points(const ex& a, const ex& b, double rel) {
    auto pts = points(a, b);
    int usable = 0;
    for (auto& m : pts) {
      std::optional<numeric> x, y;
      try {
        x = eval_numeric(a.subs(m));
        y = eval_numeric(b.subs(m));
      } catch (const std::exception&) {
        continue;
      }
      if (!x || !y) {
        if (x.has_value() != y.has_value()) return false;
        continue;
      }
      if (!close(*x, *y, rel, opts_.abs_tol)) return false;
      ++usable;
    }
    return usable * 2 >= static_cast<int>(pts.size()) && usable > 0;
  }

  bool expr_equal(const Val& a, const Val& b) {
    std::vector<ex> as{a.e}, bs{b.e};
    if (opts_.percent_equivalence) {
      if (a.percent) as.push_back(a.e / 100);
      if (b.percent) bs.push_back(b.e / 100);
    }
    for (std::size_t i = 0; i < as.size(); ++i) {
      for (std::size_t j = 0; j < bs.size(); ++j) {
        Val x = a, y = b;
        x.e = as[i];
        y.e = bs[j];
        if (i > 0) x.decimal_places = -1;
        if (j > 0) y.decimal_places = -1;
        if (core_equal(x, y)) return true;
      }
    }
    return false;
  }

  bool core_equal(const Val& a, const Val& b) {
    const ex& x = a.e;
    const ex& y = b.e;
    bool sym = has_free_symbols(x) || has_free_symbols(y);
    bool inexact = a.inexact || b.inexact;
    double rel = inexact ? opts_.rel_tol : 1e-10;
    if (!sym) {
      ex d = x - y;
      if (!inexact) {
        if (symbolic_zero(d) || d.is_zero()) return true;
        if (GiNaC::is_a<numeric>(x) && GiNaC::is_a<numeric>(y)) return false;  // exact values
      }
      if (x.has(ctx_.inf()) || y.has(ctx_.inf())) return symbolic_zero(d);
      auto nx = eval_numeric(x);
      auto ny = eval_numeric(y);
      if (!nx || !ny) return symbolic_zero(d);
      if (close(*nx, *ny, rel, opts_.abs_tol)) return true;
      if (opts_.rounded_decimals) {
        // 0.33 == 1/3: a decimal literal equals an exact value it rounds to.
        const Val* lit = (a.decimal_places >= 2 && !b.inexact)   ? &a
                         : (b.decimal_places >= 2 && !a.inexact) ? &b
                                                                 : nullptr;
        if (lit) {
          numeric half = numeric(1, 2) / GiNaC::pow(numeric(10), numeric(lit->decimal_places));
          numeric diff = GiNaC::abs(*nx - *ny);
          if (diff <= half * numeric(1.000001)) return true;
        }
      }
      return false;
    }
    if (symbolic_zero(x - y)) return true;
    return numeric_equal_at_points(x, y, std::max(rel, 1e-9));
  }

  // d1 = c * d2 for a constant c (c > 0 when `positive`).
  bool proportional(const ex& d1, const ex& d2, bool positive) {
    bool z1 = d1.is_zero() || symbolic_zero(d1);
    bool z2 = d2.is_zero() || symbolic_zero(d2);
    if (z1 || z2) return z1 && z2;
    auto pts = points(d1, d2);
    std::optional<numeric> ratio;
    int usable = 0;
    for (auto& m : pts) {
      std::optional<numeric> x, y;
      try {
        x = eval_numeric(d1.subs(m));
        y = eval_numeric(d2.subs(m));
      } catch (const std::exception&) {
        continue;
      }
      if (!x || !y) continue;
      if (y->is_zero()) {
        if (!close(*x, numeric(0), 1e-9, 1e-12)) return false;
        continue;
      }
      numeric r = *x / *y;
      if (!ratio) {
        ratio = r;
      } else if (!close(r, *ratio, 1e-8, 1e-12)) {
        return false;
      }
      ++usable;
    }
    if (!ratio || usable * 2 < static_cast<int>(pts.size())) return false;
    if (ratio->is_zero()) return false;
    if (!ratio->is_real()) return false;
    if (positive && !ratio->is_positive()) return false;
    return true;
  }

  const EquivalenceOptions& opts_;
  Ctx& ctx_;
  int calls_ = 0;
};

// ---------------------------------------------------------------------------------------------
// (6) The entry points' helpers.

std::mutex& ginac_mutex() {
  static std::mutex m;
  return m;
}

// The answer string to compare: extracted (when asked) and normalized.
std::string prepare(const std::string& raw, const EquivalenceOptions& opts) {
  std::string s = raw.size() > kMaxResponseChars ? raw.substr(raw.size() - kMaxResponseChars) : raw;
  if (opts.extract) {
    if (auto a = extract_auto(s)) s = *a;
  }
  if (s.size() > opts.max_answer_chars * 4) return std::string();
  return normalize_answer(s);
}

// Readings of one normalized answer: "1,22" is the list 1, 22 or the decimal 1.22; "1 000" is 1000.
std::vector<std::string> readings(const std::string& s) {
  std::vector<std::string> out{s};
  auto all_of_class = [](const std::string& x, const char* cls) {
    return !x.empty() && x.find_first_not_of(cls) == std::string::npos;
  };
  std::string body = s;
  bool neg = !body.empty() && body[0] == '-';
  if (neg) body = body.substr(1);
  std::size_t comma = body.find(',');
  // A decimal comma needs two digits after it: "-2,1" stays the list -2, 1.
  if (comma != std::string::npos && body.find(',', comma + 1) == std::string::npos && comma > 0 &&
      comma + 2 < body.size() && all_of_class(body.substr(0, comma), "0123456789") &&
      all_of_class(body.substr(comma + 1), "0123456789")) {
    bool thousands = comma <= 3 && body[0] != '0' && body.size() - comma - 1 == 3;
    if (!thousands) {
      std::string dec = body;
      dec[comma] = '.';
      out.push_back((neg ? "-" : "") + dec);
    }
  }
  // 1 000 000 (spaces as thousands separators).
  if (body.find(' ') != std::string::npos && all_of_class(body, "0123456789 .")) {
    std::size_t first = body.find(' ');
    bool ok = first >= 1 && first <= 3;
    std::size_t p = first;
    while (ok && p != std::string::npos) {
      std::size_t q = body.find(' ', p + 1);
      std::size_t group_end = q == std::string::npos ? body.find('.', p + 1) : q;
      if (group_end == std::string::npos) group_end = body.size();
      if (group_end - p - 1 != 3) ok = false;
      p = q;
    }
    if (ok) out.push_back((neg ? "-" : "") + squash(body));
  }
  return out;
}

std::optional<Val> parse_reading(const std::string& s, Ctx& ctx) {
  try {
    if (is_text_answer(s)) {
      Val v;
      v.kind = Val::kText;
      v.text = canonical_text(s);
      return v;
    }
    ctx.nodes = 0;
    Parser p(tokenize(s), ctx);
    Val v = p.parse_answer();
    expand_pm(v, ctx);
    return v;
  } catch (const ParseError&) {
    return std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

const char* answer_format_name(AnswerFormat format) {
  switch (format) {
    case AnswerFormat::kAuto:
      return "auto";
    case AnswerFormat::kBoxed:
      return "boxed";
    case AnswerFormat::kAnswerTag:
      return "answer_tag";
    case AnswerFormat::kGsm8k:
      return "gsm8k";
    case AnswerFormat::kAnswerIs:
      return "answer_is";
    case AnswerFormat::kLastNumber:
      return "last_number";
  }
  return "auto";
}

StatusOr<AnswerFormat> parse_answer_format(const std::string& name) {
  for (AnswerFormat f :
       {AnswerFormat::kAuto, AnswerFormat::kBoxed, AnswerFormat::kAnswerTag, AnswerFormat::kGsm8k,
        AnswerFormat::kAnswerIs, AnswerFormat::kLastNumber}) {
    if (name == answer_format_name(f)) return f;
  }
  return invalid_argument("unknown answer format '" + name +
                          "' (auto, boxed, answer_tag, gsm8k, answer_is, last_number)");
}

std::optional<std::string> extract_answer_math(const std::string& text, AnswerFormat format) {
  try {
    const std::string s =
        text.size() > kMaxResponseChars ? text.substr(text.size() - kMaxResponseChars) : text;
    std::optional<std::string> out;
    switch (format) {
      case AnswerFormat::kAuto:
        out = extract_auto(s);
        break;
      case AnswerFormat::kBoxed:
        out = extract_boxed(s);
        break;
      case AnswerFormat::kAnswerTag:
        out = extract_answer_tag(s);
        break;
      case AnswerFormat::kGsm8k:
        out = extract_gsm8k(s);
        break;
      case AnswerFormat::kAnswerIs:
        out = extract_answer_is(s);
        break;
      case AnswerFormat::kLastNumber:
        out = extract_last_number(s);
        break;
    }
    if (out) {
      std::string t = trim(*out);
      if (t.empty()) return std::nullopt;
      return t;
    }
    return std::nullopt;
  } catch (...) {
    return std::nullopt;
  }
}

bool math_equal(const std::string& pred, const std::string& gold,
                const EquivalenceOptions& options) {
  try {
    if (trim(pred).empty() || trim(gold).empty()) return false;
    if (trim(pred) == trim(gold)) return true;
    std::string p = prepare(pred, options);
    std::string g = prepare(gold, options);
    if (p.empty() || g.empty()) return false;
    if (p == g) return true;
    if (p.size() > options.max_answer_chars || g.size() > options.max_answer_chars) return false;
    std::vector<std::string> pr = readings(p), gr = readings(g);

    std::lock_guard<std::mutex> lock(ginac_mutex());
    Ctx ctx;
    ctx.opts = &options;
    std::vector<Val> pv, gv;
    for (const std::string& r : pr)
      if (auto v = parse_reading(r, ctx)) pv.push_back(std::move(*v));
    for (const std::string& r : gr)
      if (auto v = parse_reading(r, ctx)) gv.push_back(std::move(*v));
    if (pv.empty() || gv.empty()) {
      // Something we cannot parse: fall back to comparing the spelling.
      return canonical_text(squash(p)) == canonical_text(squash(g));
    }
    Comparer cmp(options, ctx);
    for (const Val& a : pv) {
      for (const Val& b : gv) {
        try {
          if (cmp.equal(a, b)) return true;
        } catch (const std::exception&) {
        }
      }
    }
    return false;
  } catch (...) {
    return false;
  }
}

}  // namespace grpo::runtime
