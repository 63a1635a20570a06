// Helpers shared by the cluster/ test suites (and tests that open tcp rings): a mailbox message
// collector, free loopback tcp ports, and a short-lived temporary directory (short paths, because ipc:// socket paths are limited to 107 bytes).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

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

// `count` distinct free tcp ports on 127.0.0.1 (free when probed; see the file comment).
inline std::vector<int> free_tcp_ports(int count) {
  std::vector<int> fds;
  std::vector<int> ports;
  for (int i = 0; i < count; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw std::runtime_error("socket() failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ::close(fd);
      throw std::runtime_error("probing a free port failed");
    }
    fds.push_back(fd);  // held open until all are chosen, so the ports are distinct
    ports.push_back(ntohs(addr.sin_port));
  }
  for (int fd : fds) ::close(fd);
  return ports;
}

}  // namespace grpo::cluster::test_util
