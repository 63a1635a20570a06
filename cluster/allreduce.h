// Data-parallel collectives over ZeroMQ: a ring all-reduce (sum of float buffers), a broadcast and
// a barrier between `world` ranks, one RingAllReduce instance per rank (typically one per learner
// process, or one per thread in tests). No ZeroMQ type appears in this header.
//
// Topology. Rank r binds a PULL socket at endpoints[r] and connects a PUSH socket to
// endpoints[(r + 1) % world]; data only ever flows from a rank to its successor. Endpoints are
// `inproc://name` (ranks in one process sharing one Transport), `ipc:///path` or
// `tcp://host:port`. Each endpoint must be bindable by its rank and connectable by the
// predecessor (for tcp: an IP address of the binding host, not a host name or `*`). Ports must be
// known in advance (every rank needs its successor's endpoint), so wildcards are refused.
//
// Algorithm (all_reduce_sum). The buffer of n floats is cut into `world` contiguous segments
// (segment i = [i*n/world, (i+1)*n/world)); each segment travels as one or more messages of at
// most RingOptions::max_chunk_bytes of payload (an empty segment still sends one empty message, so
// n == 0 and n < world need no special case and every call synchronises the ranks).
//   1. Reduce-scatter, world-1 steps: at step s rank r sends segment (r-s) mod W to its successor
//      and receives segment (r-s-1) mod W from its predecessor, adding it into its own copy
//      (local += incoming). After the last step rank r holds the complete sum of segment
//      (r+1) mod W.
//   2. All-gather, world-1 steps: at step s rank r sends segment (r+1-s) mod W and receives
//      segment (r-s) mod W, which it copies (overwrites) into its buffer.
// Each rank sends and receives 2*(W-1)/W of the buffer per call, whatever the world size.
//
// Bitwise-identical results. The final value of every segment is computed by exactly one rank
// (segment c by rank (c-1) mod W, as a fixed chain of float additions in ring order starting at
// rank c) and then copied byte for byte to every other rank. So all ranks end with bitwise
// identical buffers (NaN payloads included), and the result is deterministic for given inputs
// and world size. It can differ in the last bits from a single-process sum in another order;
// in float it is within a few ulp of the exact sum of the W addends.
//
// Messages. Each message is two ZeroMQ frames: a fixed 64-byte little-endian header (magic,
// version, operation, ring id (a hash of the endpoint list), call sequence number, ring step,
// chunk index, sender rank, world, element/byte count, root, chunk size) and the raw payload
// frame (floats in host byte order; ranks must share endianness). The payload is copied once
// into the ZeroMQ message when sent (the buffer keeps changing while ZeroMQ may still hold the
// message) and read in place from the received message (added or copied straight into the
// caller's buffer). The receiver checks every header field:
//   - not two frames, bad size/magic/version/ring id/world/sender, or an unexpected step, chunk or
//     payload size: dropped and counted in malformed_dropped(), never fatal;
//   - a sequence number below the current call's: a leftover of an earlier call that failed on
//     some rank; dropped and counted in stale_dropped(), never mixed in;
//   - a sequence number above the current call's: the predecessor has given up on this call and
//     moved on. The current call fails at once with Unavailable; the message is kept and used by
//     the next call, so the ranks fall back into step;
//   - same sequence number but a different operation, count, root or chunk size: the ranks made
//     different calls (a programming error); the call fails with FailedPrecondition.
// Every call (successful or not, invalid arguments included) consumes one sequence number, so all
// ranks must make the same sequence of calls with the same arguments.
//
// Flow control / no deadlock. At every step a rank first queues all its sends, then receives.
// Sends never block: the PUSH and PULL high-water marks are 0 (unlimited), and a backstop send
// timeout of timeout_ms turns any unexpected block into DeadlineExceeded. Memory stays bounded
// by the protocol itself: a rank cannot finish an all-reduce or barrier (nor a broadcast it is
// the root of) before its successor has started that call (the successor's contribution reaches
// every rank), i.e. before the successor has finished the previous call, so a rank never runs
// more than a couple of calls ahead and a link holds at most a few calls' worth of one rank's
// sends (an all-reduce sends under 2*n floats per rank). The exception is a dead successor: each
// further call queues its first segment towards it until the receive times out, so stop calling
// after a DeadlineExceeded you cannot recover from.
//
// Failure behaviour. Every receive waits at most RingOptions::timeout_ms; a predecessor that never
// shows up, dies or hangs makes the call return DeadlineExceeded naming the rank waited on and
// the endpoints involved. Nothing hangs and nothing aborts: ZeroMQ errors become Status values.
// Delivery is in order but at most once (a tcp reconnect can lose messages), which also shows as
// DeadlineExceeded. After a failed call the buffer holds
// partial results, and other ranks may have failed as well or (in the last steps) succeeded:
// treat a failure as a failed optimisation step for the whole job (re-synchronise, e.g. with
// broadcast() from rank 0, or restart). A restarted rank starts again at sequence number 1, so
// its messages look stale to ranks that went on: restart the whole ring, not one rank.
//
// Threading. Not thread-safe: one caller thread per instance at a time (calls must not overlap;
// handing the instance to another thread needs the usual happens-before, e.g. a join). Distinct
// instances (ranks) may run concurrently on different threads. The counters may be read from
// any thread.
//
// Security. RingOptions::security turns on CURVE for ipc:// and tcp:// rings; a secured rank
// admits only senders holding an allowed key (see RingOptions::security and cluster/security.h).
//
// Ownership and shutdown. The instance holds a shared_ptr to its Transport, so the ZeroMQ context
// outlives the sockets. Destroying it closes both sockets at once (an ipc:// socket file is
// removed); messages still queued towards the successor get RingOptions::linger_ms to leave
// (ZMQ_LINGER), which bounds how long the Transport's destruction can wait for them. Destroy the
// instances and drop the Transport in any order.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "cluster/security.h"
#include "cluster/transport.h"

