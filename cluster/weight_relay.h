// Chained (pipelined) weight broadcast: the broadcaster's side (WeightSource) and each generator's
// side (WeightRelay).
//
// A weight version travels as one WeightManifest followed by its WeightChunks (cluster/codec.h:
// xxh64 per chunk). The broadcaster orders the live generators into chains and sends a version
// only to the head of each chain, with the manifest's `relay` listing the endpoints of the rest of
// that chain. Each receiver checks every message as it arrives, forwards the manifest (re-encoded
// with relay minus its head) and every verified chunk (the received bytes, not re-encoded) to the
// next hop, and assembles the blob. So hop k+1 receives chunk i while hop k receives chunk i+1, and
// the last of n receivers holds the version about n chunk-times after the first, not n transfers.
//
// Repair:
//   - a chunk that fails its checksum is not forwarded; the receiver asks the broadcaster for it
//     again (WeightChunkRequest) and forwards the good copy downstream when it arrives;
//   - a receiver behind a dead hop never completes. Generators heartbeat the broadcaster about
//     every second with the version they hold (in_flight -1: none); one that lacks a version the
//     broadcaster completed more than `behind_grace_ms` ago gets the latest version directly, with
//     an empty relay list. A member the latest chain did not include (it joined later or
//     restarted) gets it at once.
//   - the heartbeats are also the membership: each version's chains are built from the generators
//     heard from within `member_timeout_ms`, so a generator that stops heartbeating drops out of
//     the next chain and one that starts (grpoctl scale) joins it.
//
// Neither class knows actors or endpoint naming: WeightSource asks its owner for a worker's
// endpoint and sends through its owner's function; WeightRelay owns its outgoing sockets, so it
// can forward a received buffer without copying it.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "cluster/codec.h"
#include "cluster/messages.h"
#include "cluster/security.h"
#include "cluster/transport.h"

namespace grpo::cluster {

// Longest relay list a manifest may carry (a chain longer than this is a broken manifest).
constexpr size_t kMaxRelayHops = 4096;

// Checks the relay list of a received manifest: at most kMaxRelayHops entries, each a well-formed
// inproc://, ipc:// or tcp:// endpoint of at most 256 bytes, none equal to `self_endpoint` (a loop).
Status check_relay_list(const std::vector<std::string>& relay, const std::string& self_endpoint);

// ---------------------------------------------------------------------------------------------
// Receiver side.

struct WeightRelayOptions {
  uint64_t worker_id = 0;       // this receiver's id, carried by its WeightChunkRequests
  std::string self_endpoint;    // this receiver's own mailbox endpoint ("" = unchecked)
  std::string repair_endpoint;  // the broadcaster, which answers WeightChunkRequests ("" = none)
  // Outgoing sockets. A send to the next hop that cannot be queued within send_timeout_ms (the
  // hop is dead or stalled) stops forwarding to it for the rest of that version: the hops after
  // it are then repaired by the broadcaster's direct send.
  int send_hwm = 64;
  int send_timeout_ms = 2000;
  int linger_ms = 200;
  SecurityOptions security;  // CURVE client options of the outgoing sockets (ignored on inproc)
  uint64_t max_total_bytes = WeightAssembler::kDefaultMaxTotalBytes;
};

struct WeightRelayStats {
  uint64_t manifests = 0;          // manifests that started a version
  uint64_t chunks = 0;             // chunks verified and stored
  uint64_t forwarded = 0;          // messages queued to the next hop
  uint64_t forward_failures = 0;   // messages the next hop did not take
  uint64_t corrupt = 0;            // chunks that failed their size or checksum (not forwarded)
  uint64_t repairs_requested = 0;  // WeightChunkRequests sent
  uint64_t malformed = 0;          // undecodable or inconsistent manifests and chunks
  uint64_t stale = 0;              // messages of a version older than the one held or assembled
  uint64_t completed = 0;          // versions assembled
};

// A complete, verified weight version.
struct CompletedWeights {
  WeightManifest manifest;  // relay cleared
  std::string blob;
};

// One receiver of the chain: checks, forwards and assembles.
//
// Threads: handle() is called by one thread at a time, normally the receive thread of the
// owner's Mailbox, which then forwards while the owner is busy (a generator mid-batch does not
// hold the chain up); the outgoing sockets belong to that thread. take_completed(), held_version()
// and stats() may be called from any thread. Destroy the relay after its caller thread stopped
// calling handle() (close the mailbox first).
class WeightRelay {
 public:
  // Called on the handle() thread each time a version completes; the owner then collects it with
  // take_completed(), on any thread.
  using CompleteFn = std::function<void(uint64_t version)>;

