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
};

}  // namespace grpo::cluster
