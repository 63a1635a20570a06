// ZeroMQ implementation of cluster/allreduce.h: one bound PULL socket (from the predecessor) and
// one connected PUSH socket (to the successor) per rank, used only by the calling thread.
#include "cluster/allreduce.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <zmq.hpp>

#include "base/log.h"
#include "cluster/security_internal.h"
#include "cluster/zmq_util.h"

namespace grpo::cluster {

enum class RingAllReduce::Op : uint8_t { kAllReduceSum = 1, kBroadcast = 2, kBarrier = 3 };

namespace {

using Clock = std::chrono::steady_clock;
using internal::from_zmq;
using internal::ipc_path;
using internal::ipc_path_in_use;

constexpr uint32_t kMagic = 0x52415247;  // "GRAR" when read as little-endian bytes
constexpr uint16_t kVersion = 1;
constexpr size_t kHeaderBytes = 64;

const char* op_name(uint8_t op) {
  switch (op) {
    case 1: return "all_reduce_sum";
    case 2: return "broadcast";
    case 3: return "barrier";
    default: return "unknown";
  }
}

// The header frame of every ring message. Encoded little-endian at fixed offsets.
struct Header {
  uint32_t magic = kMagic;
  uint16_t version = kVersion;
  uint8_t op = 0;
  uint64_t ring_id = 0;
  uint64_t seq = 0;
  uint32_t step = 0;
  uint32_t chunk = 0;
  uint32_t sender = 0;
  uint32_t world = 0;
  uint64_t total = 0;  // elements (all-reduce, barrier) or bytes (broadcast) of the whole call
  uint32_t root = 0;   // broadcast root; 0 otherwise
  uint64_t chunk_bytes = 0;  // the sender's payload limit per message
};

void put_le(unsigned char* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint64_t get_le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// Offsets: magic 0, version 4, op 6, (reserved 7), ring_id 8, seq 16, step 24, chunk 28,
// sender 32, world 36, total 40, root 48, (reserved 52), chunk_bytes 56.
void encode(const Header& h, unsigned char* p) {
  std::memset(p, 0, kHeaderBytes);
  put_le(p + 0, h.magic, 4);
  put_le(p + 4, h.version, 2);
  put_le(p + 6, h.op, 1);
  put_le(p + 8, h.ring_id, 8);
  put_le(p + 16, h.seq, 8);
  put_le(p + 24, h.step, 4);
  put_le(p + 28, h.chunk, 4);
  put_le(p + 32, h.sender, 4);
  put_le(p + 36, h.world, 4);
  put_le(p + 40, h.total, 8);
  put_le(p + 48, h.root, 4);
  put_le(p + 56, h.chunk_bytes, 8);
}

Header decode(const unsigned char* p) {
  Header h;
  h.magic = static_cast<uint32_t>(get_le(p + 0, 4));
  h.version = static_cast<uint16_t>(get_le(p + 4, 2));
  h.op = static_cast<uint8_t>(get_le(p + 6, 1));
  h.ring_id = get_le(p + 8, 8);
  h.seq = get_le(p + 16, 8);
  h.step = static_cast<uint32_t>(get_le(p + 24, 4));
  h.chunk = static_cast<uint32_t>(get_le(p + 28, 4));
  h.sender = static_cast<uint32_t>(get_le(p + 32, 4));
  h.world = static_cast<uint32_t>(get_le(p + 36, 4));
  h.total = get_le(p + 40, 8);
  h.root = static_cast<uint32_t>(get_le(p + 48, 4));
  h.chunk_bytes = get_le(p + 56, 8);
  return h;
}

// FNV-1a over the world size and the endpoint list: messages of another ring are foreign.
uint64_t ring_id_of(const std::vector<std::string>& endpoints) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](unsigned char c) {
    h ^= c;
    h *= 1099511628211ull;
  };
  const uint64_t world = endpoints.size();
  for (int i = 0; i < 8; ++i) mix(static_cast<unsigned char>(world >> (8 * i)));
  for (const std::string& e : endpoints) {
    for (char c : e) mix(static_cast<unsigned char>(c));
    mix(0);
  }
  return h;
}

size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

// dst[i] += src[i] for a payload that may be unaligned (ZeroMQ gives no alignment guarantee).
void add_into(float* dst, const unsigned char* src, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    float v;
    std::memcpy(&v, src + i * sizeof(float), sizeof(float));
    dst[i] += v;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

// Owns the raw sockets (created from the Transport's context handle) and the message kept back
// for the next call.
struct RingAllReduce::Impl {
  struct Socket {
    Socket(void* context, int type) : handle(zmq_socket(context, type)) {
      if (handle == nullptr) throw zmq::error_t();
    }
    ~Socket() {
      if (handle != nullptr) zmq_close(handle);
    }
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;
    zmq::socket_ref ref() { return zmq::socket_ref(zmq::from_handle, handle); }
    void* handle;
  };

  // A message that belongs to a later call than the one running when it arrived.
  struct Pending {
    Header header;
    zmq::message_t data;
  };

  explicit Impl(void* context) : pull(context, ZMQ_PULL), push(context, ZMQ_PUSH) {}

  Socket pull;  // bound at endpoints[rank]
  Socket push;  // connected to endpoints[(rank + 1) % world]
  std::string bound_endpoint;
  std::string ipc_path;  // removed at destruction; "" if none
  std::string zap_domain;  // the pull socket's ZAP domain; "" if not secured
  uint64_t ring_id = 0;
  std::optional<Pending> pending;

  class Call;  // one collective call's sends and checked receives
};

StatusOr<std::unique_ptr<RingAllReduce>> RingAllReduce::create(
    std::shared_ptr<Transport> transport, int rank, std::vector<std::string> endpoints,
    RingOptions options) {
  const std::string what = "RingAllReduce::create(rank " + std::to_string(rank) + ")";
  if (!transport) return invalid_argument(what + ": no transport");
  if (endpoints.empty()) return invalid_argument(what + ": no endpoints");
  if (endpoints.size() > (size_t{1} << 20)) return invalid_argument(what + ": too many endpoints");
  const int world = static_cast<int>(endpoints.size());
  if (rank < 0 || rank >= world) {
    return invalid_argument(what + ": rank outside [0, " + std::to_string(world) + ")");
  }
  if (options.timeout_ms <= 0 || options.max_chunk_bytes == 0 || options.linger_ms < 0 ||
      options.max_chunk_bytes > (size_t{1} << 31)) {
    return invalid_argument(what + ": invalid options (timeout_ms > 0, 0 < max_chunk_bytes <= "
                            "2 GiB, linger_ms >= 0)");
  }
  std::set<std::string> distinct;
  for (const std::string& e : endpoints) {
    if (e.empty()) return invalid_argument(what + ": empty endpoint");
    if (e.find('*') != std::string::npos) {
      return invalid_argument(what + ": endpoint " + e +
                              " is a wildcard; peers must know every endpoint in advance");
    }
    if (!distinct.insert(e).second) return invalid_argument(what + ": duplicate endpoint " + e);
  }
  // Both roles: the receive socket is a CURVE server, the send socket a CURVE client.
  GRPO_RETURN_IF_ERROR(check_security_options(options.security, /*is_server=*/true, what));
  GRPO_RETURN_IF_ERROR(check_security_options(options.security, /*is_server=*/false, what));
  if (world == 1) {
    return std::unique_ptr<RingAllReduce>(new RingAllReduce(
        std::move(transport), rank, std::move(endpoints), options, nullptr));
  }

  const std::string& own = endpoints[rank];
  const std::string& next = endpoints[(rank + 1) % world];
  const std::string path = ipc_path(own);
  if (!path.empty() && ipc_path_in_use(path)) {
    return already_exists("bind " + own + ": already bound by a live process");
  }
  std::string zap_domain;
  if (options.security.enabled) {
    auto domain = transport->add_zap_domain(internal::allowed_client_key_bytes(options.security));
    if (!domain.ok()) return domain.status().with_context(what);
    zap_domain = *domain;
  }
  std::unique_ptr<Impl> impl;
  try {
    impl = std::make_unique<Impl>(transport->context_handle());
    if (options.security.enabled) {
      Status s = internal::set_curve_server(impl->pull.handle, options.security, zap_domain, what);
      if (s.ok()) s = internal::set_curve_client(impl->push.handle, options.security, what);
      if (!s.ok()) {
        impl.reset();
        transport->remove_zap_domain(zap_domain);
        return s;
      }
    }
    // Unlimited high-water marks: sends never block, so the send-then-receive ring cannot
    // deadlock (the header comment explains why memory still stays bounded).
    zmq::socket_ref pull = impl->pull.ref();
    pull.set(zmq::sockopt::linger, 0);
    pull.set(zmq::sockopt::rcvhwm, 0);
    const size_t payload_limit = std::max(options.max_chunk_bytes, sizeof(float));
    pull.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(payload_limit + kHeaderBytes));
    zmq::socket_ref push = impl->push.ref();
    push.set(zmq::sockopt::linger, options.linger_ms);
    push.set(zmq::sockopt::sndhwm, 0);
    push.set(zmq::sockopt::sndtimeo, options.timeout_ms);
    pull.bind(own);
    impl->bound_endpoint = own;
    push.connect(next);
  } catch (const zmq::error_t& e) {
    if (impl && !impl->bound_endpoint.empty()) {
      try {
        impl->pull.ref().unbind(impl->bound_endpoint);  // release an inproc name at once
      } catch (const zmq::error_t&) {
      }
    }
    impl.reset();
    if (!zap_domain.empty()) transport->remove_zap_domain(zap_domain);
    return from_zmq(e, "RingAllReduce rank " + std::to_string(rank) + " bind " + own +
                           " / connect " + next);
  }
  impl->ipc_path = path;
  impl->zap_domain = zap_domain;
  impl->ring_id = ring_id_of(endpoints);
  return std::unique_ptr<RingAllReduce>(new RingAllReduce(
      std::move(transport), rank, std::move(endpoints), options, std::move(impl)));
}

RingAllReduce::RingAllReduce(std::shared_ptr<Transport> transport, int rank,
                             std::vector<std::string> endpoints, RingOptions options,
                             std::unique_ptr<Impl> impl)
    : transport_(std::move(transport)),
      rank_(rank),
      endpoints_(std::move(endpoints)),
      options_(options),
      impl_(std::move(impl)) {}

RingAllReduce::~RingAllReduce() {
  if (!impl_) return;
  try {
    // Unbinding first releases an inproc endpoint synchronously (zmq_close alone releases it
    // later, on ZeroMQ's reaper thread), so the same endpoint can be bound again at once.
    impl_->pull.ref().unbind(impl_->bound_endpoint);
  } catch (const zmq::error_t& e) {
    GRPO_LOG(kDebug) << from_zmq(e, "unbind " + impl_->bound_endpoint).to_string();
  }
  const std::string path = impl_->ipc_path;
  const std::string zap_domain = impl_->zap_domain;
  impl_.reset();  // zmq_close both; the push socket lingers at most linger_ms in the context
  if (!zap_domain.empty()) transport_->remove_zap_domain(zap_domain);
  if (!path.empty()) {
    // ZeroMQ 4.3 closes the listener asynchronously and leaves the socket file behind.
    const auto deadline = Clock::now() + std::chrono::milliseconds(500);
    while (ipc_path_in_use(path) && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ::unlink(path.c_str());
  }
}

// ---------------------------------------------------------------------------------------------
// Sending and receiving (only ever on the calling thread).

namespace {

// What the next message from the predecessor must be.
struct Expect {
  uint8_t op;
  uint64_t seq;
  uint32_t step;
  uint32_t chunk;
  uint64_t total;
  uint32_t root;
  uint64_t chunk_bytes;
  size_t payload_bytes;
};

}  // namespace

Status RingAllReduce::all_reduce_sum(float* data, size_t n) {
  seq_.fetch_add(1);
  if (data == nullptr && n > 0) {
    return invalid_argument("all_reduce_sum: null data with n = " + std::to_string(n));
  }
  if (world() == 1) return ok_status();
  return ring_reduce(Op::kAllReduceSum, data, n);
}

Status RingAllReduce::barrier() {
  seq_.fetch_add(1);
  if (world() == 1) return ok_status();
  return ring_reduce(Op::kBarrier, nullptr, 0);
}

Status RingAllReduce::broadcast(void* data, size_t bytes, int root) {
  seq_.fetch_add(1);
  if (root < 0 || root >= world()) {
    return invalid_argument("broadcast: root " + std::to_string(root) + " outside [0, " +
                            std::to_string(world()) + ")");
  }
  if (data == nullptr && bytes > 0) {
    return invalid_argument("broadcast: null data with bytes = " + std::to_string(bytes));
  }
  if (world() == 1) return ok_status();
  return ring_broadcast(static_cast<unsigned char*>(data), bytes, root);
}

// The per-call machinery: sends, and receives with header checks.
class RingAllReduce::Impl::Call {
 public:
  Call(RingAllReduce::Impl& impl, int rank, const std::vector<std::string>& endpoints,
       const RingOptions& options, uint8_t op, uint64_t seq, uint64_t total, uint32_t root,
       std::atomic<uint64_t>& stale, std::atomic<uint64_t>& malformed,
       std::atomic<uint64_t>& sent, std::atomic<uint64_t>& received)
      : impl_(impl),
        rank_(rank),
        world_(static_cast<int>(endpoints.size())),
        endpoints_(endpoints),
        options_(options),
        op_(op),
        seq_(seq),
        total_(total),
        root_(root),
        stale_(stale),
        malformed_(malformed),
        sent_(sent),
        received_(received) {}

  int prev() const { return (rank_ + world_ - 1) % world_; }
  int next() const { return (rank_ + 1) % world_; }

  std::string where() const {
    return std::string(op_name(op_)) + " call " + std::to_string(seq_) + " on rank " +
           std::to_string(rank_) + "/" + std::to_string(world_);
  }

  Status send(uint32_t step, uint32_t chunk, const void* payload, size_t bytes) {
    Header h;
    h.op = op_;
    h.ring_id = impl_.ring_id;
    h.seq = seq_;
    h.step = step;
    h.chunk = chunk;
    h.sender = static_cast<uint32_t>(rank_);
    h.world = static_cast<uint32_t>(world_);
    h.total = total_;
    h.root = root_;
    h.chunk_bytes = options_.max_chunk_bytes;
    zmq::socket_ref push = impl_.push.ref();
    try {
      zmq::message_t header(kHeaderBytes);
      encode(h, static_cast<unsigned char*>(header.data()));
      zmq::message_t body(payload, bytes);  // the one copy of the payload
      if (!push.send(header, zmq::send_flags::sndmore) ||
          !push.send(body, zmq::send_flags::none)) {
        return deadline_exceeded(where() + ": could not queue a message for rank " +
                                 std::to_string(next()) + " (" + endpoints_[next()] +
                                 ") within " + std::to_string(options_.timeout_ms) + " ms");
      }
    } catch (const zmq::error_t& e) {
      return from_zmq(e, where() + ": send to rank " + std::to_string(next()) + " (" +
                             endpoints_[next()] + ")");
    }
    sent_.fetch_add(1);
    return ok_status();
  }

  // Receives the message `e` describes into *data, dropping foreign, malformed and stale ones.
  Status receive(const Expect& e, zmq::message_t* data) {
    if (impl_.pending) {
      if (impl_.pending->header.seq > seq_) return moved_on(impl_.pending->header.seq);
      Pending p = std::move(*impl_.pending);
      impl_.pending.reset();
      std::optional<Status> verdict = judge(p.header, p.data, e);
      if (verdict) return *verdict;
      if (accepted_) {
        *data = std::move(p.data);
        received_.fetch_add(1);
        return ok_status();
      }
    }
    zmq::socket_ref pull = impl_.pull.ref();
    const auto deadline = Clock::now() + std::chrono::milliseconds(options_.timeout_ms);
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                               Clock::now());
      if (left.count() <= 0) return timed_out();
      zmq_pollitem_t item{pull.handle(), 0, ZMQ_POLLIN, 0};
      const int ready = zmq_poll(&item, 1, static_cast<long>(left.count()));
      if (ready < 0) {
        if (zmq_errno() == EINTR) continue;
        return from_zmq(zmq::error_t(), where() + ": poll " + endpoints_[rank_]);
      }
      if (ready == 0) continue;  // re-checks the deadline
      zmq::message_t head;
      zmq::message_t body;
      try {
        if (!pull.recv(head, zmq::recv_flags::dontwait)) continue;
        // ZeroMQ delivers all parts of a multi-part message together with its first part.
        bool framed = false;
        if (head.more() && pull.recv(body, zmq::recv_flags::dontwait)) {
          framed = !body.more();
          bool more = body.more();
          zmq::message_t extra;
          while (more && pull.recv(extra, zmq::recv_flags::dontwait)) more = extra.more();
        }
        if (!framed || head.size() != kHeaderBytes) {
          drop_malformed("not a 64-byte header frame plus one payload frame");
          continue;
        }
      } catch (const zmq::error_t& err) {
        return from_zmq(err, where() + ": receive on " + endpoints_[rank_]);
      }
      const Header h = decode(static_cast<const unsigned char*>(head.data()));
      std::optional<Status> verdict = judge(h, body, e);
      if (verdict) return *verdict;
      if (accepted_) {
        *data = std::move(body);
        received_.fetch_add(1);
        return ok_status();
      }
    }
  }

