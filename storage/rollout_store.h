// RolloutStore: the buffer service's durable rollout buffer (DESIGN.md section 3): S RolloutShards
// (storage/rollout_shard.h) plus a step log that makes a learner batch spanning shards exactly-once.
//
// Layout of the directory DIR (run_dir/buffer):
//   DIR/shard-K/   RolloutShard K, K in [0, S): the groups whose id % S == K
//   DIR/steps/     the step log: the shard count S, the cursor, and per learner step an intent
//                  record "step s = these group ids" (the batch, ascending id; shard = id % S)
// S is fixed when DIR is created: opening with another count is FailedPrecondition, because a
// redelivered group routed by a different S would land in a shard that never saw it and be stored
// twice. A directory written before sharding (one RocksDB store at DIR itself) is adopted on first
// open as shard 0 of a one-shard layout, by renames only (DIR -> DIR.single-store -> DIR/shard-0; an
// interrupted move is finished by the next open), and its step log is rebuilt from the shard's
// consumed index. Such a directory opens with shards = 1 only.
//
// Exactly once, across shards and crashes. The batch of learner step s is committed in three writes:
//   1. the intent "step s = ids" goes to the step log (log_intent);
//   2. each shard holding some of the ids consumes them at step s (one write batch per shard);
//   3. the step log's cursor becomes s (2 and 3 are commit_intents).
// The step log's cursor is the truth. On open, a shard whose own cursor is past it (a crash during 2
// or before 3) is rewound to it, so the groups of an uncommitted step are pending again, and the
// step's intent stays in the log, *waiting*. A waiting intent is committed as it is when its step is
// asked for: a batch chosen before a crash is never replaced by another one. Nothing is handed out
// before 3, so no learner trained on a batch that was not committed.
//
// Serving the learner, take_batch(step, min_version, n):
//   - step <= cursor: the batch was committed; it is served again from its intent and nothing changes
//     (a learner restarted from a checkpoint while the buffer kept running, or a repeated request).
//   - step > cursor: asking for step s acknowledges that the steps before s were trained, so waiting
//     intents of earlier steps are committed first. Then s's own waiting intent is committed and
//     served; if it has none, the n pending groups of lowest id with version >= min_version across all
//     shards (the order of the single store before sharding, so runs stay reproducible) are logged,
//     committed and served. nullopt when fewer than n are pending.
// rewind(k), for a run resumed from the checkpoint of step k: the cursor becomes k and the shards are
// rewound, so the groups of steps after k are pending again (the coordinator counts them as in the
// pipeline) and their intents wait: the resumed learner gets for steps k+1, k+2, ... exactly the
// batches the stopped one got. No skip, no repeat.
//
// Retention: prune_consumed(s) deletes the payloads of groups consumed at steps <= s, and the intents
// of those steps; the ids stay as tombstones, so puts stay idempotent and stats().accepted stays
// exact. The buffer actor prunes through min(the last step the learner acknowledged, the newest
// checkpoint's step): a restarted learner asks for the step after its checkpoint, never for an older
// one. evict_stale() and discard() leave the groups of waiting intents alone.
//
// Ownership and threads: a RolloutStore owns its shards and the step log (and their directory locks:
// one process at a time per DIR). Every method may be called from any thread. Operations that span
// shards (take_batch, log_intent, commit_intents, rewind, evict_stale, discard, prune_consumed) are
// serialised by an internal mutex; put goes straight to its shard, whose own mutex serialises it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "storage/rollout_shard.h"

namespace rocksdb {
class DB;
}  // namespace rocksdb

namespace grpo::storage {

struct RolloutStoreStats {
  // Sums over the shards.
  uint64_t pending = 0;
  uint64_t consumed = 0;        // consumed groups, pruned or not
  uint64_t evicted = 0;         // evicted as stale or discarded
  uint64_t pending_bytes = 0;   // total payload bytes of pending groups
  uint64_t accepted = 0;        // unique groups ever stored: pending + consumed + evicted
  // From the step log.
  uint64_t cursor = 0;          // last committed step (0 when none)
  uint64_t logged_through = 0;  // newest step with an intent; > cursor: steps wait for replay
  uint64_t pruned_through = 0;  // payloads consumed at steps <= this are deleted
  int shards = 0;
};

struct RolloutStoreOptions {
  bool sync_writes = false;  // fsync the write-ahead log on every write batch (shards and step log)
  int shards = 1;            // S, for a new directory; an existing one must match
};

class RolloutStore {
 public:
  static constexpr int kMaxShards = 1024;

  // Opens (creating if needed) the buffer in directory `dir`, adopting a single-store directory
  // written before sharding, and rewinds shards left ahead of the step log by a crash. Unavailable
  // when another process holds it; DataLoss when metadata is corrupt; FailedPrecondition for an
  // unknown on-disk format or a shard count other than the directory's; InvalidArgument when
  // opts.shards is outside [1, kMaxShards].
  static StatusOr<std::unique_ptr<RolloutStore>> open(const std::string& dir, RolloutStoreOptions opts = {});
  ~RolloutStore();
  RolloutStore(const RolloutStore&) = delete;
  RolloutStore& operator=(const RolloutStore&) = delete;

