// RolloutShard: one RocksDB store of the rollout buffer (DESIGN.md section 3). The buffer service
// runs S of them behind RolloutStore (storage/rollout_store.h), which routes each group to shard
// group_id % S and makes a learner batch that spans shards exactly-once; a shard alone knows nothing
// of the other shards. Its on-disk format is the one the single-store buffer wrote before sharding,
// so such a directory opens as a shard unchanged.
//
// A group is an opaque payload (the caller stores a Cap'n Proto encoded ScoredGroup) identified by
// the group id assigned at lease time and tagged with its behaviour policy version. The shard knows
// nothing else about it. Each group moves through this state machine:
//
//            put (first time only)         consume(step, ids)
//   (absent) ---------------------> PENDING ------------------> CONSUMED(step)
//                                     |   ^                       |
//            evict_stale(min_version) |   +-----------------------+ rewind(s) with s < step
//                                     v
//                                  EVICTED     (payload deleted, id kept as a tombstone)
//
// prune_consumed(s) deletes the payloads of groups consumed at steps <= s; their ids stay as
// tombstones. A tombstone id is never stored again: put of a known id is a no-op returning false,
// so redelivered groups (retries, duplicated messages) are harmless: exactly-once admission. Since
// no record is ever deleted, pending + consumed + evicted is the number of groups ever accepted.
//
// Consumption: consume() marks the groups consumed and advances this shard's cursor in one RocksDB
// write batch; rewind(s) makes the groups of steps after s pending again.
//
// Durability: every mutation is one write batch through the write-ahead log. Whatever returned OK
// survives a crash of the process (kill -9); with RolloutShardOptions::sync_writes it also survives
// a crash of the machine (each batch is fsynced). Counters and the cursor are persisted in the same
// batches, so stats() is exact after reopening.
//
// Ownership and threads: a RolloutShard owns its RocksDB instance and the directory's lock (one
// process at a time per directory). Every method may be called from any thread. Mutations are
// serialised by an internal mutex (consume is atomic with respect to put); reads (peek, lookup, read)
// run against a consistent RocksDB snapshot without blocking writers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace rocksdb {
class DB;
class WriteBatch;
}  // namespace rocksdb

namespace grpo::storage {

// One pending group as returned by peek().
struct StoredGroup {
  uint64_t group_id = 0;
  uint64_t version = 0;  // behaviour policy version
  std::string payload;
};

enum class GroupState : uint8_t { kPending = 1, kConsumed = 2, kEvicted = 3 };
const char* group_state_name(GroupState state);

// What the store knows about one group id (lookup()).
struct GroupInfo {
  uint64_t group_id = 0;
  uint64_t version = 0;
  GroupState state = GroupState::kPending;
  uint64_t consume_step = 0;   // the step that consumed it when kConsumed, else 0
  uint64_t payload_bytes = 0;  // size as put (the payload may since have been deleted)
  bool has_payload = false;    // false once evicted or pruned
};

struct RolloutShardStats {
  uint64_t pending = 0;
  uint64_t consumed = 0;       // consumed groups, pruned or not
  uint64_t evicted = 0;
  uint64_t pending_bytes = 0;  // total payload bytes of pending groups
  uint64_t cursor = 0;         // last step that consumed (0 when none)
  uint64_t pruned_through = 0; // payloads consumed at steps <= this are deleted
};

struct RolloutShardOptions {
  bool sync_writes = false;  // fsync the write-ahead log on every write batch
};

class RolloutShard {
 public:
  // Opens (creating if needed) the store in directory `dir`. Unavailable when another process holds
  // it; DataLoss when its metadata is corrupt; FailedPrecondition for an unknown on-disk format.
  static StatusOr<std::unique_ptr<RolloutShard>> open(const std::string& dir,
                                                      RolloutShardOptions opts = {});
  ~RolloutShard();
  RolloutShard(const RolloutShard&) = delete;
  RolloutShard& operator=(const RolloutShard&) = delete;

  // Stores a new pending group. Idempotent on group_id: returns true if stored, false if that id was
  // already known (pending, consumed or evicted); a duplicate put never changes anything.
  StatusOr<bool> put(uint64_t group_id, uint64_t version, std::string_view payload);

  // Up to n pending groups with version >= min_version, in ascending group_id order. Does not consume.
  StatusOr<std::vector<StoredGroup>> peek(uint64_t min_version, size_t n) const;

  // In one write batch: marks `group_ids` consumed by learner step `step` and advances the cursor to
  // `step`. FailedPrecondition, changing nothing, if any id is not pending or step <= cursor();
  // InvalidArgument if the list is empty or repeats an id.
  Status consume(uint64_t step, const std::vector<uint64_t>& group_ids);

  // For a learner restored from a checkpoint taken at `step`: in one write batch, every group consumed
  // by a step > `step` becomes pending again and the cursor becomes `step`. A no-op when
  // step == cursor(). FailedPrecondition if step > cursor(), or if step < stats().pruned_through
  // (the payloads to restore were deleted).
  Status rewind(uint64_t step);

  // The last step that consumed (0 when none).
  uint64_t cursor() const;

  // The largest group id ever put (pending, consumed or evicted), 0 when none.
  StatusOr<uint64_t> max_group_id() const;

  // Retention: pending groups with version < min_version become evicted (payload deleted, id kept
  // as a tombstone so a late duplicate put stays a no-op). Returns how many were evicted.
  StatusOr<size_t> evict_stale(uint64_t min_version);

  // Retention: the listed groups that are pending become evicted in one write batch (dynamic
  // sampling drops groups that carry no learning signal); ids not pending are left alone. Returns
  // how many were evicted.
  StatusOr<size_t> discard(const std::vector<uint64_t>& group_ids);

  // Retention: deletes the payloads of groups consumed at steps <= min(up_to_step, cursor()); their
  // id tombstones stay. Afterwards rewind() cannot go below that step.
  Status prune_consumed(uint64_t up_to_step);

  // What the store knows about one id; NotFound if it was never put.
  StatusOr<GroupInfo> lookup(uint64_t group_id) const;

  // Version and payload of one group that still has its payload (pending, or consumed and not yet
  // pruned): how a consumed batch is served again. NotFound if the id was never put;
  // FailedPrecondition if its payload was deleted (evicted or pruned).
  StatusOr<StoredGroup> read(uint64_t group_id) const;

  // The (step, group id) pairs of the groups consumed at steps > `after_step` whose payloads are
  // kept, by step, then id. The batches this shard served after that step.
  StatusOr<std::vector<std::pair<uint64_t, uint64_t>>> consumed_after(uint64_t after_step) const;

  RolloutShardStats stats() const;

 private:
  // Persisted metadata: one record, rewritten in every mutating batch.
  struct Meta {
    uint64_t cursor = 0;
    uint64_t pruned_through = 0;
    uint64_t pending = 0;
    uint64_t consumed = 0;
    uint64_t evicted = 0;
    uint64_t pending_bytes = 0;
  };
  static std::string encode_meta(const Meta& meta);
  static StatusOr<Meta> decode_meta(std::string_view value);

  RolloutShard(std::unique_ptr<rocksdb::DB> db, RolloutShardOptions opts, Meta meta);

  // Adds the meta record `next` to `batch` and writes it; on success `next` becomes meta_.
  // Caller holds mu_.
  Status commit(rocksdb::WriteBatch* batch, const Meta& next, std::string_view what);

  std::unique_ptr<rocksdb::DB> db_;
  const RolloutShardOptions opts_;
  mutable std::mutex mu_;  // serialises mutations and guards meta_
  Meta meta_;
};

}  // namespace grpo::storage