 private:
  // Classifies a well-framed message. Returns a Status to end the call with, or nothing; in the
  // latter case accepted_ says whether the message is the expected one (else it was dropped).
  std::optional<Status> judge(const Header& h, zmq::message_t& body, const Expect& e) {
    accepted_ = false;
    if (h.magic != kMagic || h.version != kVersion || h.ring_id != impl_.ring_id ||
        h.world != static_cast<uint32_t>(world_)) {
      drop_malformed("foreign header (magic, version, ring id or world)");
      return std::nullopt;
    }
    if (h.sender != static_cast<uint32_t>(prev())) {
      drop_malformed("sender " + std::to_string(h.sender) + " is not the predecessor " +
                     std::to_string(prev()));
      return std::nullopt;
    }
    if (h.seq < seq_) {
      const uint64_t n = stale_.fetch_add(1) + 1;
      if (n == 1 || n % 1000 == 0) {
        GRPO_LOG(kWarn) << where() << ": dropped a leftover message of call " << h.seq << " ("
                        << n << " stale messages dropped so far)";
      }
      return std::nullopt;
    }
    if (h.seq > seq_) {
      impl_.pending = Pending{h, std::move(body)};
      return moved_on(h.seq);
    }
    if (h.op != e.op || h.total != e.total || h.root != e.root ||
        h.chunk_bytes != e.chunk_bytes) {
      return failed_precondition(
          where() + " (n/bytes " + std::to_string(e.total) + ", root " + std::to_string(e.root) +
          ", max_chunk_bytes " + std::to_string(e.chunk_bytes) + "): rank " +
          std::to_string(prev()) + " made a different call: " + op_name(h.op) + " (n/bytes " +
          std::to_string(h.total) + ", root " + std::to_string(h.root) + ", max_chunk_bytes " +
          std::to_string(h.chunk_bytes) + "); all ranks must make the same calls");
    }
    if (h.step != e.step || h.chunk != e.chunk || body.size() != e.payload_bytes) {
      drop_malformed("unexpected step " + std::to_string(h.step) + " chunk " +
                     std::to_string(h.chunk) + " size " + std::to_string(body.size()) +
                     " (expected step " + std::to_string(e.step) + " chunk " +
                     std::to_string(e.chunk) + " size " + std::to_string(e.payload_bytes) + ")");
      return std::nullopt;
    }
    accepted_ = true;
    return std::nullopt;
  }