  // InvalidArgument for a missing transport or malformed security options.
  static StatusOr<std::unique_ptr<WeightRelay>> create(std::shared_ptr<Transport> transport,
                                                       WeightRelayOptions options,
                                                       CompleteFn on_complete = nullptr);
  ~WeightRelay();

  WeightRelay(const WeightRelay&) = delete;
  WeightRelay& operator=(const WeightRelay&) = delete;

  // Takes `bytes` when it is a WeightManifest or WeightChunk (true; bytes is moved from) and
  // handles it: a newer manifest restarts assembly and is forwarded; a chunk of the version in
  // progress is verified, stored and forwarded unchanged; a corrupt chunk is counted and
  // re-requested; malformed and stale messages are dropped and counted, never fatal. Any other
  // message (or bytes that are no message at all) is left alone (false) for the owner.
  bool handle(std::string& bytes);

  // The newest completed version not collected yet (an older uncollected one is superseded).
  std::optional<CompletedWeights> take_completed();
  // Hands a collected blob back once the owner is done with it (any thread): the next version is
  // assembled into it instead of into a fresh allocation (WeightAssembler::recycle).
  void recycle(std::string blob);
  // The newest version completed so far, -1 before the first.
  int64_t held_version() const { return held_version_.load(); }
  // The version being assembled, -1 when none.
  int64_t assembling_version() const { return assembling_version_.load(); }
  WeightRelayStats stats() const;

 private:
  struct Socket;
  WeightRelay(std::shared_ptr<Transport> transport, WeightRelayOptions options, CompleteFn on_complete);
  void on_manifest(std::string bytes);
  void on_chunk(std::string bytes);
  // Queues `bytes` (taking the buffer, no copy) to the next hop of the version in progress.
  void forward(std::string bytes);
  Status send_to(const std::string& endpoint, std::string bytes);
  Socket* socket_for(const std::string& endpoint, Status* error);
  void request_repair(uint64_t version, uint32_t index);
  void finish();
  void report(const Status& status, uint64_t* counter);

  std::shared_ptr<Transport> transport_;
  WeightRelayOptions options_;
  CompleteFn on_complete_;
  // Used only by the handle() thread.
  WeightAssembler assembler_;
  std::string next_hop_;          // relay[0] of the version in progress; "" = last hop
  bool next_hop_failed_ = false;  // a send to next_hop_ timed out: stop forwarding this version
  std::map<std::string, std::unique_ptr<Socket>> sockets_;
  uint64_t logged_ = 0;
  // Shared with other threads.
  std::atomic<int64_t> held_version_{-1};
  std::atomic<int64_t> assembling_version_{-1};
  mutable std::mutex mu_;  // guards completed_, spare_ and stats_
  std::optional<CompletedWeights> completed_;
  std::string spare_;
  WeightRelayStats stats_;
};

// ---------------------------------------------------------------------------------------------
// Broadcaster side.

struct WeightSourceOptions {
  int chains = 1;                     // the live generators are split into this many chains
  int64_t behind_grace_ms = 2000;     // how long a chain member may lack a version before a direct send
  int64_t member_timeout_ms = 6000;   // no heartbeat for this long: out of the next chain
  int64_t resend_interval_ms = 5000;  // at most one direct send of a version per member per this
  uint64_t max_total_bytes = WeightAssembler::kDefaultMaxTotalBytes;
};

struct WeightSourceStats {
  uint64_t versions_started = 0;    // manifests from the learner that began a version
  uint64_t versions_completed = 0;  // versions whose every chunk arrived and checked
  uint64_t chunks_relayed = 0;      // chunks from the learner passed to the chain heads
  uint64_t send_failures = 0;       // sends that could not be queued
  uint64_t direct_sends = 0;        // whole versions sent straight to one generator
  uint64_t chunk_requests = 0;      // WeightChunkRequests answered
  uint64_t chunks_resent = 0;       // chunks sent in answer to them
  uint64_t stale = 0;               // requests and chunks of a version no longer kept
  uint64_t bad_messages = 0;        // malformed or inconsistent messages, dropped
  uint64_t members_joined = 0;
  uint64_t members_dropped = 0;     // heartbeats stopped for member_timeout_ms
};

// The broadcaster's state: the version in progress and the latest complete one (its encoded
// messages, for late joiners and repairs), the members learned from heartbeats, and the chains.
// Owned and called by one thread (the broadcaster actor); not synchronized.
class WeightSource {
 public:
  // Sends bytes to an endpoint; errors are counted, not retried.
  using SendFn = std::function<Status(const std::string& endpoint, std::string_view bytes)>;
  // The mailbox endpoint of generator `worker_id`, or "" when no such generator can exist.
  using EndpointFn = std::function<std::string(uint64_t worker_id)>;

