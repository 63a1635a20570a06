// Chained weight broadcast (cluster/weight_relay.h). zmq::error_t is converted to Status here.
#include "cluster/weight_relay.h"

#include <algorithm>
#include <limits>
#include <set>
#include <utility>
#include <zmq.hpp>

#include "base/log.h"
#include "base/log_every.h"
#include "cluster/security_internal.h"
#include "cluster/zmq_util.h"

namespace grpo::cluster {
namespace {

using internal::from_zmq;

constexpr size_t kMaxEndpointBytes = 256;
constexpr uint64_t kMaxVersion = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// What WeightAssembler::begin checks (check_weight_manifest), plus the version range, without
// allocating the blob (the source only verifies and relays; it never assembles).
Status check_manifest(const WeightManifest& m, uint64_t max_total_bytes) {
  if (m.version > kMaxVersion)
    return invalid_argument("weight manifest of version " + std::to_string(m.version) + ": version out of range");
  return check_weight_manifest(m, max_total_bytes);
}

bool same_layout(const WeightManifest& a, const WeightManifest& b) {
  return a.version == b.version && a.total_bytes == b.total_bytes &&
         a.chunk_bytes == b.chunk_bytes && a.chunk_checksums == b.chunk_checksums;
}

}  // namespace

Status check_relay_list(const std::vector<std::string>& relay, const std::string& self_endpoint) {
  if (relay.size() > kMaxRelayHops) {
    return invalid_argument("relay list of " + std::to_string(relay.size()) +
                            " hops exceeds the limit of " + std::to_string(kMaxRelayHops));
  }
  for (size_t i = 0; i < relay.size(); ++i) {
    const std::string& e = relay[i];
    const bool scheme = (starts_with(e, "inproc://") && e.size() > 9) ||
                        (starts_with(e, "ipc://") && e.size() > 6) ||
                        (starts_with(e, "tcp://") && e.size() > 6);
    if (!scheme || e.size() > kMaxEndpointBytes || e.find('\0') != std::string::npos) {
      return invalid_argument("relay hop " + std::to_string(i) + " '" + e.substr(0, 64) +
                              "' is not an inproc://, ipc:// or tcp:// endpoint");
    }
    if (!self_endpoint.empty() && e == self_endpoint) {
      return invalid_argument("relay hop " + std::to_string(i) + " is this receiver (" + e + "): a loop");
    }
  }
  return ok_status();
}

// ---------------------------------------------------------------------------------------------
// WeightRelay

// A PUSH socket made from the Transport's context handle.
struct WeightRelay::Socket {
  explicit Socket(void* context) : handle(zmq_socket(context, ZMQ_PUSH)) {}
  ~Socket() {
    if (handle != nullptr) zmq_close(handle);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  void* handle;
};

StatusOr<std::unique_ptr<WeightRelay>> WeightRelay::create(std::shared_ptr<Transport> transport,
                                                           WeightRelayOptions options,
                                                           CompleteFn on_complete) {
  if (!transport) return invalid_argument("WeightRelay: no transport");
  if (options.send_hwm < 0 || options.send_timeout_ms < 0 || options.linger_ms < 0) {
    return invalid_argument("WeightRelay: negative socket option");
  }
  GRPO_RETURN_IF_ERROR(check_security_options(options.security, /*is_server=*/false, "WeightRelay"));
  return std::unique_ptr<WeightRelay>(
      new WeightRelay(std::move(transport), std::move(options), std::move(on_complete)));
}

WeightRelay::WeightRelay(std::shared_ptr<Transport> transport, WeightRelayOptions options,
                         CompleteFn on_complete)
    : transport_(std::move(transport)),
      options_(std::move(options)),
      on_complete_(std::move(on_complete)),
      assembler_(options_.max_total_bytes) {}

WeightRelay::~WeightRelay() = default;  // sockets close (linger_ms) before the transport goes

bool WeightRelay::handle(std::string& bytes) {
  auto kind = peek_kind(bytes);
  if (!kind.ok()) return false;
  if (*kind == MessageKind::kWeightManifest) {
    on_manifest(std::move(bytes));
    return true;
  }
  if (*kind == MessageKind::kWeightChunk) {
    on_chunk(std::move(bytes));
    return true;
  }
  return false;
}

void WeightRelay::report(const Status& status, uint64_t* counter) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++*counter;
  }
  if (log::worth_logging(++logged_)) {
    GRPO_LOG(kWarn) << "weight relay of worker " << options_.worker_id << ": " << status.message()
                    << " (" << logged_ << " problems so far)";
  }
}