  void drop_malformed(const std::string& why) {
    const uint64_t n = malformed_.fetch_add(1) + 1;
    if (n == 1 || n % 1000 == 0) {
      GRPO_LOG(kWarn) << where() << ": dropped a malformed message on " << endpoints_[rank_]
                      << ": " << why << " (" << n << " malformed messages dropped so far)";
    }
  }

  Status moved_on(uint64_t their_seq) const {
    return unavailable(where() + ": rank " + std::to_string(prev()) + " (" + endpoints_[prev()] +
                       ") has already moved on to call " + std::to_string(their_seq) +
                       ", abandoning this one; the next call resumes in step");
  }

  Status timed_out() const {
    return deadline_exceeded(where() + ": no message from rank " + std::to_string(prev()) +
                             " (endpoint " + endpoints_[prev()] + ") within " +
                             std::to_string(options_.timeout_ms) + " ms on this rank's endpoint " +
                             endpoints_[rank_]);
  }

  RingAllReduce::Impl& impl_;
  int rank_;
  int world_;
  const std::vector<std::string>& endpoints_;
  const RingOptions& options_;
  uint8_t op_;
  uint64_t seq_;
  uint64_t total_;
  uint32_t root_;
  std::atomic<uint64_t>& stale_;
  std::atomic<uint64_t>& malformed_;
  std::atomic<uint64_t>& sent_;
  std::atomic<uint64_t>& received_;
  bool accepted_ = false;
};

