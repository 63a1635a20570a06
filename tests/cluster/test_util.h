// Helpers shared by the cluster/ test suites: a mailbox message collector and a short-lived
// temporary directory (short paths, because ipc:// socket paths are limited to 107 bytes).
#pragma once

#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "cluster/transport.h"

namespace grpo::cluster::test_util {

// Collects what a mailbox receives; safe to read while the receive thread appends.
class Collector {
 public:
  Mailbox::Callback callback() {
    return [this](std::string bytes) {
      std::lock_guard<std::mutex> lock(mu_);
      messages_.push_back(std::move(bytes));
      cv_.notify_all();
    };
  }
  // Waits until at least n messages arrived (false on timeout).
  bool wait_for(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return messages_.size() >= n; });
  }
  std::vector<std::string> messages() {
    std::lock_guard<std::mutex> lock(mu_);
    return messages_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> messages_;
};

// A temporary directory /tmp/grpo_<tag>.XXXXXX, removed (with its files) at the end of the test.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "cluster_test") {
    std::string tmpl = "/tmp/grpo_" + tag + ".XXXXXX";
    const char* dir = ::mkdtemp(tmpl.data());
    if (dir == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = dir;
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace grpo::cluster::test_util
