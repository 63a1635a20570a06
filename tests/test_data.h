// Where the third-party test data lives, and the skip-or-load helpers every `data` test shares.
//
// The data is ../shared/data beside the repository (GRPO_SOURCE_DIR/../shared/data, as CTest sets
// GRPO_SOURCE_DIR), or $GRPO_TEST_DATA when set. A test whose files are absent skips with a message
// saying where it looked; it never fails for missing data.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace grpo::testing {

inline std::filesystem::path test_data_dir() {
  if (const char* env = std::getenv("GRPO_TEST_DATA"); env != nullptr && *env != '\0') return env;
  if (const char* src = std::getenv("GRPO_SOURCE_DIR"); src != nullptr && *src != '\0')
    return std::filesystem::path(src) / ".." / "shared" / "data";
  return std::filesystem::path("..") / "shared" / "data";
}

inline std::string test_data_path(const std::string& relative) { return (test_data_dir() / relative).string(); }

// Records of a JSONL file (blank lines skipped); empty when the file is absent.
inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

}  // namespace grpo::testing

// Skips the current test unless `relative` exists under the test data directory.
#define GRPO_REQUIRE_DATA(relative)                                                              \
  do {                                                                                           \
    if (!std::filesystem::exists(::grpo::testing::test_data_dir() / (relative)))                 \
      GTEST_SKIP() << "test data not found: " << ::grpo::testing::test_data_path(relative)        \
                   << " (provide ../shared/data next to the repository or set GRPO_TEST_DATA)"; \
  } while (0)

// Declares `var` (std::vector<nlohmann::json>) with the records of a JSONL data file, or skips.
#define GRPO_LOAD_JSONL_OR_SKIP(var, relative)                                      \
  GRPO_REQUIRE_DATA(relative);                                                      \
  const std::vector<nlohmann::json> var =                                           \
      ::grpo::testing::read_jsonl(::grpo::testing::test_data_dir() / (relative));    \
  ASSERT_FALSE(var.empty()) << ::grpo::testing::test_data_path(relative) << " is empty"
