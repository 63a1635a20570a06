// `grpo bench broadcast` (cluster/bench_broadcast.h). zmq::error_t is converted to Status here.
#include "cluster/bench_broadcast.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <zmq.hpp>

#include "cluster/codec.h"
#include "cluster/transport.h"
#include "cluster/weight_relay.h"
#include "cluster/zmq_util.h"

namespace grpo::cluster {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kTransferTimeout = std::chrono::seconds(300);

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// User + system CPU seconds of the whole process so far.
double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return sec(u.ru_utime) + sec(u.ru_stime);
}

// Seconds and CPU seconds of one timed transfer.
struct Timing {
  double seconds = 0;
  double cpu_seconds = 0;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Incompressible pseudo-random bytes (a weight blob's entropy is close to this).
std::string random_blob(uint64_t size, uint64_t seed) {
  std::string blob(size, '\0');
  uint64_t x = seed;
  for (uint64_t i = 0; i < size; i += 8) {
    x += 0x9E3779B97F4A7C15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    std::memcpy(&blob[i], &z, std::min<uint64_t>(8, size - i));
  }
  return blob;
}

// One version as the learner sends it: the encoded manifest, then the encoded chunks.
struct EncodedVersion {
  std::string manifest;
  std::vector<std::string> chunks;
};

EncodedVersion encode_version(uint64_t version, const std::string& blob, uint32_t chunk_bytes) {
  WeightManifest manifest;
  std::vector<WeightChunk> chunks = make_chunks(version, blob, chunk_bytes, &manifest);
  manifest.tensors.push_back({"weights", {static_cast<int64_t>(blob.size())}, "u8", 0, blob.size()});
  EncodedVersion out;
  out.manifest = encode(manifest);
  for (WeightChunk& c : chunks) {
    out.chunks.push_back(encode(c));
    c.data = std::string();
  }
  return out;
}

// The same encoded chunks from one PUSH socket to one PULL socket, each in its own context (as two
// processes would be): the floor any relay is measured against.
StatusOr<Timing> raw_transfer(const std::vector<std::string>& messages) {
  try {
    zmq::context_t send_context(1);
    zmq::context_t receive_context(1);
    zmq::socket_t pull(receive_context, zmq::socket_type::pull);
    pull.set(zmq::sockopt::linger, 0);
    pull.set(zmq::sockopt::rcvtimeo, 30000);
    pull.bind("tcp://127.0.0.1:*");
    const std::string endpoint = pull.get(zmq::sockopt::last_endpoint);
    zmq::socket_t push(send_context, zmq::socket_type::push);
    push.set(zmq::sockopt::linger, 0);
    push.connect(endpoint);
    // One message first, so the connection exists before the clock starts (as in the relay runs).
    push.send(zmq::str_buffer("warm-up"), zmq::send_flags::none);
    zmq::message_t first;
    if (!pull.recv(first)) return internal_error("raw transfer: the warm-up message did not arrive");

    Clock::time_point end;
    bool complete = false;
    std::thread receiver([&pull, &messages, &end, &complete] {
      uint64_t bytes = 0;
      for (size_t i = 0; i < messages.size(); ++i) {
        zmq::message_t m;
        if (!pull.recv(m)) return;
        bytes += m.size();
      }
      end = Clock::now();
      complete = bytes > 0 || messages.empty();
    });
    const double cpu_start = process_cpu_seconds();
    const Clock::time_point start = Clock::now();
    for (const std::string& bytes : messages) {
      zmq::message_t m(bytes.data(), bytes.size());
      push.send(m, zmq::send_flags::none);
    }
    receiver.join();
    if (!complete) return internal_error("raw transfer: stalled (nothing received for 30 s)");
    return Timing{seconds_between(start, end), process_cpu_seconds() - cpu_start};
  } catch (const zmq::error_t& e) {
    return internal::from_zmq(e, "raw transfer");
  }
}

// A source and `n` receivers, each receiver with its own transport, mailbox thread and relay.
class Fleet {
 public:
  struct Receiver {
    std::shared_ptr<Transport> transport;
    std::unique_ptr<WeightRelay> relay;
    std::unique_ptr<Mailbox> mailbox;  // declared last: closed first
    int64_t done_version = -1;         // guarded by Fleet::mu_
    Clock::time_point done_at;         // guarded by Fleet::mu_
  };

  static StatusOr<std::unique_ptr<Fleet>> create(int n, int chains) {
    std::unique_ptr<Fleet> f(new Fleet());
    f->source_transport_ = Transport::create();
    for (int i = 0; i < n; ++i) {
      auto r = std::make_unique<Receiver>();
      Receiver* rp = r.get();
      r->transport = Transport::create();
      WeightRelayOptions o;
      o.worker_id = static_cast<uint64_t>(i);
      o.send_timeout_ms = 30000;  // a starved hop on a busy machine is slow, not dead
      Fleet* fp = f.get();
      GRPO_ASSIGN_OR_RETURN(r->relay, WeightRelay::create(r->transport, o, [fp, rp](uint64_t version) {
                              std::lock_guard<std::mutex> lock(fp->mu_);
                              rp->done_at = Clock::now();
                              rp->done_version = static_cast<int64_t>(version);
                              fp->cv_.notify_all();
                            }));
      WeightRelay* relay = r->relay.get();
      GRPO_ASSIGN_OR_RETURN(r->mailbox, Mailbox::bind(r->transport, "tcp://127.0.0.1:*",
                                                      [relay](std::string bytes) { relay->handle(bytes); }));
      f->receivers_.push_back(std::move(r));
    }
    WeightSourceOptions so;
    so.chains = chains;
    so.member_timeout_ms = 3600 * 1000;  // the bench heartbeats only between transfers
    Fleet* fp = f.get();
    f->source_ = std::make_unique<WeightSource>(
        [fp](const std::string& endpoint, std::string_view bytes) { return fp->send(endpoint, bytes); },
        [fp](uint64_t id) {
          return id < fp->receivers_.size() ? fp->receivers_[id]->mailbox->endpoint() : std::string();
        },
        so);
    return f;
  }

  ~Fleet() {
    for (auto& r : receivers_) r->mailbox->close();
  }

  // Sends `v` through the source and returns the seconds until the last receiver completed it.
  StatusOr<Timing> transfer(EncodedVersion v, uint64_t version) {
    heartbeat();
    const double cpu_start = process_cpu_seconds();
    const Clock::time_point start = Clock::now();
    GRPO_RETURN_IF_ERROR(source_->on_message(std::move(v.manifest), now_ms()));
    for (std::string& c : v.chunks) GRPO_RETURN_IF_ERROR(source_->on_message(std::move(c), now_ms()));
    std::unique_lock<std::mutex> lock(mu_);
    const bool done = cv_.wait_for(lock, kTransferTimeout, [&] {
      for (const auto& r : receivers_) {
        if (r->done_version != static_cast<int64_t>(version)) return false;
      }
      return true;
    });
    if (!done) {
      return internal_error("broadcast of v" + std::to_string(version) + " to " +
                            std::to_string(receivers_.size()) + " receivers stalled");
    }
    const double cpu = process_cpu_seconds() - cpu_start;
    Clock::time_point end = start;
    for (const auto& r : receivers_) end = std::max(end, r->done_at);
    return Timing{seconds_between(start, end), cpu};
  }

  // Every receiver must hold exactly `blob`.
  Status check(const std::string& blob, uint64_t version) {
    for (size_t i = 0; i < receivers_.size(); ++i) {
      auto c = receivers_[i]->relay->take_completed();
      if (!c || c->manifest.version != version || c->blob != blob) {
        return internal_error("receiver " + std::to_string(i) + " does not hold the bytes of v" +
                              std::to_string(version));
      }
      // As a generator does once the weights are loaded.
      receivers_[i]->relay->recycle(std::move(c->blob));
    }
    return ok_status();
  }

  const WeightSource& source() const { return *source_; }

 private:
  Fleet() = default;

  int64_t now_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - epoch_).count();
  }

