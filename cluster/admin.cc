#include "cluster/admin.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <vector>
#include <zmq.hpp>

#include "base/log.h"
#include "cluster/security_internal.h"
#include "cluster/zmq_util.h"

namespace grpo::cluster {

using internal::from_zmq;
using internal::ipc_path;
using internal::ipc_path_in_use;

std::string admin_endpoint(const std::string& prefix, const std::string& run_dir) {
  if (prefix.rfind("tcp://", 0) == 0) {
    const size_t colon = prefix.rfind(':');
    if (colon != std::string::npos && colon > 5) {
      const std::string port = prefix.substr(colon + 1);
      bool digits = !port.empty() && port.size() <= 5;
      for (char c : port) digits = digits && c >= '0' && c <= '9';
      if (digits) return prefix.substr(0, colon + 1) + std::to_string(std::stoi(port) + 2);
    }
    return prefix;  // malformed: binding it reports the error
  }
  if (prefix.rfind("ipc://", 0) == 0) return prefix + ".admin";
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::absolute(run_dir.empty() ? "." : run_dir, ec);
  return "ipc://" + (dir / "admin.sock").lexically_normal().string();
}

namespace {

// A raw ZeroMQ socket closed on destruction.
struct RawSocket {
  RawSocket(void* context, int type) : handle(zmq_socket(context, type)) {}
  ~RawSocket() {
    if (handle != nullptr) zmq_close(handle);
  }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;
  void* handle;
};

Status zmq_status(const std::string& what) { return from_zmq(zmq::error_t(), what); }

Status set_int(void* socket, int option, int value, const std::string& what) {
  if (zmq_setsockopt(socket, option, &value, sizeof(value)) != 0) return zmq_status(what);
  return ok_status();
}

// Receives the rest of a multi-part message and discards it.
void drain_parts(void* socket) {
  int more = 1;
  size_t size = sizeof(more);
  while (zmq_getsockopt(socket, ZMQ_RCVMORE, &more, &size) == 0 && more) {
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, socket, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&part);
      return;
    }
    zmq_msg_close(&part);
  }
}

}  // namespace

struct AdminServer::Socket {
  explicit Socket(void* context) : raw(context, ZMQ_ROUTER) {}
  RawSocket raw;
  std::string ipc_path;
  std::string zap_domain;
};

StatusOr<std::unique_ptr<AdminServer>> AdminServer::bind(std::shared_ptr<Transport> transport,
                                                         std::string endpoint, Handler handler,
                                                         AdminServerOptions options) {
  const std::string what = "admin socket " + endpoint;
  if (!transport || !handler) return invalid_argument(what + ": no transport or handler");
  if (options.poll_interval_ms <= 0 || options.max_request_bytes == 0)
    return invalid_argument(what + ": invalid options");
  GRPO_RETURN_IF_ERROR(check_security_options(options.security, /*is_server=*/true, what));
  const std::string path = ipc_path(endpoint);
  if (!path.empty() && ipc_path_in_use(path))
    return already_exists("bind " + endpoint + ": already served by another process");
  auto socket = std::make_unique<Socket>(transport->context_handle());
  if (socket->raw.handle == nullptr) return zmq_status(what);
  GRPO_RETURN_IF_ERROR(set_int(socket->raw.handle, ZMQ_LINGER, 0, what));
  const int64_t max_bytes = static_cast<int64_t>(options.max_request_bytes);
  if (zmq_setsockopt(socket->raw.handle, ZMQ_MAXMSGSIZE, &max_bytes, sizeof(max_bytes)) != 0)
    return zmq_status(what);
  // A reply to a client that vanished is dropped rather than queued forever.
  GRPO_RETURN_IF_ERROR(set_int(socket->raw.handle, ZMQ_ROUTER_MANDATORY, 0, what));
  if (options.security.enabled) {
    GRPO_ASSIGN_OR_RETURN(socket->zap_domain,
                          transport->add_zap_domain(internal::allowed_client_key_bytes(options.security)));
    Status st = internal::set_curve_server(socket->raw.handle, options.security, socket->zap_domain, what);
    if (!st.ok()) {
      transport->remove_zap_domain(socket->zap_domain);
      return st;
    }
  }
  if (zmq_bind(socket->raw.handle, endpoint.c_str()) != 0) {
    Status st = zmq_status("bind " + endpoint);
    if (!socket->zap_domain.empty()) transport->remove_zap_domain(socket->zap_domain);
    return st;
  }
  socket->ipc_path = path;
  return std::unique_ptr<AdminServer>(new AdminServer(std::move(transport), std::move(endpoint),
                                                      std::move(handler), std::move(options),
                                                      std::move(socket)));
}