  int shards() const { return static_cast<int>(shards_.size()); }
  // The shard that holds `group_id` in a buffer of `shards` shards.
  static int shard_of(uint64_t group_id, int shards) {
    return static_cast<int>(group_id % static_cast<uint64_t>(shards));
  }

  // Stores a new pending group in its shard. Idempotent on group_id across restarts: returns true if
  // stored, false if that id was already known (pending, consumed or evicted).
  StatusOr<bool> put(uint64_t group_id, uint64_t version, std::string_view payload);

  // Up to n pending groups with version >= min_version, in ascending group_id order across all
  // shards. Does not consume.
  StatusOr<std::vector<StoredGroup>> peek(uint64_t min_version, size_t n) const;

  // The batch of learner step `step`, exactly once (see the top of this file): ascending group id,
  // payloads included. nullopt when the step is new and fewer than n groups are pending at or above
  // min_version. FailedPrecondition for a committed step whose payloads were pruned or that was never
  // served, and for a new step while intents of later steps wait; InvalidArgument for step 0.
  StatusOr<std::optional<std::vector<StoredGroup>>> take_batch(uint64_t step, uint64_t min_version, size_t n);

  // log_intent + commit_intents(step): commits `group_ids` as the batch of `step`.
  // InvalidArgument if the list is empty or repeats an id; FailedPrecondition, changing nothing, if
  // any id is not pending, step is not after every logged step, or intents wait.
  Status consume(uint64_t step, const std::vector<uint64_t>& group_ids);

  // The first write of a commit: the intent "step = group_ids" in the step log (durable before any
  // shard changes). Same checks as consume(). Exposed so tests can stop between the writes.
  Status log_intent(uint64_t step, const std::vector<uint64_t>& group_ids);

  // The other writes: commits every waiting intent of a step <= through_step, in step order (per
  // shard consume, then the cursor). Idempotent: a shard that already consumed a step is skipped.
  Status commit_intents(uint64_t through_step);

  // The group ids logged as the batch of `step`; NotFound if none (never served, or pruned).
  StatusOr<std::vector<uint64_t>> batch_ids(uint64_t step) const;

  // For a learner restored from the checkpoint of `step`: the cursor becomes `step`, groups of later
  // steps are pending again and their intents wait for replay. A no-op when step == cursor().
  // FailedPrecondition if step > cursor() or step < stats().pruned_through.
  Status rewind(uint64_t step);

  // The last committed step (0 when none).
  uint64_t cursor() const;

  // The largest group id ever put in any shard (pending, consumed or evicted), 0 when none.
  StatusOr<uint64_t> max_group_id() const;

  // Pending groups with version < min_version become evicted in every shard (payload deleted, id
  // kept). Does nothing (returns 0) while intents wait, so that their replay finds every group.
  StatusOr<size_t> evict_stale(uint64_t min_version);

  // The listed pending groups become evicted (dynamic sampling); ids not pending, or held by a
  // waiting intent, are left alone. Returns how many were evicted.
  StatusOr<size_t> discard(const std::vector<uint64_t>& group_ids);

  // Deletes the payloads of groups consumed at steps <= min(up_to_step, cursor()) and the intents of
  // those steps. Afterwards neither rewind() nor take_batch() can go back to those steps.
  Status prune_consumed(uint64_t up_to_step);

  // What the group's shard knows about one id; NotFound if it was never put.
  StatusOr<GroupInfo> lookup(uint64_t group_id) const;

  RolloutStoreStats stats() const;

 private:
  // The step log's metadata record, rewritten with every change of the log.
  struct LogMeta {
    uint64_t shards = 1;
    uint64_t cursor = 0;
    uint64_t logged_through = 0;
    uint64_t pruned_through = 0;
  };

  RolloutStore(std::string dir, std::unique_ptr<rocksdb::DB> log, RolloutStoreOptions opts, LogMeta meta,
               std::vector<std::unique_ptr<RolloutShard>> shards);

  RolloutShard& shard_for(uint64_t group_id) const;
  std::string shard_name(int k) const;
  // Callers hold mu_.
  Status write_meta(const LogMeta& next, std::string_view what);
  Status log_intent_locked(uint64_t step, const std::vector<uint64_t>& group_ids);
  Status commit_locked(uint64_t through_step);
  Status commit_one_locked(uint64_t step, const std::vector<uint64_t>& ids);
  StatusOr<std::optional<std::vector<uint64_t>>> read_intent(uint64_t step) const;
  StatusOr<std::vector<uint64_t>> waiting_intent_steps() const;
  StatusOr<std::vector<StoredGroup>> read_groups(const std::vector<uint64_t>& ids) const;
  Status rewind_shards_locked(uint64_t step);

  const std::string dir_;
  std::unique_ptr<rocksdb::DB> log_;
  const RolloutStoreOptions opts_;
  std::vector<std::unique_ptr<RolloutShard>> shards_;
  mutable std::mutex mu_;  // serialises operations that span shards and guards meta_
  LogMeta meta_;
};

}  // namespace grpo::storage