void WeightRelay::on_manifest(std::string bytes) {
  WeightManifest m;
  Status st = decode(bytes, &m);
  if (st.ok() && m.version > kMaxVersion) st = invalid_argument("weight manifest version out of range");
  if (st.ok()) st = check_relay_list(m.relay, options_.self_endpoint).with_context(
      "weight manifest of version " + std::to_string(m.version));
  if (!st.ok()) return report(st, &stats_.malformed);
  const int64_t version = static_cast<int64_t>(m.version);
  const bool assembling = assembler_.started();
  if (version <= held_version_.load() ||
      (assembling && version < static_cast<int64_t>(assembler_.version()))) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.stale;
    return;
  }
  std::vector<std::string> relay = std::move(m.relay);
  m.relay.clear();
  if (assembling && same_layout(m, assembler_.manifest())) {
    // Another copy of the version in progress (the broadcaster's direct send racing the chain):
    // keep what has arrived and where it goes; the copy's chunks fill the gaps.
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.stale;
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (spare_.capacity() > 0) assembler_.recycle(std::move(spare_));
    spare_ = std::string();
  }
  st = assembler_.begin(m);  // an inconsistent manifest leaves the version in progress as it was
  if (!st.ok()) {
    if (!assembler_.started()) assembling_version_.store(-1);  // the blob could not be allocated
    return report(st, &stats_.malformed);
  }
  assembling_version_.store(version);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.manifests;
  }
  const std::string next = relay.empty() ? std::string() : relay.front();
  if (next != next_hop_) {
    // The chain changed: close the sockets to former next hops (a dead one may hold queued
    // messages that would otherwise stay in memory).
    for (auto it = sockets_.begin(); it != sockets_.end();) {
      if (it->first != next && it->first != options_.repair_endpoint) it = sockets_.erase(it);
      else ++it;
    }
  }
  next_hop_ = next;
  next_hop_failed_ = false;
  if (!next_hop_.empty()) {
    m.relay.assign(relay.begin() + 1, relay.end());
    forward(encode(m));
  }
  if (assembler_.complete()) finish();  // an empty blob has no chunks to wait for
}

void WeightRelay::on_chunk(std::string bytes) {
  if (reinterpret_cast<uintptr_t>(bytes.data()) % 8 != 0) bytes = std::string(bytes);  // aligned copy
  WeightChunkView chunk;
  Status st = decode(bytes, &chunk);
  if (!st.ok()) return report(st, &stats_.malformed);
  if (!assembler_.started() || chunk.version != assembler_.version()) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.stale;  // an older version, or one this receiver never saw the manifest of
    return;
  }
  const uint32_t before = assembler_.chunks_received();
  st = assembler_.add_chunk(chunk);
  if (!st.ok()) {
    if (st.code() == StatusCode::kDataLoss) {
      // Wrong size or checksum: damaged on the way. Not forwarded; fetched again from the source.
      report(st, &stats_.corrupt);
      request_repair(chunk.version, chunk.index);
    } else {
      report(st, &stats_.malformed);  // index out of range
    }
    return;
  }
  if (assembler_.chunks_received() == before) return;  // duplicate: stored and forwarded before
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.chunks;
  }
  // The view into `bytes` is not used past this point: the buffer itself goes on.
  if (!next_hop_.empty() && !next_hop_failed_) forward(std::move(bytes));
  if (assembler_.complete()) finish();
}

