#include "runtime/task.h"

#include <fstream>
#include <nlohmann/json.hpp>

namespace grpo::runtime {

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

namespace {
std::string pad(uint64_t v, int digits) {
  std::string s = std::to_string(v);
  while (static_cast<int>(s.size()) < digits) s = "0" + s;
  return s;
}

bool parse_operands(const std::string& prompt, std::string* a, std::string* b) {
  auto plus = prompt.find('+');
  auto eq = prompt.find('=');
  if (plus == std::string::npos || plus == 0) return false;
  *a = prompt.substr(0, plus);
  *b = prompt.substr(plus + 1, eq == std::string::npos ? std::string::npos : eq - plus - 1);
  if (b->empty()) return false;
  for (char c : *a + *b)
    if (c < '0' || c > '9') return false;
  return true;
}
}  // namespace

Problem AdditionTask::problem(uint64_t seed, uint64_t index) const {
  uint64_t limit = 1;
  for (int i = 0; i < digits_; ++i) limit *= 10;
  uint64_t h = mix64(seed * 0x100000001b3ULL ^ mix64(index));
  uint64_t a = h % limit;
  uint64_t b = mix64(h) % limit;
  Problem p;
  p.prompt = pad(a, digits_) + "+" + pad(b, digits_) + "=";
  p.answer = std::to_string(a + b);
  return p;
}

std::vector<Problem> AdditionTask::problems(uint64_t seed, uint64_t count) const {
  std::vector<Problem> out;
  out.reserve(count);
  for (uint64_t i = 0; i < count; ++i) out.push_back(problem(seed, i));
  return out;
}

std::string AdditionTask::solution(const std::string& prompt, int slip_step, int slip_delta,
                                   bool answer_tags) {
  std::string a, b;
  if (!parse_operands(prompt, &a, &b)) return "";
  size_t n = std::max(a.size(), b.size());
  while (a.size() < n) a = "0" + a;
  while (b.size() < n) b = "0" + b;
  std::string think, digits;
  int carry = 0;
  for (size_t k = 0; k < n; ++k) {
    int da = a[n - 1 - k] - '0', db = b[n - 1 - k] - '0';
    int s = da + db + carry;
    if (static_cast<int>(k) == slip_step) s = s + slip_delta < 0 ? s + 1 : (s + slip_delta > 19 ? s - 1 : s + slip_delta);
    if (!think.empty()) think += ",";
    think += std::to_string(da) + "+" + std::to_string(db);
    if (carry) think += "+1";
    think += "=" + std::to_string(s);
    digits.insert(digits.begin(), static_cast<char>('0' + s % 10));
    carry = s / 10;
  }
  if (carry) digits.insert(digits.begin(), '1');
  size_t nz = digits.find_first_not_of('0');
  digits = nz == std::string::npos ? "0" : digits.substr(nz);
  if (!answer_tags) return "<think>" + think + "</think>" + digits;
  return "<think>" + think + "</think><answer>" + digits + "</answer>";
}

StatusOr<std::vector<Problem>> AdditionTask::load_jsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found(path + ": cannot open dataset");
  std::vector<Problem> out;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string where = path + ":" + std::to_string(line_no);
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return invalid_argument(where + ": not a JSON object");
    if (!j.contains("question") || !j["question"].is_string())
      return invalid_argument(where + ": missing string field 'question'");
    if (!j.contains("answer") || !(j["answer"].is_string() || j["answer"].is_number_integer()))
      return invalid_argument(where + ": missing field 'answer'");
    Problem p;
    p.prompt = j["question"].get<std::string>();
    if (p.prompt.empty() || p.prompt.back() != '=') p.prompt += "=";
    std::string a, b;
    if (!parse_operands(p.prompt, &a, &b))
      return invalid_argument(where + ": question '" + j["question"].get<std::string>() +
                              "' is not of the form A+B with decimal digits");
    p.answer = j["answer"].is_string() ? j["answer"].get<std::string>()
                                       : std::to_string(j["answer"].get<int64_t>());
    out.push_back(std::move(p));
  }
  if (out.empty()) return invalid_argument(path + ": dataset has no problems");
  return out;
}

}  // namespace grpo::runtime
