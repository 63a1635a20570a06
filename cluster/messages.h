// The messages between roles, as plain value types.
//
// These are what actors hold and route. On the wire each travels as the Cap'n Proto struct of the
// same name in cluster/messages.capnp, inside an Envelope that carries the schema version
// (cluster/codec.h converts both ways). No Cap'n Proto or ZeroMQ type appears here, so any layer
// above cluster/ may include this header cheaply.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace grpo::cluster {

// Bumped whenever a schema change is not backwards compatible.
constexpr uint32_t kSchemaVersion = 1;

struct SamplingParams {
  double temperature = 1.0;
  double top_p = 1.0;
  int32_t top_k = 0;  // 0 = off
  int32_t max_new_tokens = 64;
};

// generator -> coordinator: "give me up to max_groups prompt groups; my weights are version v".
struct LeaseRequest {
  uint64_t worker_id = 0;
  uint64_t policy_version = 0;
  int32_t max_groups = 1;
  bool restarted = false;  // first request since the worker started: its previous grant was lost
  uint64_t epoch = 0;      // the worker process's epoch (Heartbeat::epoch)
  bool retry = false;      // no grant came for the previous request: it or its grant was lost
};

// coordinator -> generator: one prompt group to sample `group_size` completions for.
struct PromptLease {
  uint64_t group_id = 0;
  uint64_t prompt_index = 0;      // position in the prompt stream (the coordinator's cursor)
  std::string prompt;             // task text, e.g. "357+468="
  std::string answer;             // gold answer, travels with the group to the verifier
  int32_t group_size = 1;
  uint64_t min_version = 0;       // the generator must hold at least this weight version
  uint64_t deadline_ms = 0;       // wall-clock (ms since epoch) after which the lease expires
  uint64_t seed = 0;              // sampling seed of this group
  SamplingParams sampling;
};

struct Completion {
  std::vector<int32_t> token_ids;   // response tokens only
  std::vector<float> logprobs;      // behaviour logprob of each token under the sampling policy
  std::vector<uint64_t> versions;   // weight version that produced each token
  std::string text;                 // decoded response
  bool finished = false;            // ended with EOS (false: cut at max_new_tokens)
};

// coordinator -> generator: the answer to a LeaseRequest (possibly fewer groups than asked, or none
// when the staleness bound or the run state holds generation back).
struct LeaseGrant {
  uint64_t worker_id = 0;
  std::vector<PromptLease> leases;
  bool retire = false;  // the worker was scaled away: it takes no new work and exits
  int32_t verifiers = 0;  // verifiers in service: group g goes to verifier g mod this (0: config's)
};

// generator -> verifier.
struct RolloutGroup {
  uint64_t group_id = 0;
  uint64_t generator_id = 0;
  std::string prompt;
  std::string answer;
  std::vector<int32_t> prompt_ids;
  std::vector<Completion> completions;
};

struct RewardBreakdown {
  double total = 0;
  double accuracy = 0;
  double format = 0;
  double language = 0;
  double length = 0;
  bool correct = false;
};

// verifier -> buffer; buffer -> learner (inside TrainBatch).
struct ScoredGroup {
  RolloutGroup rollout;
  std::vector<RewardBreakdown> rewards;  // one per completion, same order
  uint64_t verifier_id = 0;
};

// learner -> buffer: ask for the batch of learner step `step`.
struct TrainBatchRequest {
  uint64_t learner_id = 0;
  uint64_t step = 0;
  uint64_t min_version = 0;  // oldest behaviour version the learner accepts (staleness window)
  int32_t num_groups = 1;
};

struct TrainBatch {
  uint64_t step = 0;
  std::vector<ScoredGroup> groups;
  uint64_t dropped = 0;  // groups with all-equal rewards discarded by dynamic sampling this step
};

struct TensorMeta {
  std::string name;
  std::vector<int64_t> shape;
  std::string dtype;  // "f32", "bf16", ...
  uint64_t offset = 0;  // byte offset in the concatenated weight blob
  uint64_t nbytes = 0;
};

// learner -> broadcaster -> generators: announces version `version`, then its chunks follow.
struct WeightManifest {
  uint64_t version = 0;
  std::vector<TensorMeta> tensors;
  uint64_t total_bytes = 0;
  uint32_t chunk_bytes = 0;
  std::vector<uint64_t> chunk_checksums;  // xxh64 of each chunk
  // Chained broadcast: endpoints of the hops after the recipient, which forwards this manifest
  // (relay minus its head) and each verified chunk to relay[0]. Empty: the recipient is the last.
  std::vector<std::string> relay;
};

struct WeightChunk {
  uint64_t version = 0;
  uint32_t index = 0;
  uint64_t checksum = 0;
  std::string data;
};