AdminServer::AdminServer(std::shared_ptr<Transport> transport, std::string endpoint, Handler handler,
                         AdminServerOptions options, std::unique_ptr<Socket> socket)
    : transport_(std::move(transport)),
      endpoint_(std::move(endpoint)),
      handler_(std::move(handler)),
      options_(std::move(options)),
      socket_(std::move(socket)) {
  thread_ = std::thread([this] { run(); });
}

AdminServer::~AdminServer() { close(); }

void AdminServer::close() {
  if (closed_) return;
  closed_ = true;
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  const std::string path = socket_->ipc_path;
  const std::string domain = socket_->zap_domain;
  socket_.reset();
  if (!domain.empty()) transport_->remove_zap_domain(domain);
  if (!path.empty()) internal::release_ipc_path(path);
}

void AdminServer::run() {
  void* sock = socket_->raw.handle;
  while (!stop_.load()) {
    zmq_pollitem_t item{sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, options_.poll_interval_ms) <= 0 || !(item.revents & ZMQ_POLLIN)) continue;
    zmq_msg_t identity;
    zmq_msg_init(&identity);
    if (zmq_msg_recv(&identity, sock, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&identity);
      continue;
    }
    std::string id(static_cast<const char*>(zmq_msg_data(&identity)), zmq_msg_size(&identity));
    const bool has_payload = zmq_msg_more(&identity);
    zmq_msg_close(&identity);
    if (!has_payload) {
      dropped_.fetch_add(1);
      continue;
    }
    zmq_msg_t payload;
    zmq_msg_init(&payload);
    if (zmq_msg_recv(&payload, sock, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&payload);
      dropped_.fetch_add(1);
      continue;
    }
    const bool extra = zmq_msg_more(&payload);
    std::string request(static_cast<const char*>(zmq_msg_data(&payload)), zmq_msg_size(&payload));
    zmq_msg_close(&payload);
    if (extra) {
      drain_parts(sock);
      dropped_.fetch_add(1);
      continue;
    }
    std::string reply;
    try {
      reply = handler_(request);
    } catch (const std::exception& e) {
      GRPO_LOG(kError) << "admin socket: request handler failed: " << e.what();
      dropped_.fetch_add(1);
      continue;
    }
    served_.fetch_add(1);
    if (zmq_send(sock, id.data(), id.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) continue;
    (void)zmq_send(sock, reply.data(), reply.size(), ZMQ_DONTWAIT);
  }
}

StatusOr<std::string> AdminClient::request(std::shared_ptr<Transport> transport,
                                           const std::string& endpoint, const std::string& request,
                                           int timeout_ms, const SecurityOptions& security) {
  const std::string what = "admin request to " + endpoint;
  if (!transport) return invalid_argument(what + ": no transport");
  GRPO_RETURN_IF_ERROR(check_security_options(security, /*is_server=*/false, what));
  const std::string path = ipc_path(endpoint);
  if (!path.empty() && !ipc_path_in_use(path))
    return unavailable("nothing listens at " + endpoint + ": the coordinator is not running on this host");
  RawSocket sock(transport->context_handle(), ZMQ_DEALER);
  if (sock.handle == nullptr) return zmq_status(what);
  GRPO_RETURN_IF_ERROR(set_int(sock.handle, ZMQ_LINGER, 0, what));
  if (security.enabled) GRPO_RETURN_IF_ERROR(internal::set_curve_client(sock.handle, security, what));
  if (zmq_connect(sock.handle, endpoint.c_str()) != 0) return zmq_status(what);
  // DEALER queues the request until the connection (and its CURVE handshake) is up.
  if (zmq_send(sock.handle, request.data(), request.size(), ZMQ_DONTWAIT) < 0) return zmq_status(what);
  zmq_pollitem_t item{sock.handle, 0, ZMQ_POLLIN, 0};
  const int rc = zmq_poll(&item, 1, timeout_ms);
  if (rc <= 0 || !(item.revents & ZMQ_POLLIN)) {
    return deadline_exceeded("no reply from the coordinator at " + endpoint + " within " +
                             std::to_string(timeout_ms) +
                             " ms: it is not running, not reachable from here, or refused this "
                             "client's keys (a secured cluster admits only the admin key)");
  }
  zmq_msg_t reply;
  zmq_msg_init(&reply);
  if (zmq_msg_recv(&reply, sock.handle, 0) < 0) {
    zmq_msg_close(&reply);
    return zmq_status(what);
  }
  std::string out(static_cast<const char*>(zmq_msg_data(&reply)), zmq_msg_size(&reply));
  zmq_msg_close(&reply);
  return out;
}

}  // namespace grpo::cluster
