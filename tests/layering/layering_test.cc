#include "layering.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

namespace grpo::layering {
namespace {
namespace fs = std::filesystem;

std::string source_root() {
  const char* env = std::getenv("GRPO_SOURCE_DIR");
  return env ? env : ".";
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

TEST(LayeringTest, ProjectTreeHasNoForbiddenInclude) {
  ASSERT_TRUE(fs::exists(fs::path(source_root()) / "base")) << "GRPO_SOURCE_DIR=" << source_root();
  auto violations = check_tree(source_root());
  for (const auto& v : violations)
    ADD_FAILURE() << v.file << " includes " << v.include << (v.via.empty() ? "" : " via " + v.via);
}

TEST(LayeringTest, DetectsDirectAndTransitiveViolations) {
  fs::path root = fs::path(::testing::TempDir()) / "grpo_layering_fixture";
  fs::remove_all(root);
  write(root / "base/ok.h", "#include <string>\n");
  write(root / "runtime/model.h", "#include <torch/torch.h>\n");
  write(root / "runtime/policy.h", "#include \"base/ok.h\"\n");
  write(root / "storage/bad.cc", "#include \"runtime/policy.h\"\n");           // storage -> runtime
  write(root / "actors/leaky.cc", "#include \"runtime/model.h\"\n");           // torch via runtime
  write(root / "base/caf_user.cc", "#include <caf/all.hpp>\n");                // CAF outside actors
  write(root / "actors/fine.cc", "#include \"runtime/policy.h\"\n#include <caf/all.hpp>\n");
  auto v = check_tree(root.string());
  ASSERT_EQ(v.size(), 3u);
  std::set<std::string> files;
  for (const auto& x : v) files.insert(x.file + " " + x.include + " " + x.via);
  EXPECT_TRUE(files.count("storage/bad.cc runtime/policy.h "));
  EXPECT_TRUE(files.count("actors/leaky.cc torch/torch.h runtime/model.h"));
  EXPECT_TRUE(files.count("base/caf_user.cc caf/all.hpp "));
  fs::remove_all(root);
}

}  // namespace
}  // namespace grpo::layering