// any member -> coordinator, periodically.
struct Heartbeat {
  std::string role;
  uint64_t worker_id = 0;
  uint64_t epoch = 0;
  uint64_t policy_version = 0;
  uint64_t timestamp_ms = 0;
  int64_t in_flight = 0;
  uint64_t step = 0;            // learner: optimisation steps done
  uint64_t groups_retired = 0;  // learner: groups consumed or dropped as stale, cumulative
  uint64_t groups_stored = 0;     // buffer: unique scored groups ever accepted
  uint64_t leases_completed = 0;  // generator: leased groups finished and sent on, cumulative
  // buffer: ids of scored groups it holds (stored now or before) not reported yet, or asked about
  // by the coordinator (StoredQuery); the coordinator counts a lease completed on this report.
  // At most kMaxReportedGroupIds (cluster/codec.h).
  std::vector<uint64_t> stored_ids;
};

// grpoctl -> coordinator over the admin socket (request/reply with identities).
struct AdminRequest {
  std::string command;  // status | members | scale | pause | resume
  std::string role;     // scale: generator | verifier
  int32_t count = 0;    // scale: the new count
};

// One member of the cluster as the coordinator sees it.
struct MemberInfo {
  std::string role;
  uint64_t worker_id = 0;
  uint64_t epoch = 0;
  std::string state;  // up | draining | retired | lost
  uint64_t last_seen_ms_ago = 0;
  uint64_t policy_version = 0;
  int64_t in_flight = 0;
  uint64_t leases_completed = 0;
};

struct AdminReply {
  bool ok = false;
  std::string error;
  std::string run_state;  // running | paused | draining | done
  uint64_t learner_step = 0;
  uint64_t total_steps = 0;
  uint64_t leases_issued = 0;     // lease groups granted, cumulative
  uint64_t leases_completed = 0;  // lease groups whose scored group the buffer confirmed stored
  uint64_t leases_in_flight = 0;  // issued, not yet completed (generating, awaiting storage, re-issue)
  uint64_t groups_stored = 0;     // the buffer's unique scored groups
  uint64_t groups_retired = 0;    // evicted or dropped by the buffer
  int32_t desired_generators = 0;
  int32_t desired_verifiers = 0;
  std::vector<MemberInfo> members;
  uint64_t epoch = 0;             // the coordinator's epoch
  std::string message;            // what a command did, for people
  uint64_t leases_awaiting_storage = 0;  // finished by their generator, the buffer has not confirmed
};

// generator -> broadcaster: chunks of `version` that failed their checksum; send them again.
struct WeightChunkRequest {
  uint64_t version = 0;
  uint64_t worker_id = 0;
  std::vector<uint32_t> indices;
};

// coordinator -> buffer: "which of these group ids do you hold?" (leases whose storage it has not
// heard of in a while). The buffer answers with a Heartbeat whose stored_ids are the ones it holds.
// At most kMaxReportedGroupIds ids (cluster/codec.h).
struct StoredQuery {
  std::vector<uint64_t> ids;
};

// ---- NCCL weight broadcast (broadcaster.transport = "nccl"): forming a group of GPUs through the
// coordinator (cluster/nccl_group.h). decode() enforces these bounds.
constexpr uint32_t kNcclUniqueIdBytes = 128;                // NCCL_UNIQUE_ID_BYTES
constexpr uint32_t kMaxNcclGroupMembers = 4097;             // learner 0 and up to 4096 generators
constexpr uint32_t kMaxNcclMemberNameBytes = 64;            // "generator.17"
constexpr uint32_t kMaxNcclErrorBytes = 1024;
constexpr uint64_t kMaxNcclPieceBytes = uint64_t{1} << 32;  // largest device staging buffer

// root -> coordinator: registers the group of `epoch` (unique_id, members and piece_bytes set);
// member -> coordinator: asks for the group current at `epoch` (unique_id and members empty).
struct NcclGroupRequest {
  uint64_t epoch = 0;                // the weight version from which the group is used
  std::string member;                // the requester: "learner.0", "generator.3"
  std::string unique_id;             // root: the NCCL unique id (kNcclUniqueIdBytes, binary)
  std::vector<std::string> members;  // root: every member in rank order, itself first
  uint64_t piece_bytes = 0;          // root: bytes per broadcast = each member's staging buffer
};

// coordinator -> requester: the group and the requester's rank in it, or rank -1 and why not.
struct NcclGroup {
  uint64_t epoch = 0;                // the group's own epoch (<= the one asked for)
  std::string unique_id;             // kNcclUniqueIdBytes; empty when rank is -1
  std::vector<std::string> members;  // rank order
  uint64_t piece_bytes = 0;
  int32_t rank = -1;
  std::string error;                 // when rank is -1
};

}  // namespace grpo::cluster
