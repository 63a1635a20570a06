// A unique temporary directory for one storage test, removed (with its contents) on destruction.
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace grpo::storage::test_util {

class TestDir {
 public:
  TestDir() {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string("grpo_storage_") + (info ? info->test_suite_name() : "x") +
                       "_" + (info ? info->name() : "x") + "_" + std::to_string(::getpid()) + "_" +
                       std::to_string(counter++);
    path_ = (std::filesystem::path(::testing::TempDir()) / name).string();
    std::filesystem::remove_all(path_);
  }
  ~TestDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TestDir(const TestDir&) = delete;
  TestDir& operator=(const TestDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace grpo::storage::test_util
