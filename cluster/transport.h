// Message transport between roles: one-way, message-oriented ZeroMQ channels.
//
// A Mailbox binds a PULL socket at an endpoint and hands every message it receives to a callback
// on its own receive thread; an Outbox connects a PUSH socket to a mailbox's endpoint and sends.
// Endpoints are `inproc://name` (same process, same Transport), `ipc:///path` (same host) or
// `tcp://host:port`. Messages are opaque bytes (cluster/codec.h gives them meaning). Delivery is
// in order per (outbox, mailbox) pair and at most once: a message can be lost when a peer dies or
// a connection drops, so protocols above must time out and retry. No ZeroMQ type appears in this
// header.
//
// Ownership and shutdown: every Mailbox and Outbox holds a shared_ptr to the Transport that made
// it, so the ZeroMQ context always outlives its sockets; close (or destroy) the mailboxes and
// outboxes and drop the last Transport reference in any order without hanging (sockets linger at
// most OutboxOptions::linger_ms).
//
// Security (cluster/security.h has the trust model). MailboxOptions::security and
// OutboxOptions::security, when enabled, make the sockets authenticate with ZeroMQ CURVE and
// encrypt every message on ipc:// and tcp://; a secured mailbox admits only outboxes presenting a
// key on its allow-list (checked by the Transport's ZAP handler thread), so messages from any
// other peer, including an unsecured one, never reach the callback. Both ends must be secured.
// inproc:// endpoints are NOT authenticated or encrypted, whatever the options say: ZeroMQ skips
// security on inproc, which only reaches sockets of the same process (and Transport).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/status.h"
#include "cluster/security.h"

namespace grpo::cluster {

// Owns the process's ZeroMQ context. Create one per process and share it: inproc:// endpoints
// only reach sockets of the same Transport. Thread-safe. The first secured server socket (a
// Mailbox or RingAllReduce with security enabled) starts the Transport's ZAP handler thread,
// which checks every CURVE handshake against that socket's allow-list; the thread ends with the
// Transport.
class Transport {
 public:
  // GRPO_CHECK failure when ZeroMQ cannot create a context (out of file descriptors).
  static std::shared_ptr<Transport> create(int io_threads = 1);
  ~Transport();

  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // CURVE handshakes refused by the ZAP handler so far (client key not on the allow-list). Peers
  // refused earlier, e.g. for not using CURVE at all, are not counted.
  uint64_t authentication_denied() const;

 private:
  friend class Mailbox;
  friend class Outbox;
  friend class RingAllReduce;
  friend class AdminServer;
  friend class AdminClient;
  friend class WeightRelay;
  struct Impl;
  // The raw ZeroMQ context handle (zmq_ctx_new's void*), for cluster/ classes that own their
  // sockets directly (RingAllReduce). Valid for the Transport's lifetime.
  void* context_handle() const;
  // Registers the raw 32-byte client keys a secured server socket admits under a fresh ZAP
  // domain and returns the domain (set it as the socket's ZMQ_ZAP_DOMAIN before binding). The
  // first call starts the ZAP handler: a REP socket bound at inproc://zeromq.zap.01 in this
  // Transport's context, served by a thread that answers each CURVE handshake with 200 when the
  // client's key is on its domain's list, else 400 (unknown domains and other mechanisms: 400).
  // The thread stops, within its poll interval, when the Transport is destroyed.
  StatusOr<std::string> add_zap_domain(std::vector<std::string> allowed_client_keys);
  // Forgets a domain (its socket is closed); later handshakes under it are refused.
  void remove_zap_domain(const std::string& domain);
  explicit Transport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct MailboxOptions {
  // Larger messages are dropped. ZeroMQ enforces it on ipc/tcp (ZMQ_MAXMSGSIZE: it drops the
  // message by disconnecting the peer, which reconnects; such drops are not counted), the Mailbox
  // itself on inproc (counted in dropped()).
  size_t max_message_bytes = size_t{512} << 20;
  int receive_hwm = 1000;      // ZMQ_RCVHWM, in messages
  int poll_interval_ms = 20;   // how often the receive thread checks for close()
  // CURVE server side (ZMQ_CURVE_SERVER with own.secret_key, allow-list allowed_client_keys,
  // enforced through a ZAP domain). Disabled: no authentication, no encryption. Ignored on
  // inproc:// (see the header comment).
  SecurityOptions security;
};

// A bound PULL socket plus the thread that receives on it.
//
// The receive thread owns the socket and is the only caller of the callback, so callbacks run one
// at a time, in arrival order. A callback that throws is logged and counted; the thread goes on.
// A slow callback delays close(). All methods are thread-safe, but close() and the destructor must
// not be called from inside the callback (close() there only requests the stop; the destructor
// there is a GRPO_CHECK failure).
class Mailbox {
 public:
  using Callback = std::function<void(std::string bytes)>;