  // What the generators' heartbeat timers do: tell the source who is there and what it holds.
  void heartbeat() {
    for (size_t i = 0; i < receivers_.size(); ++i) {
      Heartbeat hb;
      hb.role = "generator";
      hb.worker_id = i;
      const int64_t held = receivers_[i]->relay->held_version();
      hb.policy_version = held < 0 ? 0 : static_cast<uint64_t>(held);
      hb.in_flight = held < 0 ? -1 : 0;
      (void)source_->on_message(encode(hb), now_ms());
    }
  }

  Status send(const std::string& endpoint, std::string_view bytes) {
    auto it = outboxes_.find(endpoint);
    if (it == outboxes_.end()) {
      OutboxOptions o;
      o.send_timeout_ms = 30000;
      GRPO_ASSIGN_OR_RETURN(auto outbox, Outbox::connect(source_transport_, endpoint, o));
      it = outboxes_.emplace(endpoint, std::move(outbox)).first;
    }
    return it->second->send(bytes);
  }

  const Clock::time_point epoch_ = Clock::now();
  std::shared_ptr<Transport> source_transport_;
  std::map<std::string, std::unique_ptr<Outbox>> outboxes_;
  std::unique_ptr<WeightSource> source_;
  std::vector<std::unique_ptr<Receiver>> receivers_;
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace

StatusOr<BroadcastBenchResult> bench_broadcast(const BroadcastBenchOptions& o) {
  if (o.bytes == 0 || o.bytes > (uint64_t{8} << 30)) {
    return invalid_argument("--bytes: " + std::to_string(o.bytes) + " is outside [1, 8 GiB]");
  }
  if (o.chunk_bytes < 4096 || o.chunk_bytes > kMaxChunkBytes) {
    return invalid_argument("--chunk-bytes: " + std::to_string(o.chunk_bytes) + " is outside [4096, " +
                            std::to_string(kMaxChunkBytes) + "]");
  }
  if (o.receivers.empty()) return invalid_argument("--receivers: no receiver counts");
  for (int n : o.receivers) {
    if (n < 1 || n > 64) return invalid_argument("--receivers: " + std::to_string(n) + " is outside [1, 64]");
  }
  if (o.repeats < 1 || o.repeats > 100) return invalid_argument("--repeats: must be in [1, 100]");
  if (o.chains < 1) return invalid_argument("--chains: must be at least 1");

  const std::string blob = random_blob(o.bytes, 0x5eed);
  BroadcastBenchResult result;
  {
    const EncodedVersion v = encode_version(1, blob, o.chunk_bytes);
    std::vector<double> cpu;
    for (int r = 0; r < o.repeats; ++r) {
      GRPO_ASSIGN_OR_RETURN(Timing t, raw_transfer(v.chunks));
      result.raw_samples.push_back(t.seconds);
      cpu.push_back(t.cpu_seconds);
    }
    result.raw_seconds = median(result.raw_samples);
    result.raw_cpu_seconds = median(cpu);
  }
  for (int n : o.receivers) {
    GRPO_ASSIGN_OR_RETURN(auto fleet, Fleet::create(n, o.chains));
    // One untimed version first, as in a run where every version but the first finds the
    // connections up and a blob buffer to assemble into (a generator recycles the one it loaded).
    GRPO_RETURN_IF_ERROR(fleet->transfer(encode_version(1, blob, o.chunk_bytes), 1).status());
    GRPO_RETURN_IF_ERROR(fleet->check(blob, 1));
    BroadcastBenchRow row;
    row.receivers = n;
    std::vector<double> cpu;
    for (int r = 0; r < o.repeats; ++r) {
      const uint64_t version = static_cast<uint64_t>(r) + 2;
      GRPO_ASSIGN_OR_RETURN(Timing t, fleet->transfer(encode_version(version, blob, o.chunk_bytes), version));
      GRPO_RETURN_IF_ERROR(fleet->check(blob, version));
      row.samples.push_back(t.seconds);
      cpu.push_back(t.cpu_seconds);
    }
    row.seconds = median(row.samples);
    row.cpu_seconds = median(cpu);
    result.rows.push_back(std::move(row));
  }
  return result;
}

}  // namespace grpo::cluster