  WeightSource(SendFn send, EndpointFn endpoint_of, WeightSourceOptions options = {});

  // One message from the learner (WeightManifest, WeightChunk) or a generator (Heartbeat,
  // WeightChunkRequest); `now_ms` is a monotonic clock. OK when it was used or deliberately
  // ignored (an older version, another role's heartbeat, a request for a version no longer
  // kept); otherwise why it was dropped, also counted in stats().bad_messages.
  Status on_message(std::string bytes, int64_t now_ms);

  // Newest complete version, -1 before the first.
  int64_t latest_version() const { return latest_.version; }
  // Generators heard from within member_timeout_ms of now_ms, by id.
  std::vector<uint64_t> live_members(int64_t now_ms) const;
  // The chains (worker ids, head first) the newest version was sent along.
  const std::vector<std::vector<uint64_t>>& chains() const { return chains_; }
  const WeightSourceStats& stats() const { return stats_; }

 private:
  // The encoded messages of one version.
  struct Version {
    int64_t version = -1;
    WeightManifest manifest;           // as the learner sent it, relay cleared
    std::string direct_manifest;       // encoded with an empty relay list
    std::vector<std::string> chunks;   // encoded, by index; "" = not received yet
    uint32_t received = 0;
  };
  struct Member {
    std::string endpoint;
    int64_t held = -1;            // version it reported, -1 none
    int64_t last_seen_ms = 0;
    int64_t chained_version = -1;  // newest version whose chain included it
    int64_t direct_version = -1;   // newest version sent to it directly, and when
    int64_t direct_at_ms = 0;
  };

  Status on_manifest(const std::string& bytes, int64_t now_ms);
  Status on_chunk(std::string bytes, int64_t now_ms);
  Status on_heartbeat(const std::string& bytes, int64_t now_ms);
  Status on_chunk_request(const std::string& bytes);
  void complete_pending(int64_t now_ms);
  // The newest version that completed at least behind_grace_ms before now_ms, -1 if none.
  int64_t settled_version(int64_t now_ms) const;
  void drop_silent_members(int64_t now_ms);
  void catch_up(uint64_t id, Member* m, int64_t now_ms);
  void send(const std::string& endpoint, std::string_view bytes);
  Status bad(Status status);

  SendFn send_;
  EndpointFn endpoint_of_;
  WeightSourceOptions options_;
  std::map<uint64_t, Member> members_;
  std::vector<std::vector<uint64_t>> chains_;
  std::vector<std::string> heads_;  // endpoint of each chain's head, for the version in progress
  Version pending_;                 // being received from the learner
  Version latest_;                  // newest complete
  std::deque<std::pair<int64_t, int64_t>> completions_;  // (version, completed at ms), oldest first
  WeightSourceStats stats_;
};

}  // namespace grpo::cluster
