// ZeroMQ implementation of cluster/transport.h. zmq::error_t is converted to Status here, once.
#include "cluster/transport.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <map>
#include <set>
#include <utility>
#include <zmq.hpp>

#include "base/log.h"
#include "cluster/security_internal.h"
#include "cluster/zmq_util.h"

namespace grpo::cluster {
namespace {

using internal::from_zmq;
using internal::ipc_path;
using internal::ipc_path_in_use;


// A mailbox's callback is running on this thread (nullptr: not a receive thread).
thread_local const Mailbox* tl_running_mailbox = nullptr;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Transport

struct Transport::Impl {
  explicit Impl(int io_threads) : context(io_threads) {}
  // Stops the ZAP handler before the context terminates (it owns the handler's socket).
  ~Impl() {
    zap_stop.store(true);
    if (zap_thread.joinable()) zap_thread.join();
  }
  void serve_zap(zmq::socket_t socket);
  bool zap_allows(const std::string& domain, const std::string& mechanism,
                  const std::string& client_key);

  zmq::context_t context;
  std::mutex mu;
  std::set<std::string> bound_ipc_paths;  // guarded by mu; ipc paths bound by live mailboxes

  // ZAP handler state.
  std::mutex zap_mu;  // guards the three members below
  std::map<std::string, std::set<std::string>> zap_domains;  // domain -> raw client keys
  uint64_t zap_domains_made = 0;
  bool zap_started = false;
  std::thread zap_thread;
  std::atomic<bool> zap_stop{false};
  std::atomic<uint64_t> zap_denied{0};
};

namespace {

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr int kZapPollMs = 50;  // how often the ZAP thread checks for Transport destruction

std::string z85_of(const std::string& raw) {
  if (raw.size() != 32) return "(" + std::to_string(raw.size()) + "-byte key)";
  char text[41] = {};
  zmq_z85_encode(text, reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
  return text;
}

}  // namespace

bool Transport::Impl::zap_allows(const std::string& domain, const std::string& mechanism,
                                 const std::string& client_key) {
  if (mechanism != "CURVE") return false;
  std::lock_guard<std::mutex> lock(zap_mu);
  auto it = zap_domains.find(domain);
  return it != zap_domains.end() && it->second.count(client_key) != 0;
}

// Answers ZAP requests (RFC 27: version, request id, domain, address, identity, mechanism,
// credentials...) until the Transport is destroyed. Owns `socket`.
void Transport::Impl::serve_zap(zmq::socket_t socket) {
  zmq_pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
  while (!zap_stop.load()) {
    try {
      const int ready = zmq_poll(&item, 1, kZapPollMs);
      if (ready < 0) {
        if (zmq_errno() == EINTR) continue;
        throw zmq::error_t();
      }
      if (ready == 0) continue;
      std::vector<std::string> frames;
      while (true) {
        zmq::message_t frame;
        if (!socket.recv(frame, zmq::recv_flags::dontwait)) break;
        frames.emplace_back(frame.data<char>(), frame.size());
        if (!frame.more()) break;
      }
      if (frames.empty()) continue;
      const std::string request_id = frames.size() > 1 ? frames[1] : "";
      bool allowed = false;
      std::string code = "400";
      std::string text = "client key not allowed";
      if (frames.size() < 6 || frames[0] != "1.0") {
        code = "500";
        text = "malformed ZAP request";
      } else {
        const std::string& domain = frames[2];
        const std::string& mechanism = frames[5];
        const std::string key = frames.size() > 6 ? frames[6] : "";
        allowed = zap_allows(domain, mechanism, key);
        if (allowed) {
          code = "200";
          text = "OK";
        } else {
          const uint64_t n = zap_denied.fetch_add(1) + 1;
          if (n == 1 || n % 100 == 0) {
            GRPO_LOG(kWarn) << "refused a " << mechanism << " client from " << frames[3]
                            << " with key " << z85_of(key) << " (ZAP domain " << domain << "; "
                            << n << " refused so far)";
          }
        }
      }
      const std::string reply[] = {"1.0", request_id, code, text, allowed ? "grpo" : "", ""};
      for (size_t i = 0; i < 6; ++i) {
        zmq::message_t part(reply[i].data(), reply[i].size());
        socket.send(part, i + 1 < 6 ? zmq::send_flags::sndmore : zmq::send_flags::none);
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) break;
      GRPO_LOG(kError) << from_zmq(e, "ZAP handler").to_string();
      std::this_thread::sleep_for(std::chrono::milliseconds(kZapPollMs));
    }
  }
  // socket closes here, before ~Impl lets the context terminate.
}

StatusOr<std::string> Transport::add_zap_domain(std::vector<std::string> allowed_client_keys) {
  Impl& t = *impl_;
  std::lock_guard<std::mutex> lock(t.zap_mu);
  if (!t.zap_started) {
    try {
      zmq::socket_t socket(t.context, zmq::socket_type::rep);
      socket.set(zmq::sockopt::linger, 0);
      socket.bind(kZapEndpoint);  // bound before any secured socket exists
      // Thread creation is the memory barrier ZeroMQ asks for when a socket changes threads.
      t.zap_thread = std::thread(
          [&t](zmq::socket_t s) { t.serve_zap(std::move(s)); }, std::move(socket));
    } catch (const zmq::error_t& e) {
      return from_zmq(e, std::string("start the ZAP handler at ") + kZapEndpoint);
    }
    t.zap_started = true;
  }
  std::string domain = "grpo-" + std::to_string(++t.zap_domains_made);
  t.zap_domains[domain] =
      std::set<std::string>(allowed_client_keys.begin(), allowed_client_keys.end());
  return domain;
}

void Transport::remove_zap_domain(const std::string& domain) {
  std::lock_guard<std::mutex> lock(impl_->zap_mu);
  impl_->zap_domains.erase(domain);
}

uint64_t Transport::authentication_denied() const { return impl_->zap_denied.load(); }

std::shared_ptr<Transport> Transport::create(int io_threads) {
  GRPO_CHECK_MSG(io_threads >= 1, "Transport::create: io_threads must be >= 1");
  std::unique_ptr<Impl> impl;
  try {
    impl = std::make_unique<Impl>(io_threads);
  } catch (const zmq::error_t& e) {
    check_failed(__FILE__, __LINE__, "zmq context", from_zmq(e, "zmq_ctx_new").to_string());
  }
  return std::shared_ptr<Transport>(new Transport(std::move(impl)));
}

Transport::Transport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

void* Transport::context_handle() const { return impl_->context.handle(); }

// Every socket belongs to a Mailbox or Outbox (or RingAllReduce) holding a reference to this
// Transport, so by now all are closed; ~Impl stops the ZAP handler thread (within kZapPollMs),
// which closes its socket, and then zmq_ctx_term returns at once.
Transport::~Transport() = default;

// ---------------------------------------------------------------------------------------------
// Mailbox

struct Mailbox::Socket {
  explicit Socket(zmq::context_t& context) : socket(context, zmq::socket_type::pull) {}
  zmq::socket_t socket;
  std::string ipc_path;    // registered in Transport::Impl::bound_ipc_paths; "" if none
  std::string zap_domain;  // registered with Transport::add_zap_domain; "" if not secured
};

StatusOr<std::unique_ptr<Mailbox>> Mailbox::bind(std::shared_ptr<Transport> transport,
                                                 std::string endpoint, Callback callback,
                                                 MailboxOptions options) {
  if (!transport) return invalid_argument("Mailbox::bind " + endpoint + ": no transport");
  if (!callback) return invalid_argument("Mailbox::bind " + endpoint + ": no callback");
  if (options.receive_hwm < 0 || options.poll_interval_ms <= 0 || options.max_message_bytes == 0) {
    return invalid_argument("Mailbox::bind " + endpoint + ": invalid options");
  }
  GRPO_RETURN_IF_ERROR(
      check_security_options(options.security, /*is_server=*/true, "Mailbox::bind " + endpoint));
  Transport::Impl& t = *transport->impl_;
  const std::string path = ipc_path(endpoint);
  if (!path.empty()) {
    std::lock_guard<std::mutex> lock(t.mu);
    if (t.bound_ipc_paths.count(path) != 0) {
      return already_exists("bind " + endpoint + ": already bound by a mailbox of this process");
    }
    if (ipc_path_in_use(path)) {
      return already_exists("bind " + endpoint + ": already bound by another process");
    }
    t.bound_ipc_paths.insert(path);  // reserved until the mailbox closes or the bind fails
  }
  auto release_path = [&] {
    if (path.empty()) return;
    std::lock_guard<std::mutex> lock(t.mu);
    t.bound_ipc_paths.erase(path);
  };
  std::string zap_domain;
  if (options.security.enabled) {
    auto domain = transport->add_zap_domain(internal::allowed_client_key_bytes(options.security));
    if (!domain.ok()) {
      release_path();
      return domain.status();
    }
    zap_domain = *domain;
  }
  auto release_domain = [&] {
    if (!zap_domain.empty()) transport->remove_zap_domain(zap_domain);
  };
  std::unique_ptr<Socket> socket;
  std::string resolved;
  try {
    socket = std::make_unique<Socket>(t.context);
    socket->socket.set(zmq::sockopt::linger, 0);
    socket->socket.set(zmq::sockopt::rcvhwm, options.receive_hwm);
    socket->socket.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(options.max_message_bytes));
    if (options.security.enabled) {
      Status s = internal::set_curve_server(socket->socket.handle(), options.security, zap_domain,
                                            "Mailbox::bind " + endpoint);
      if (!s.ok()) {
        socket.reset();
        release_domain();
        release_path();
        return s;
      }
    }
    socket->socket.bind(endpoint);
    resolved = socket->socket.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    socket.reset();
    release_domain();
    release_path();
    return from_zmq(e, "bind " + endpoint);
  }
  socket->ipc_path = path;
  socket->zap_domain = zap_domain;
  if (resolved.empty()) resolved = endpoint;
  return std::unique_ptr<Mailbox>(new Mailbox(std::move(transport), std::move(resolved),
                                              std::move(callback), options, std::move(socket)));
}

Mailbox::Mailbox(std::shared_ptr<Transport> transport, std::string endpoint, Callback callback,
                 MailboxOptions options, std::unique_ptr<Socket> socket)
    : transport_(std::move(transport)),
      endpoint_(std::move(endpoint)),
      callback_(std::move(callback)),
      options_(options),
      socket_(std::move(socket)) {
  // The socket migrates to the receive thread; thread creation is the memory barrier ZeroMQ asks
  // for when a socket changes threads.
  thread_ = std::thread([this] { run(); });
}

Mailbox::~Mailbox() {
  GRPO_CHECK_MSG(tl_running_mailbox != this, "Mailbox destroyed from inside its own callback");
  close();
}

void Mailbox::close() {
  if (tl_running_mailbox == this) {  // from the callback: cannot join ourselves
    stop_.store(true);
    return;
  }
  std::lock_guard<std::mutex> lock(close_mu_);
  if (closed_) return;
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  const std::string path = socket_ ? socket_->ipc_path : "";
  const std::string zap_domain = socket_ ? socket_->zap_domain : "";
  if (socket_) {
    // The socket is back on this thread (join is the barrier). Unbinding first releases inproc
    // endpoints synchronously; zmq_close alone releases them later, on ZeroMQ's reaper thread.
    try {
      socket_->socket.unbind(endpoint_);
    } catch (const zmq::error_t& e) {
      GRPO_LOG(kDebug) << from_zmq(e, "unbind " + endpoint_).to_string();
    }
  }
  socket_.reset();  // zmq_close; linger is 0
  if (!zap_domain.empty()) transport_->remove_zap_domain(zap_domain);
  if (!path.empty()) {
    internal::release_ipc_path(path);
    Transport::Impl& t = *transport_->impl_;
    std::lock_guard<std::mutex> registry_lock(t.mu);
    t.bound_ipc_paths.erase(path);
  }
  closed_ = true;
}

void Mailbox::run() {
  tl_running_mailbox = this;
  zmq::socket_t& socket = socket_->socket;
  zmq_pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
  while (!stop_.load()) {
    try {
      const int ready = zmq_poll(&item, 1, options_.poll_interval_ms);
      if (ready < 0) {
        if (zmq_errno() == EINTR) continue;
        throw zmq::error_t();
      }
      if (ready == 0) continue;
      // Drain what has arrived, checking for close() between messages.
      while (!stop_.load()) {
        zmq::message_t message;
        if (!socket.recv(message, zmq::recv_flags::dontwait)) break;
        if (message.more()) {
          // Our peers send single frames; a multi-part message is foreign. Drop all its parts.
          while (message.more() && socket.recv(message, zmq::recv_flags::dontwait)) {
          }
          const uint64_t n = dropped_.fetch_add(1) + 1;
          if (n == 1 || n % 1000 == 0) {
            GRPO_LOG(kWarn) << "mailbox " << endpoint_ << ": dropped a multi-part message (" << n
                            << " dropped so far)";
          }
          continue;
        }
        if (message.size() > options_.max_message_bytes) {
          const uint64_t n = dropped_.fetch_add(1) + 1;
          if (n == 1 || n % 1000 == 0) {
            GRPO_LOG(kWarn) << "mailbox " << endpoint_ << ": dropped a message of "
                            << message.size() << " bytes (limit " << options_.max_message_bytes
                            << "; " << n << " dropped so far)";
          }
          continue;
        }
        std::string bytes(message.data<char>(), message.size());
        message.rebuild();  // release the ZeroMQ buffer before the callback runs
        try {
          callback_(std::move(bytes));
        } catch (const std::exception& e) {
          callback_errors_.fetch_add(1);
          GRPO_LOG(kError) << "mailbox " << endpoint_ << ": callback threw: " << e.what();
        } catch (...) {
          callback_errors_.fetch_add(1);
          GRPO_LOG(kError) << "mailbox " << endpoint_ << ": callback threw a non-std exception";
        }
        received_.fetch_add(1);
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) break;
      GRPO_LOG(kError) << from_zmq(e, "mailbox " + endpoint_ + " receive").to_string();
      std::this_thread::sleep_for(std::chrono::milliseconds(options_.poll_interval_ms));
    }
  }
  tl_running_mailbox = nullptr;
}

// ---------------------------------------------------------------------------------------------
// Outbox

struct Outbox::Socket {
  explicit Socket(zmq::context_t& context) : socket(context, zmq::socket_type::push) {}
  zmq::socket_t socket;
};

StatusOr<std::unique_ptr<Outbox>> Outbox::connect(std::shared_ptr<Transport> transport,
                                                  std::string endpoint, OutboxOptions options) {
  if (!transport) return invalid_argument("Outbox::connect " + endpoint + ": no transport");
  if (options.send_timeout_ms < 0 || options.send_hwm < 0 || options.linger_ms < 0) {
    return invalid_argument("Outbox::connect " + endpoint + ": negative option");
  }
  GRPO_RETURN_IF_ERROR(check_security_options(options.security, /*is_server=*/false,
                                              "Outbox::connect " + endpoint));
  std::unique_ptr<Socket> socket;
  try {
    socket = std::make_unique<Socket>(transport->impl_->context);
    socket->socket.set(zmq::sockopt::linger, options.linger_ms);
    socket->socket.set(zmq::sockopt::sndhwm, options.send_hwm);
    socket->socket.set(zmq::sockopt::sndtimeo, options.send_timeout_ms);
    socket->socket.set(zmq::sockopt::immediate, options.immediate);
    if (options.security.enabled) {
      GRPO_RETURN_IF_ERROR(internal::set_curve_client(socket->socket.handle(), options.security,
                                                      "Outbox::connect " + endpoint));
    }
    socket->socket.connect(endpoint);
  } catch (const zmq::error_t& e) {
    return from_zmq(e, "connect " + endpoint);
  }
  return std::unique_ptr<Outbox>(
      new Outbox(std::move(transport), std::move(endpoint), options, std::move(socket)));
}

Outbox::Outbox(std::shared_ptr<Transport> transport, std::string endpoint, OutboxOptions options,
               std::unique_ptr<Socket> socket)
    : transport_(std::move(transport)),
      endpoint_(std::move(endpoint)),
      options_(options),
      socket_(std::move(socket)) {}

Outbox::~Outbox() { close(); }

Status Outbox::send(std::string_view bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!socket_) return failed_precondition("send to " + endpoint_ + ": outbox is closed");
  try {
    zmq::message_t message(bytes.data(), bytes.size());
    if (!socket_->socket.send(message, zmq::send_flags::none)) {
      return unavailable("send to " + endpoint_ + ": not queued within " +
                         std::to_string(options_.send_timeout_ms) +
                         " ms (peer slow or absent)");
    }
  } catch (const zmq::error_t& e) {
    return from_zmq(e, "send to " + endpoint_);
  }
  sent_.fetch_add(1);
  return ok_status();
}

void Outbox::close() {
  std::lock_guard<std::mutex> lock(mu_);
  socket_.reset();  // zmq_close; unsent messages linger at most linger_ms during context shutdown
}

}  // namespace grpo::cluster