Status RingAllReduce::ring_reduce(Op op, float* data, size_t n) {
  const int w = world();
  const uint64_t seq = seq_.load();
  const size_t chunk_elems = std::max<size_t>(1, options_.max_chunk_bytes / sizeof(float));
  Impl::Call call(*impl_, rank_, endpoints_, options_, static_cast<uint8_t>(op), seq, n, 0,
            stale_dropped_, malformed_dropped_, messages_sent_, messages_received_);
  auto seg_begin = [&](int i) { return static_cast<size_t>(i) * n / static_cast<size_t>(w); };
  auto seg_len = [&](int i) { return seg_begin(i + 1) - seg_begin(i); };
  auto mod = [&](int i) { return ((i % w) + w) % w; };
  auto chunks_of = [&](size_t len) { return std::max<size_t>(1, ceil_div(len, chunk_elems)); };

  // Sends every chunk of segment `seg` for ring step `step`.
  auto send_segment = [&](uint32_t step, int seg) -> Status {
    const size_t begin = seg_begin(seg);
    const size_t len = seg_len(seg);
    const size_t chunks = chunks_of(len);
    for (size_t c = 0; c < chunks; ++c) {
      const size_t off = c * chunk_elems;
      const size_t count = std::min(chunk_elems, len - std::min(len, off));
      GRPO_RETURN_IF_ERROR(call.send(step, static_cast<uint32_t>(c),
                                     count > 0 ? data + begin + off : nullptr,
                                     count * sizeof(float)));
    }
    return ok_status();
  };
  // Receives every chunk of segment `seg` and adds (reduce) or copies it into place.
  auto receive_segment = [&](uint32_t step, int seg, bool add) -> Status {
    const size_t begin = seg_begin(seg);
    const size_t len = seg_len(seg);
    const size_t chunks = chunks_of(len);
    for (size_t c = 0; c < chunks; ++c) {
      const size_t off = c * chunk_elems;
      const size_t count = std::min(chunk_elems, len - std::min(len, off));
      Expect e{static_cast<uint8_t>(op), seq, step, static_cast<uint32_t>(c), n, 0,
               options_.max_chunk_bytes, count * sizeof(float)};
      zmq::message_t body;
      GRPO_RETURN_IF_ERROR(call.receive(e, &body));
      if (count == 0) continue;
      if (add) {
        add_into(data + begin + off, static_cast<const unsigned char*>(body.data()), count);
      } else {
        std::memcpy(data + begin + off, body.data(), count * sizeof(float));
      }
    }
    return ok_status();
  };

  // Reduce-scatter: after step w-2, this rank holds the full sum of segment rank+1.
  for (int s = 0; s < w - 1; ++s) {
    GRPO_RETURN_IF_ERROR(send_segment(static_cast<uint32_t>(s), mod(rank_ - s)));
    GRPO_RETURN_IF_ERROR(receive_segment(static_cast<uint32_t>(s), mod(rank_ - s - 1), true));
  }
  // All-gather: pass the finished segments around; every copy is byte for byte.
  for (int s = 0; s < w - 1; ++s) {
    const uint32_t step = static_cast<uint32_t>(w - 1 + s);
    GRPO_RETURN_IF_ERROR(send_segment(step, mod(rank_ + 1 - s)));
    GRPO_RETURN_IF_ERROR(receive_segment(step, mod(rank_ - s), false));
  }
  return ok_status();
}

