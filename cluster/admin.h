// The operator's request/reply channel: grpoctl (an AdminClient) asks the coordinator (an
// AdminServer) and waits for one answer.
//
// ZeroMQ pattern: the server binds a ROUTER socket, each client connects a DEALER. A request is
// one frame; the ROUTER prefixes the client's identity, and the reply goes back to that identity,
// so any number of operators can ask at once. Bytes are opaque here (cluster/codec.h's
// AdminRequest / AdminReply give them meaning).
//
// Security (cluster/security.h): the server is a CURVE server whose allow-list is the ADMIN
// public key only (admin_server_security), so a cluster member holding just the cluster key can
// no more steer the run than a stranger can; the client presents the admin keypair
// (admin_client_security). A refused client never gets an answer: its request times out.
//
// Hostile input: requests larger than max_request_bytes or with other than one payload frame are
// dropped and counted; the handler sees only well-framed requests and must itself treat their
// bytes as untrusted. No ZeroMQ type appears in this header.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "base/status.h"
#include "cluster/security.h"
#include "cluster/transport.h"

namespace grpo::cluster {

// Where the admin socket of a run listens, from run.endpoint_prefix (and run.dir for embedded runs):
//   tcp://HOST:PORT -> tcp://HOST:(PORT+2)   (see actors/wire.h for the other roles' offsets)
//   ipc://PATH      -> ipc://PATH.admin
//   inproc://...    -> ipc://RUN_DIR/admin.sock (an embedded run is steered through a unix socket
//                      in its run folder; RUN_DIR is made absolute)
std::string admin_endpoint(const std::string& endpoint_prefix, const std::string& run_dir);

struct AdminServerOptions {
  size_t max_request_bytes = size_t{1} << 20;
  int poll_interval_ms = 50;  // how often the thread checks for close()
  SecurityOptions security;   // admin_server_security(...) or disabled
};

class AdminServer {
 public:
  // Returns the reply to one request. Runs on the server's thread, one request at a time.
  using Handler = std::function<std::string(const std::string& request)>;

  // Binds `endpoint` and starts serving. AlreadyExists when an ipc:// path is served by a live
  // process; InvalidArgument for a malformed endpoint or keys.
  static StatusOr<std::unique_ptr<AdminServer>> bind(std::shared_ptr<Transport> transport,
                                                     std::string endpoint, Handler handler,
                                                     AdminServerOptions options = {});
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Stops the thread and closes the socket (removing an ipc:// socket file). Idempotent; not from
  // inside the handler.
  void close();

  const std::string& endpoint() const { return endpoint_; }
  uint64_t served() const { return served_.load(); }
  uint64_t dropped() const { return dropped_.load(); }  // malformed framing or oversized

 private:
  struct Socket;
  AdminServer(std::shared_ptr<Transport> transport, std::string endpoint, Handler handler,
              AdminServerOptions options, std::unique_ptr<Socket> socket);
  void run();

  std::shared_ptr<Transport> transport_;
  std::string endpoint_;
  Handler handler_;
  AdminServerOptions options_;
  std::unique_ptr<Socket> socket_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> served_{0};
  std::atomic<uint64_t> dropped_{0};
  std::thread thread_;
  bool closed_ = false;
};

class AdminClient {
 public:
  // Sends `request` to the AdminServer at `endpoint` and waits up to timeout_ms for the reply.
  // DeadlineExceeded when none comes (server down, unreachable, or the keys refused: ZeroMQ
  // cannot tell these apart, so the message names all three); Unavailable at once for an ipc://
  // endpoint nobody listens at; InvalidArgument for a malformed endpoint or keys.
  static StatusOr<std::string> request(std::shared_ptr<Transport> transport,
                                       const std::string& endpoint, const std::string& request,
                                       int timeout_ms, const SecurityOptions& security = {});
};

}  // namespace grpo::cluster
