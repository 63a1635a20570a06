// ZeroMQ helpers shared by the socket owners of cluster/ (transport.cc, allreduce.cc); internal to
// cluster/, which is the only folder that includes ZeroMQ.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>
#include <cstring>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include "base/status.h"

namespace grpo::cluster::internal {

// zmq::error_t as a Status naming `what` (converted here, once).
inline Status from_zmq(const zmq::error_t& e, const std::string& what) {
  std::string message = what + ": " + e.what() + " (errno " + std::to_string(e.num()) + ")";
  switch (e.num()) {
    case EADDRINUSE:
      return already_exists(what + ": address already in use");
    case EAGAIN:
      return unavailable(std::move(message));
    case EINVAL:
    case EPROTONOSUPPORT:
    case ENOCOMPATPROTO:
    case EADDRNOTAVAIL:
    case ENODEV:
    case ENOENT:
    case ENAMETOOLONG:
      return invalid_argument(std::move(message));
    case ETERM:
      return cancelled(std::move(message));
    default:
      return internal_error(std::move(message));
  }
}

// The filesystem path of an ipc:// endpoint, or "" for other endpoints, abstract sockets
// ("ipc://@name", which the kernel itself refuses to bind twice) and wildcards ("ipc://*").
inline std::string ipc_path(std::string_view endpoint) {
  constexpr std::string_view kIpcPrefix = "ipc://";
  if (endpoint.substr(0, kIpcPrefix.size()) != kIpcPrefix) return "";
  std::string path(endpoint.substr(kIpcPrefix.size()));
  if (path.empty() || path[0] == '@' || path == "*") return "";
  return path;
}

// True when a process is accepting connections on the unix socket at `path`. ZeroMQ's ipc bind
// silently unlinks and replaces an existing socket file, which would steal the endpoint from a
// live process; this probe lets a bind refuse instead.
inline bool ipc_path_in_use(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) return false;  // zmq will reject it
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool in_use = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return in_use;
}

// After closing the socket bound at ipc path `path`: ZeroMQ closes the listener asynchronously on
// its I/O thread and (in 4.3) leaves the socket file behind. Waits (at most 500 ms) until the path
// stops accepting connections, then removes the file, so the same path can be bound again at once.
inline void release_ipc_path(const std::string& path) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  while (ipc_path_in_use(path) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ::unlink(path.c_str());
}

}  // namespace grpo::cluster::internal