Status RingAllReduce::ring_broadcast(unsigned char* data, size_t bytes, int root) {
  const int w = world();
  const uint64_t seq = seq_.load();
  const size_t chunk_bytes = options_.max_chunk_bytes;
  const size_t chunks = std::max<size_t>(1, ceil_div(bytes, chunk_bytes));
  Impl::Call call(*impl_, rank_, endpoints_, options_, static_cast<uint8_t>(Op::kBroadcast), seq, bytes,
            static_cast<uint32_t>(root), stale_dropped_, malformed_dropped_, messages_sent_,
            messages_received_);
  const bool last_hop = (rank_ + 1) % w == root;  // the root's predecessor
  for (size_t c = 0; c < chunks; ++c) {
    const size_t off = c * chunk_bytes;
    const size_t count = std::min(chunk_bytes, bytes - std::min(bytes, off));
    if (rank_ == root) {
      GRPO_RETURN_IF_ERROR(call.send(0, static_cast<uint32_t>(c), count ? data + off : nullptr,
                                     count));
      continue;
    }
    Expect e{static_cast<uint8_t>(Op::kBroadcast), seq, 0, static_cast<uint32_t>(c), bytes,
             static_cast<uint32_t>(root), options_.max_chunk_bytes, count};
    zmq::message_t body;
    GRPO_RETURN_IF_ERROR(call.receive(e, &body));
    if (count > 0) std::memcpy(data + off, body.data(), count);
    // Forward each chunk as soon as it arrives, so the chunks pipeline along the ring.
    if (!last_hop) {
      GRPO_RETURN_IF_ERROR(call.send(0, static_cast<uint32_t>(c), count ? data + off : nullptr,
                                     count));
    }
  }
  // The last hop acknowledges to the root (step 1, one empty message): the root returns only
  // once every rank has the data, and notices a missing or mismatched peer.
  if (last_hop) return call.send(1, 0, nullptr, 0);
  if (rank_ == root) {
    Expect e{static_cast<uint8_t>(Op::kBroadcast), seq, 1, 0, bytes, static_cast<uint32_t>(root),
             options_.max_chunk_bytes, 0};
    zmq::message_t body;
    GRPO_RETURN_IF_ERROR(call.receive(e, &body));
  }
  return ok_status();
}

}  // namespace grpo::cluster
