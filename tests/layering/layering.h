// The layering rule of docs/ARCHITECTURE.md, as code: which folder may include which project
// folders and which third-party libraries, checked transitively through project headers.
#pragma once

#include <string>
#include <vector>

namespace grpo::layering {

struct Violation {
  std::string file;     // relative to the source root
  std::string include;  // the forbidden include (direct, or reached through a project header)
  std::string via;      // the project header it came through, "" when direct
};

// Scans base kernels runtime storage cluster actors apps under `root`.
std::vector<Violation> check_tree(const std::string& root);

}  // namespace grpo::layering