namespace grpo::cluster {

struct RingOptions {
  // Longest wait for any one message from the predecessor (and backstop for a blocked send).
  int timeout_ms = 60000;
  // Payload limit of one message; larger segments are split into several messages. Also the
  // receive socket's message-size limit (ZMQ_MAXMSGSIZE, plus room for the header). Must be the
  // same on all ranks.
  size_t max_chunk_bytes = size_t{4} << 20;
  // ZMQ_LINGER of the send socket: how long messages still queued at destruction may take to
  // leave. Keep it > 0, or the successor can miss the last message of the last call.
  int linger_ms = 1000;
  // CURVE authentication and encryption (cluster/security.h), the same on all ranks: the receive
  // socket is a CURVE server admitting allowed_client_keys (empty = own.public_key), the send
  // socket a CURVE client presenting `own` to server_public_key (empty = own.public_key); with
  // cluster_security(cluster keypair) only cluster members can reach a rank. Messages from a
  // refused peer never arrive (they are not counted as dropped). Ignored on inproc:// endpoints,
  // which ZeroMQ never authenticates or encrypts. Disabled by default.
  SecurityOptions security;
};

class RingAllReduce {
 public:
  // Binds endpoints[rank] and connects to endpoints[(rank + 1) % world]; neither waits for the
  // peers (they may come up in any order). world = endpoints.size() >= 1; with world == 1 no
  // socket is created and every collective is a local no-op. InvalidArgument for a bad rank,
  // empty/duplicate/wildcard endpoints or bad options (malformed security keys included);
  // AlreadyExists (naming the endpoint) when endpoints[rank] is already bound.
  static StatusOr<std::unique_ptr<RingAllReduce>> create(std::shared_ptr<Transport> transport,
                                                         int rank,
                                                         std::vector<std::string> endpoints,
                                                         RingOptions options = {});
  ~RingAllReduce();

  RingAllReduce(const RingAllReduce&) = delete;
  RingAllReduce& operator=(const RingAllReduce&) = delete;

  // In place: on success every rank's data[0..n) holds the element-wise sum over all ranks,
  // bitwise identical on every rank. n may be 0 or smaller than world. InvalidArgument for
  // data == nullptr with n > 0.
  Status all_reduce_sum(float* data, size_t n);

  // Copies root's data[0..bytes) into every other rank's buffer, forwarded chunk by chunk along
  // the ring (root -> root+1 -> ... -> root-1; each rank forwards a chunk before receiving the
  // next, so large buffers pipeline). The last rank then sends an empty acknowledgement to the
  // root: the root returns once every rank has the data, the others once they have it (and
  // have passed it on). InvalidArgument for a root outside [0, world).
  Status broadcast(void* data, size_t bytes, int root = 0);

  // Returns once every rank has entered barrier() (a zero-length all-reduce).
  Status barrier();

  int rank() const { return rank_; }
  int world() const { return static_cast<int>(endpoints_.size()); }
  const std::vector<std::string>& endpoints() const { return endpoints_; }

  uint64_t calls() const { return seq_.load(); }  // collective calls made so far
  // Messages dropped: stale_dropped() + malformed_dropped().
  uint64_t dropped() const { return stale_dropped() + malformed_dropped(); }
  uint64_t stale_dropped() const { return stale_dropped_.load(); }
  uint64_t malformed_dropped() const { return malformed_dropped_.load(); }
  uint64_t messages_sent() const { return messages_sent_.load(); }
  uint64_t messages_received() const { return messages_received_.load(); }  // accepted ones

 private:
  struct Impl;
  enum class Op : uint8_t;
  RingAllReduce(std::shared_ptr<Transport> transport, int rank, std::vector<std::string> endpoints,
                RingOptions options, std::unique_ptr<Impl> impl);
  Status ring_reduce(Op op, float* data, size_t n);
  Status ring_broadcast(unsigned char* data, size_t bytes, int root);

  std::shared_ptr<Transport> transport_;
  int rank_;
  std::vector<std::string> endpoints_;
  RingOptions options_;
  std::unique_ptr<Impl> impl_;  // sockets and the kept-back message; null when world == 1
  std::atomic<uint64_t> seq_{0};
  std::atomic<uint64_t> stale_dropped_{0};
  std::atomic<uint64_t> malformed_dropped_{0};
  std::atomic<uint64_t> messages_sent_{0};
  std::atomic<uint64_t> messages_received_{0};
};

}  // namespace grpo::cluster