void WeightRelay::forward(std::string bytes) {
  Status st = send_to(next_hop_, std::move(bytes));
  if (st.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.forwarded;
    return;
  }
  // The next hop does not take messages: give up on it for this version rather than stall every
  // later chunk for send_timeout_ms. The hops after it are caught up by the broadcaster.
  next_hop_failed_ = true;
  report(st.with_context("forward to " + next_hop_), &stats_.forward_failures);
}

void WeightRelay::request_repair(uint64_t version, uint32_t index) {
  if (options_.repair_endpoint.empty()) return;
  WeightChunkRequest request;
  request.version = version;
  request.worker_id = options_.worker_id;
  request.indices = {index};
  Status st = send_to(options_.repair_endpoint, encode(request));
  if (!st.ok()) {
    GRPO_LOG(kWarn) << "weight relay of worker " << options_.worker_id << ": repair request for chunk "
                    << index << " of v" << version << " not sent: " << st.message();
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.repairs_requested;
}

void WeightRelay::finish() {
  CompletedWeights done;
  done.manifest = assembler_.manifest();
  auto blob = assembler_.take_blob();
  GRPO_CHECK(blob.ok());  // complete() held
  done.blob = std::move(blob).value();
  const uint64_t version = done.manifest.version;
  held_version_.store(static_cast<int64_t>(version));
  assembling_version_.store(-1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (completed_) spare_ = std::move(completed_->blob);  // superseded before it was collected
    completed_ = std::move(done);
    ++stats_.completed;
  }
  if (on_complete_) on_complete_(version);
}

WeightRelay::Socket* WeightRelay::socket_for(const std::string& endpoint, Status* error) {
  auto it = sockets_.find(endpoint);
  if (it != sockets_.end()) return it->second.get();
  const std::string what = "weight relay: connect " + endpoint;
  auto socket = std::make_unique<Socket>(transport_->context_handle());
  if (socket->handle == nullptr) {
    *error = from_zmq(zmq::error_t(), what);
    return nullptr;
  }
  for (auto [option, value] : {std::pair{ZMQ_LINGER, options_.linger_ms}, std::pair{ZMQ_SNDHWM, options_.send_hwm},
                               std::pair{ZMQ_SNDTIMEO, options_.send_timeout_ms}}) {
    if (zmq_setsockopt(socket->handle, option, &value, sizeof(value)) != 0) {
      *error = from_zmq(zmq::error_t(), what);
      return nullptr;
    }
  }
  if (options_.security.enabled) {
    *error = internal::set_curve_client(socket->handle, options_.security, what);
    if (!error->ok()) return nullptr;
  }
  if (zmq_connect(socket->handle, endpoint.c_str()) != 0) {
    *error = from_zmq(zmq::error_t(), what);
    return nullptr;
  }
  return sockets_.emplace(endpoint, std::move(socket)).first->second.get();
}

Status WeightRelay::send_to(const std::string& endpoint, std::string bytes) {
  Status error;
  Socket* socket = socket_for(endpoint, &error);
  if (socket == nullptr) return error;
  // ZeroMQ takes the buffer itself and frees it when it has been written out: forwarding a chunk
  // costs no copy here.
  auto* owned = new std::string(std::move(bytes));
  zmq_msg_t message;
  if (zmq_msg_init_data(&message, owned->data(), owned->size(),
                        [](void*, void* hint) { delete static_cast<std::string*>(hint); }, owned) != 0) {
    delete owned;
    return from_zmq(zmq::error_t(), "send to " + endpoint);
  }
  while (zmq_msg_send(&message, socket->handle, 0) < 0) {
    const zmq::error_t e;
    if (e.num() == EINTR) continue;
    zmq_msg_close(&message);  // frees the buffer
    if (e.num() == EAGAIN) {
      return unavailable("send to " + endpoint + ": not queued within " +
                         std::to_string(options_.send_timeout_ms) + " ms (next hop slow or dead)");
    }
    return from_zmq(e, "send to " + endpoint);
  }
  return ok_status();  // ZeroMQ owns the message now
}

std::optional<CompletedWeights> WeightRelay::take_completed() {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<CompletedWeights> out = std::move(completed_);
  completed_.reset();
  return out;
}

void WeightRelay::recycle(std::string blob) {
  std::lock_guard<std::mutex> lock(mu_);
  if (blob.capacity() > spare_.capacity()) spare_ = std::move(blob);
}

WeightRelayStats WeightRelay::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

// ---------------------------------------------------------------------------------------------
// WeightSource

WeightSource::WeightSource(SendFn send, EndpointFn endpoint_of, WeightSourceOptions options)
    : send_(std::move(send)), endpoint_of_(std::move(endpoint_of)), options_(options) {
  GRPO_CHECK_MSG(send_ && endpoint_of_, "WeightSource: send and endpoint_of are required");
  if (options_.chains < 1) options_.chains = 1;
}

Status WeightSource::bad(Status status) {
  ++stats_.bad_messages;
  return status;
}

void WeightSource::send(const std::string& endpoint, std::string_view bytes) {
  Status st = send_(endpoint, bytes);
  if (st.ok() || st.code() == StatusCode::kCancelled) return;
  if (log::worth_logging(++stats_.send_failures)) {
    GRPO_LOG(kWarn) << "weight source: send to " << endpoint << " failed (" << stats_.send_failures
                    << " so far): " << st.message();
  }
}

Status WeightSource::on_message(std::string bytes, int64_t now_ms) {
  drop_silent_members(now_ms);
  auto kind = peek_kind(bytes);
  if (!kind.ok()) return bad(kind.status());
  switch (*kind) {
    case MessageKind::kWeightManifest: return on_manifest(bytes, now_ms);
    case MessageKind::kWeightChunk: return on_chunk(std::move(bytes), now_ms);
    case MessageKind::kHeartbeat: return on_heartbeat(bytes, now_ms);
    case MessageKind::kWeightChunkRequest: return on_chunk_request(bytes);
    default:
      return bad(invalid_argument(std::string("unexpected ") + message_kind_name(*kind) +
                                  " for the weight source"));
  }
}

std::vector<uint64_t> WeightSource::live_members(int64_t now_ms) const {
  std::vector<uint64_t> out;
  for (const auto& [id, m] : members_) {
    if (now_ms - m.last_seen_ms <= options_.member_timeout_ms) out.push_back(id);
  }
  return out;  // std::map: ascending ids
}

void WeightSource::drop_silent_members(int64_t now_ms) {
  for (auto it = members_.begin(); it != members_.end();) {
    if (now_ms - it->second.last_seen_ms > options_.member_timeout_ms) {
      GRPO_LOG(kInfo) << "weight source: generator " << it->first << " silent for "
                      << (now_ms - it->second.last_seen_ms) << " ms, out of the chain";
      ++stats_.members_dropped;
      it = members_.erase(it);
    } else {
      ++it;
    }
  }
}

Status WeightSource::on_manifest(const std::string& bytes, int64_t now_ms) {
  WeightManifest m;
  Status st = decode(bytes, &m);
  if (st.ok()) st = check_manifest(m, options_.max_total_bytes);
  if (!st.ok()) return bad(st);
  const int64_t version = static_cast<int64_t>(m.version);
  if (version <= latest_.version || version <= pending_.version) {
    ++stats_.stale;  // an older publication (a learner resumed from an earlier checkpoint)
    return ok_status();
  }
  m.relay.clear();
  pending_ = Version();
  pending_.version = version;
  pending_.direct_manifest = encode(m);
  const uint64_t num_chunks = m.chunk_checksums.size();
  pending_.chunks.assign(num_chunks, std::string());
  pending_.manifest = std::move(m);
  ++stats_.versions_started;

  // Chains over the live members in id order, cut into near-equal contiguous runs.
  const std::vector<uint64_t> live = live_members(now_ms);
  const size_t n = live.size();
  const size_t k = std::min<size_t>(static_cast<size_t>(options_.chains), n);
  chains_.assign(k, {});
  heads_.clear();
  for (size_t c = 0; c < k; ++c) {
    for (size_t i = c * n / k; i < (c + 1) * n / k; ++i) chains_[c].push_back(live[i]);
    WeightManifest head_manifest = pending_.manifest;
    for (size_t i = 1; i < chains_[c].size(); ++i) head_manifest.relay.push_back(members_[chains_[c][i]].endpoint);
    for (uint64_t id : chains_[c]) members_[id].chained_version = version;
    heads_.push_back(members_[chains_[c].front()].endpoint);
    send(heads_.back(), encode(head_manifest));
  }
  GRPO_LOG(kDebug) << "weight source: v" << version << " (" << pending_.manifest.total_bytes
                   << " bytes) to " << n << " generators along " << k << " chain(s)";
  if (num_chunks == 0) {
    complete_pending(now_ms);
  }
  return ok_status();
}

Status WeightSource::on_chunk(std::string bytes, int64_t now_ms) {
  if (reinterpret_cast<uintptr_t>(bytes.data()) % 8 != 0) bytes = std::string(bytes);  // aligned copy
  WeightChunkView c;
  Status st = decode(bytes, &c);
  if (!st.ok()) return bad(st);
  if (pending_.version < 0 || c.version != static_cast<uint64_t>(pending_.version)) {
    ++stats_.stale;
    return ok_status();
  }
  const WeightManifest& m = pending_.manifest;
  const std::string what = "weight chunk " + std::to_string(c.index) + " of version " + std::to_string(c.version);
  if (c.index >= pending_.chunks.size()) {
    return bad(invalid_argument(what + ": index out of range, the version has " +
                                std::to_string(pending_.chunks.size()) + " chunks"));
  }
  if (!pending_.chunks[c.index].empty()) return ok_status();  // duplicate
  const uint64_t offset = uint64_t{c.index} * m.chunk_bytes;
  const uint64_t expected = std::min<uint64_t>(m.chunk_bytes, m.total_bytes - offset);
  if (c.data.size() != expected) {
    return bad(data_loss(what + ": " + std::to_string(c.data.size()) + " bytes, expected " +
                         std::to_string(expected)));
  }
  const uint64_t sum = checksum64(c.data);
  if (sum != m.chunk_checksums[c.index] || sum != c.checksum) {
    return bad(data_loss(what + ": checksum mismatch"));
  }
  for (const std::string& head : heads_) send(head, bytes);
  ++stats_.chunks_relayed;
  pending_.chunks[c.index] = std::move(bytes);
  if (++pending_.received == pending_.chunks.size()) complete_pending(now_ms);
  return ok_status();
}

void WeightSource::complete_pending(int64_t now_ms) {
  latest_ = std::move(pending_);
  pending_ = Version();
  ++stats_.versions_completed;
  completions_.emplace_back(latest_.version, now_ms);
  // Keep only what settled_version() can still return: the newest entry at least a grace old and
  // everything after it.
  while (completions_.size() > 1 && completions_[1].second <= now_ms - options_.behind_grace_ms) {
    completions_.pop_front();
  }
  GRPO_LOG(kDebug) << "weight source: v" << latest_.version << " complete";
}

int64_t WeightSource::settled_version(int64_t now_ms) const {
  for (auto it = completions_.rbegin(); it != completions_.rend(); ++it) {
    if (it->second <= now_ms - options_.behind_grace_ms) return it->first;
  }
  return -1;
}

Status WeightSource::on_heartbeat(const std::string& bytes, int64_t now_ms) {
  Heartbeat hb;
  Status st = decode(bytes, &hb);
  if (!st.ok()) return bad(st);
  if (hb.role != "generator") return ok_status();  // only generators receive weights
  std::string endpoint = endpoint_of_(hb.worker_id);
  if (endpoint.empty()) {
    return bad(invalid_argument("heartbeat from generator " + std::to_string(hb.worker_id) +
                                ", an id no generator can have"));
  }
  auto [it, joined] = members_.try_emplace(hb.worker_id);
  Member& m = it->second;
  if (joined) {
    ++stats_.members_joined;
    GRPO_LOG(kInfo) << "weight source: generator " << hb.worker_id << " joined (" << endpoint << ")";
  }
  m.endpoint = std::move(endpoint);
  m.last_seen_ms = now_ms;
  m.held = hb.in_flight >= 0 && hb.policy_version <= kMaxVersion ? static_cast<int64_t>(hb.policy_version) : -1;
  catch_up(hb.worker_id, &m, now_ms);
  return ok_status();
}

void WeightSource::catch_up(uint64_t id, Member* m, int64_t now_ms) {
  if (latest_.version < 0 || m->held >= latest_.version) return;
  if (m->direct_version == latest_.version && now_ms - m->direct_at_ms < options_.resend_interval_ms) {
    return;  // sent lately; still on its way
  }
  // A member of the chain has the grace period to receive each version from its upstream hop: it
  // is late only when it lacks one completed more than a grace ago (being one version behind
  // while versions follow each other quickly is normal). Any other member (it joined or restarted
  // after the chain was formed) has no other way to get the latest version.
  const bool chained = m->chained_version >= latest_.version;
  if (chained && m->held >= settled_version(now_ms)) return;
  GRPO_LOG(kInfo) << "weight source: generator " << id << " holds "
                  << (m->held < 0 ? std::string("no weights") : "v" + std::to_string(m->held))
                  << "; sending v" << latest_.version << " directly";
  send(m->endpoint, latest_.direct_manifest);
  for (const std::string& c : latest_.chunks) send(m->endpoint, c);
  m->direct_version = latest_.version;
  m->direct_at_ms = now_ms;
  ++stats_.direct_sends;
}

Status WeightSource::on_chunk_request(const std::string& bytes) {
  WeightChunkRequest r;
  Status st = decode(bytes, &r);
  if (!st.ok()) return bad(st);
  const std::string endpoint = endpoint_of_(r.worker_id);
  if (endpoint.empty()) {
    return bad(invalid_argument("chunk request from generator " + std::to_string(r.worker_id) +
                                ", an id no generator can have"));
  }
  Version* v = nullptr;
  if (latest_.version >= 0 && r.version == static_cast<uint64_t>(latest_.version)) v = &latest_;
  if (pending_.version >= 0 && r.version == static_cast<uint64_t>(pending_.version)) v = &pending_;
  if (v == nullptr) {
    ++stats_.stale;  // superseded: the requester will get a newer version
    return ok_status();
  }
  if (r.indices.empty() || r.indices.size() > v->chunks.size()) {
    return bad(invalid_argument("chunk request of generator " + std::to_string(r.worker_id) + " for v" +
                                std::to_string(r.version) + " lists " + std::to_string(r.indices.size()) +
                                " chunks; the version has " + std::to_string(v->chunks.size())));
  }
  for (uint32_t i : r.indices) {
    if (i >= v->chunks.size()) {
      return bad(invalid_argument("chunk request of generator " + std::to_string(r.worker_id) +
                                  " for chunk " + std::to_string(i) + " of v" + std::to_string(r.version) +
                                  ", which has " + std::to_string(v->chunks.size()) + " chunks"));
    }
  }
  ++stats_.chunk_requests;
  std::set<uint32_t> unique(r.indices.begin(), r.indices.end());
  for (uint32_t i : unique) {
    if (v->chunks[i].empty()) continue;  // not here yet either: it will come down the chain
    send(endpoint, v->chunks[i]);
    ++stats_.chunks_resent;
  }
  return ok_status();
}

}  // namespace grpo::cluster
