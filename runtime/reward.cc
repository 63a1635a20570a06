#include "runtime/reward.h"

namespace grpo::runtime {
namespace {
const std::string kThinkOpen = "<think>", kThinkClose = "</think>";
const std::string kAnswerOpen = "<answer>", kAnswerClose = "</answer>";

std::string canonical_integer(const std::string& s, bool* ok) {
  size_t b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
  *ok = false;
  if (b == std::string::npos) return "";
  std::string t = s.substr(b, e - b + 1);
  bool neg = false;
  if (t[0] == '-' || t[0] == '+') {
    neg = t[0] == '-';
    t = t.substr(1);
  }
  if (t.empty()) return "";
  for (char c : t)
    if (c < '0' || c > '9') return "";
  size_t nz = t.find_first_not_of('0');
  t = nz == std::string::npos ? "0" : t.substr(nz);
  *ok = true;
  return (neg && t != "0" ? "-" : "") + t;
}
}  // namespace

std::string extract_answer(const std::string& response, bool* found) {
  *found = false;
  size_t open = response.rfind(kAnswerOpen);
  if (open == std::string::npos) return "";
  size_t start = open + kAnswerOpen.size();
  size_t close = response.find(kAnswerClose, start);
  if (close == std::string::npos) return "";
  *found = true;
  return response.substr(start, close - start);
}

bool integers_equal(const std::string& a, const std::string& b) {
  bool ok_a = false, ok_b = false;
  std::string ca = canonical_integer(a, &ok_a), cb = canonical_integer(b, &ok_b);
  return ok_a && ok_b && ca == cb;
}

Reward score_response(const std::string& response, bool finished, const std::string& gold,
                      const RewardWeights& weights) {
  Reward r;
  bool found = false;
  std::string answer = extract_answer(response, &found);
  r.correct = found && integers_equal(answer, gold);
  r.accuracy = r.correct ? 1.0 : 0.0;
  // Strict template: <think>X</think><answer>Y</answer>, X and Y free of tags, ended with EOS.
  bool fmt = finished && response.rfind(kThinkOpen, 0) == 0;
  if (fmt) {
    size_t tc = response.find(kThinkClose);
    fmt = tc != std::string::npos && response.find('<', kThinkOpen.size()) == tc &&
          response.compare(tc + kThinkClose.size(), kAnswerOpen.size(), kAnswerOpen) == 0;
    if (fmt) {
      size_t ab = tc + kThinkClose.size() + kAnswerOpen.size();
      size_t ac = response.find('<', ab);
      fmt = ac != std::string::npos && response.compare(ac, std::string::npos, kAnswerClose) == 0;
    }
  }
  r.format = fmt ? 1.0 : 0.0;
  r.total = weights.accuracy * r.accuracy + weights.format * r.format;
  return r;
}

}  // namespace grpo::runtime
