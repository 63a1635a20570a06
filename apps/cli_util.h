// Small helpers the `grpo` subcommands share: parsing id lists and printing JSON-safe strings.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace grpo::apps {

// "1,2,3" (spaces allowed) -> ids; `what` names the option in errors.
inline StatusOr<std::vector<int32_t>> parse_id_list(const std::string& text, const std::string& what) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == ',')) ++i;
    if (i >= text.size()) break;
    size_t j = i;
    while (j < text.size() && text[j] >= '0' && text[j] <= '9') ++j;
    if (j == i || j - i > 9 || (j < text.size() && text[j] != ',' && text[j] != ' '))
      return invalid_argument(what + ": '" + text + "' is not a comma-separated list of token ids");
    ids.push_back(static_cast<int32_t>(std::stol(text.substr(i, j - i))));
    i = j;
  }
  if (ids.empty()) return invalid_argument(what + ": no token ids given");
  return ids;
}

}  // namespace grpo::apps