  // Binds `endpoint` and starts receiving. AlreadyExists (naming the endpoint) when it is bound
  // already, by this process or, for ipc://, by another live process; InvalidArgument for a
  // malformed endpoint or malformed security keys (Unimplemented when security is enabled and
  // libzmq lacks CURVE). `tcp://host:*` picks a free port: see endpoint().
  static StatusOr<std::unique_ptr<Mailbox>> bind(std::shared_ptr<Transport> transport,
                                                 std::string endpoint, Callback callback,
                                                 MailboxOptions options = {});
  ~Mailbox();

  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  // Stops the receive thread (within about poll_interval_ms plus the running callback), closes
  // the socket and unbinds the endpoint. Messages not yet received are discarded. Idempotent.
  void close();

  // The endpoint actually bound (resolved port for tcp://host:*).
  const std::string& endpoint() const { return endpoint_; }
  uint64_t received() const { return received_.load(); }         // handed to the callback
  uint64_t dropped() const { return dropped_.load(); }           // oversized or multi-part
  uint64_t callback_errors() const { return callback_errors_.load(); }

 private:
  struct Socket;
  Mailbox(std::shared_ptr<Transport> transport, std::string endpoint, Callback callback,
          MailboxOptions options, std::unique_ptr<Socket> socket);
  void run();

  std::shared_ptr<Transport> transport_;
  std::string endpoint_;
  Callback callback_;
  MailboxOptions options_;
  std::unique_ptr<Socket> socket_;  // used only by the receive thread once it runs
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> received_{0};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> callback_errors_{0};
  std::mutex close_mu_;  // serializes close()
  bool closed_ = false;  // guarded by close_mu_
  std::thread thread_;
};

struct OutboxOptions {
  // How long send() may wait when the queue is full (HWM reached) before giving up with
  // Unavailable. 0 = never wait.
  int send_timeout_ms = 1000;
  int send_hwm = 1000;   // ZMQ_SNDHWM, in messages queued towards the peer
  // How long unsent messages may hold up close() / context shutdown (ZMQ_LINGER).
  int linger_ms = 200;
  // false: messages queue while the peer is not (yet) connected; true: send() waits (up to
  // send_timeout_ms) until a connection exists (ZMQ_IMMEDIATE).
  bool immediate = false;
  // CURVE client side (own keypair, server_public_key). Disabled: plain, unauthenticated. A
  // secured outbox whose keys a mailbox refuses keeps retrying the handshake; its messages queue
  // (up to send_hwm) and are never delivered. Ignored on inproc://.
  SecurityOptions security;
};

// A connected PUSH socket. Connecting succeeds before the peer binds; ZeroMQ reconnects after the
// peer restarts. Thread-safe: send() from several threads is serialized by a mutex.
class Outbox {
 public:
  // InvalidArgument for a malformed endpoint, negative option or malformed security keys.
  static StatusOr<std::unique_ptr<Outbox>> connect(std::shared_ptr<Transport> transport,
                                                   std::string endpoint,
                                                   OutboxOptions options = {});
  ~Outbox();

  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Queues one message. Unavailable when it cannot be queued within send_timeout_ms (peer slow or
  // absent); FailedPrecondition after close(). OK means queued, not delivered.
  Status send(std::string_view bytes);

  // Closes the socket (pending messages get linger_ms to leave). Idempotent.
  void close();

  const std::string& endpoint() const { return endpoint_; }
  uint64_t sent() const { return sent_.load(); }

 private:
  struct Socket;
  Outbox(std::shared_ptr<Transport> transport, std::string endpoint, OutboxOptions options,
         std::unique_ptr<Socket> socket);

  std::shared_ptr<Transport> transport_;
  std::string endpoint_;
  OutboxOptions options_;
  std::mutex mu_;                   // guards socket_
  std::unique_ptr<Socket> socket_;  // null once closed
  std::atomic<uint64_t> sent_{0};
};

}  // namespace grpo::cluster
