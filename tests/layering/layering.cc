#include "layering.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <functional>
#include <regex>
#include <set>

namespace grpo::layering {
namespace fs = std::filesystem;
namespace {

const std::vector<std::string> kLayers = {"base", "kernels", "runtime", "storage", "cluster", "actors", "apps"};

// Project folders each layer may include.
const std::map<std::string, std::set<std::string>> kAllowedLayers = {
    {"base", {"base"}},
    {"kernels", {"base", "kernels"}},
    {"runtime", {"base", "kernels", "runtime"}},
    {"storage", {"base", "storage"}},
    {"cluster", {"base", "cluster"}},
    {"actors", {"base", "kernels", "runtime", "storage", "cluster", "actors"}},
    // The offline tools (generate, tokenize, verify, bench) use runtime's LibTorch-free facades
    // directly; services go through actors/. LibTorch stays out either way (checked transitively).
    {"apps", {"base", "runtime", "storage", "cluster", "actors", "apps"}},
};

// Third-party include prefixes owned by exactly one layer (or sub-folder).
struct Owned {
  std::string prefix;
  std::string owner;  // folder prefix that may include it
};
const std::vector<Owned> kOwned = {
    {"torch/", "runtime/"}, {"ATen/", "runtime/"}, {"c10/", "runtime/"},
    {"caf/", "actors/"},
    {"rocksdb/", "storage/"},
    {"zmq.h", "cluster/"}, {"zmq.hpp", "cluster/"}, {"capnp/", "cluster/"}, {"kj/", "cluster/"},
    {"messages.capnp.h", "cluster/"},
    {"cuda", "kernels/cuda/"}, {"nccl", "kernels/cuda/"}, {"cublas", "kernels/cuda/"},
};

std::vector<std::string> includes_of(const fs::path& file) {
  static const std::regex re(R"(^\s*#\s*include\s*[<"]([^>"]+)[>"])");
  std::vector<std::string> out;
  std::ifstream in(file);
  std::string line;
  std::smatch m;
  while (std::getline(in, line))
    if (std::regex_search(line, m, re)) out.push_back(m[1]);
  return out;
}

std::string layer_of(const std::string& rel) { return rel.substr(0, rel.find('/')); }

}  // namespace

std::vector<Violation> check_tree(const std::string& root_dir) {
  fs::path root(root_dir);
  std::map<std::string, std::vector<std::string>> incs;  // rel path -> includes
  for (const auto& layer : kLayers) {
    if (!fs::exists(root / layer)) continue;
    for (const auto& e : fs::recursive_directory_iterator(root / layer)) {
      auto ext = e.path().extension().string();
      if (ext != ".h" && ext != ".cc" && ext != ".cu" && ext != ".cuh") continue;
      incs[fs::relative(e.path(), root).string()] = includes_of(e.path());
    }
  }
  // Transitive third-party includes of each project file, with the project header they came via.
  std::map<std::string, std::map<std::string, std::string>> memo;
  std::set<std::string> visiting;
  std::function<const std::map<std::string, std::string>&(const std::string&)> reach =
      [&](const std::string& file) -> const std::map<std::string, std::string>& {
    auto it = memo.find(file);
    if (it != memo.end()) return it->second;
    std::map<std::string, std::string> out;
    visiting.insert(file);
    for (const auto& inc : incs[file]) {
      if (incs.count(inc)) {
        if (visiting.count(inc)) continue;
        for (const auto& [tp, via] : reach(inc)) out.emplace(tp, via.empty() ? inc : via);
      } else {
        out.emplace(inc, "");
      }
    }
    visiting.erase(file);
    return memo[file] = out;
  };

  std::vector<Violation> violations;
  for (const auto& [file, list] : incs) {
    std::string layer = layer_of(file);
    for (const auto& inc : list) {
      if (incs.count(inc) && !kAllowedLayers.at(layer).count(layer_of(inc)))
        violations.push_back({file, inc, ""});
    }
    for (const auto& [tp, via] : reach(file)) {
      for (const auto& owned : kOwned) {
        if (tp.rfind(owned.prefix, 0) == 0 && file.rfind(owned.owner, 0) != 0)
          violations.push_back({file, tp, via});
      }
    }
  }
  return violations;
}

}  // namespace grpo::layering
