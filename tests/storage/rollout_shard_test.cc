#include "storage/rollout_shard.h"

#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "tests/storage/test_dir.h"

namespace grpo::storage {
namespace {

using test_util::TestDir;

std::unique_ptr<RolloutShard> open_store(const std::string& dir, RolloutShardOptions opts = {}) {
  auto store = RolloutShard::open(dir, opts);
  GRPO_CHECK_MSG(store.ok(), store.status().to_string());
  return std::move(store).value();
}

std::string payload_of(uint64_t id) { return "payload-" + std::to_string(id); }

void put_ok(RolloutShard* store, uint64_t id, uint64_t version) {
  auto r = store->put(id, version, payload_of(id));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(*r) << "group " << id << " was already present";
}

std::vector<uint64_t> ids_of(const std::vector<StoredGroup>& groups) {
  std::vector<uint64_t> ids;
  for (const auto& g : groups) ids.push_back(g.group_id);
  return ids;
}

std::vector<uint64_t> pending_ids(const RolloutShard& store) {
  auto groups = store.peek(0, 1000);
  GRPO_CHECK_MSG(groups.ok(), groups.status().to_string());
  return ids_of(*groups);
}

GroupState state_of(const RolloutShard& store, uint64_t id) {
  auto info = store.lookup(id);
  GRPO_CHECK_MSG(info.ok(), info.status().to_string());
  return info->state;
}

// Writes one raw key/value into a closed store's directory, bypassing RolloutShard.
void write_raw(const std::string& dir, const std::string& key, const std::string& value) {
  rocksdb::DB* raw = nullptr;
  rocksdb::Options options;
  ASSERT_TRUE(rocksdb::DB::Open(options, dir, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, value).ok());
  ASSERT_TRUE(db->Close().ok());
}

std::string group_key(uint64_t id) {
  std::string k = "g/";
  for (int shift = 56; shift >= 0; shift -= 8) k.push_back(static_cast<char>((id >> shift) & 0xff));
  return k;
}

TEST(RolloutShardTest, LookupMissingGroupReturnsNotFound) {
  TestDir dir;
  auto store = open_store(dir.path());
  auto info = store->lookup(42);
  EXPECT_EQ(info.status().code(), StatusCode::kNotFound);
}

TEST(RolloutShardTest, PutStoresPendingGroup) {
  TestDir dir;
  auto store = open_store(dir.path());
  put_ok(store.get(), 7, 3);
  auto info = store->lookup(7);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->state, GroupState::kPending);
  EXPECT_EQ(info->version, 3u);
  EXPECT_EQ(info->payload_bytes, payload_of(7).size());
  EXPECT_TRUE(info->has_payload);
  auto groups = store->peek(0, 10);
  ASSERT_TRUE(groups.ok()) << groups.status();
  ASSERT_EQ(groups->size(), 1u);
  EXPECT_EQ((*groups)[0].group_id, 7u);
  EXPECT_EQ((*groups)[0].version, 3u);
  EXPECT_EQ((*groups)[0].payload, payload_of(7));
}

TEST(RolloutShardTest, EmptyAndBinaryPayloadsRoundTrip) {
  TestDir dir;
  auto store = open_store(dir.path());
  const std::string binary("\0\x01\xff\0tail", 8);
  ASSERT_TRUE(*store->put(1, 0, ""));
  ASSERT_TRUE(*store->put(2, 0, binary));
  auto groups = store->peek(0, 10);
  ASSERT_TRUE(groups.ok()) << groups.status();
  ASSERT_EQ(groups->size(), 2u);
  EXPECT_EQ((*groups)[0].payload, "");
  EXPECT_EQ((*groups)[1].payload, binary);
}

TEST(RolloutShardTest, DuplicatePutReturnsFalseAndKeepsPayload) {
  TestDir dir;
  auto store = open_store(dir.path());
  put_ok(store.get(), 5, 1);
  auto again = store->put(5, 9, "a different payload");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(*again);
  auto groups = store->peek(0, 10);
  ASSERT_TRUE(groups.ok());
  ASSERT_EQ(groups->size(), 1u);
  EXPECT_EQ((*groups)[0].version, 1u);
  EXPECT_EQ((*groups)[0].payload, payload_of(5));
  EXPECT_EQ(store->stats().pending, 1u);
  EXPECT_EQ(store->stats().pending_bytes, payload_of(5).size());
}

TEST(RolloutShardTest, PeekFiltersByVersionAndOrdersById) {
  TestDir dir;
  auto store = open_store(dir.path());
  // Inserted out of order, versions interleaved.
  put_ok(store.get(), 30, 2);
  put_ok(store.get(), 10, 5);
  put_ok(store.get(), 20, 1);
  put_ok(store.get(), 256, 3);  // crosses a byte boundary: keys must order numerically
  put_ok(store.get(), 15, 4);
  auto all = store->peek(0, 100);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(ids_of(*all), (std::vector<uint64_t>{10, 15, 20, 30, 256}));
  auto fresh = store->peek(3, 100);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(ids_of(*fresh), (std::vector<uint64_t>{10, 15, 256}));
  auto first_two = store->peek(2, 2);
  ASSERT_TRUE(first_two.ok());
  EXPECT_EQ(ids_of(*first_two), (std::vector<uint64_t>{10, 15}));
  auto none = store->peek(0, 0);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  // Peeking consumed nothing.
  EXPECT_EQ(store->stats().pending, 5u);
  EXPECT_EQ(pending_ids(*store).size(), 5u);
}

TEST(RolloutShardTest, ConsumeMarksGroupsAndAdvancesCursor) {
  TestDir dir;
  auto store = open_store(dir.path());
  for (uint64_t id = 1; id <= 4; ++id) put_ok(store.get(), id, 1);
  EXPECT_EQ(store->cursor(), 0u);
  ASSERT_TRUE(store->consume(1, {3, 1}).ok());
  EXPECT_EQ(store->cursor(), 1u);
  EXPECT_EQ(pending_ids(*store), (std::vector<uint64_t>{2, 4}));
  auto info = store->lookup(3);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, GroupState::kConsumed);
  EXPECT_EQ(info->consume_step, 1u);
  EXPECT_TRUE(info->has_payload);
  ASSERT_TRUE(store->consume(5, {2}).ok());  // steps may skip
  EXPECT_EQ(store->cursor(), 5u);
}

TEST(RolloutShardTest, ConsumeIsAllOrNothing) {
  TestDir dir;
  auto store = open_store(dir.path());
  put_ok(store.get(), 1, 1);
  put_ok(store.get(), 2, 1);
  const RolloutShardStats before = store->stats();
  Status s = store->consume(1, {1, 99, 2});  // 99 was never put
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("99"), std::string::npos) << s;
  EXPECT_EQ(store->cursor(), 0u);
  EXPECT_EQ(pending_ids(*store), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(state_of(*store, 1), GroupState::kPending);
  EXPECT_EQ(store->stats().pending, before.pending);
  EXPECT_EQ(store->stats().consumed, 0u);
}

TEST(RolloutShardTest, ConsumeOfConsumedGroupFailsAndChangesNothing) {
  TestDir dir;
  auto store = open_store(dir.path());
  for (uint64_t id = 1; id <= 3; ++id) put_ok(store.get(), id, 1);
  ASSERT_TRUE(store->consume(1, {1}).ok());
  Status s = store->consume(2, {2, 1});
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("consumed by step 1"), std::string::npos) << s;
  EXPECT_EQ(store->cursor(), 1u);
  EXPECT_EQ(state_of(*store, 2), GroupState::kPending);
  auto info = store->lookup(1);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->consume_step, 1u);
  EXPECT_EQ(store->stats().pending, 2u);
  EXPECT_EQ(store->stats().consumed, 1u);
}

TEST(RolloutShardTest, ConsumeRejectsStepNotAfterCursor) {
  TestDir dir;
  auto store = open_store(dir.path());
  for (uint64_t id = 1; id <= 3; ++id) put_ok(store.get(), id, 1);
  EXPECT_EQ(store->consume(0, {1}).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store->consume(4, {1}).ok());
  EXPECT_EQ(store->consume(4, {2}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->consume(3, {2}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(state_of(*store, 2), GroupState::kPending);
  EXPECT_EQ(store->cursor(), 4u);
}

TEST(RolloutShardTest, ConsumeRejectsEmptyAndRepeatedIds) {
  TestDir dir;
  auto store = open_store(dir.path());
  put_ok(store.get(), 1, 1);
  EXPECT_EQ(store->consume(1, {}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->consume(1, {1, 1}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->cursor(), 0u);
  EXPECT_EQ(state_of(*store, 1), GroupState::kPending);
}

TEST(RolloutShardTest, RewindRestoresExactlyGroupsOfLaterSteps) {
  TestDir dir;
  auto store = open_store(dir.path());
  for (uint64_t id = 1; id <= 7; ++id) put_ok(store.get(), id, 1);
  ASSERT_TRUE(store->consume(1, {1, 2}).ok());
  ASSERT_TRUE(store->consume(2, {3}).ok());
  ASSERT_TRUE(store->consume(3, {4, 5}).ok());
  ASSERT_TRUE(store->consume(4, {6}).ok());
  const uint64_t bytes_before = store->stats().pending_bytes;

  ASSERT_TRUE(store->rewind(2).ok());
  EXPECT_EQ(store->cursor(), 2u);
  EXPECT_EQ(pending_ids(*store), (std::vector<uint64_t>{4, 5, 6, 7}));
  EXPECT_EQ(state_of(*store, 1), GroupState::kConsumed);
  EXPECT_EQ(state_of(*store, 3), GroupState::kConsumed);
  auto info = store->lookup(4);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->consume_step, 0u);
  const RolloutShardStats stats = store->stats();
  EXPECT_EQ(stats.pending, 4u);
  EXPECT_EQ(stats.consumed, 3u);
  EXPECT_EQ(stats.pending_bytes, bytes_before + 3 * payload_of(4).size());

  // The learner replays from step 3 with the same groups.
  ASSERT_TRUE(store->consume(3, {4, 5}).ok());
  EXPECT_EQ(store->cursor(), 3u);
  // Rewinding to the cursor is a no-op.
  ASSERT_TRUE(store->rewind(3).ok());
  EXPECT_EQ(pending_ids(*store), (std::vector<uint64_t>{6, 7}));
}

TEST(RolloutShardTest, RewindRejectsFutureStepAndPrunedSteps) {
  TestDir dir;
  auto store = open_store(dir.path());
  for (uint64_t id = 1; id <= 3; ++id) put_ok(store.get(), id, 1);
  ASSERT_TRUE(store->consume(1, {1}).ok());
  ASSERT_TRUE(store->consume(2, {2}).ok());
  ASSERT_TRUE(store->consume(3, {3}).ok());
  EXPECT_EQ(store->rewind(4).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store->prune_consumed(2).ok());
  EXPECT_EQ(store->rewind(1).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->cursor(), 3u);
  ASSERT_TRUE(store->rewind(2).ok());  // step 3's payload is still there
  EXPECT_EQ(pending_ids(*store), (std::vector<uint64_t>{3}));
}

TEST(RolloutShardTest, EvictStaleEvictsOnlyOldPendingGroups) {
  TestDir dir;
  auto store = open_store(dir.path());
  put_ok(store.get(), 1, 1);
  put_ok(store.get(), 2, 2);
  put_ok(store.get(), 3, 3);
  put_ok(store.get(), 4, 1);
  ASSERT_TRUE(store->consume(1, {4}).ok());  // consumed groups are never evicted
  auto n = store->evict_stale(3);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(pending_ids(*store), (std::vector<uint64_t>{3}));
  EXPECT_EQ(state_of(*store, 1), GroupState::kEvicted);
  EXPECT_EQ(state_of(*store, 4), GroupState::kConsumed);
  auto info = store->lookup(2);
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->has_payload);
  auto again = store->evict_stale(3);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0u);
  const RolloutShardStats stats = store->stats();
  EXPECT_EQ(stats.pending, 1u);
  EXPECT_EQ(stats.evicted, 2u);
  EXPECT_EQ(stats.consumed, 1u);
  EXPECT_EQ(stats.pending_bytes, payload_of(3).size());
}

TEST(RolloutShardTest, DiscardEvictsOnlyTheListedPendingGroups) {
  TestDir dir;
  auto store = open_store(dir.path());
  put_ok(store.get(), 1, 1);
  put_ok(store.get(), 2, 1);
  put_ok(store.get(), 3, 1);
  ASSERT_TRUE(store->consume(1, {3}).ok());
  auto n = store->discard({2, 3, 2, 99});  // 3 is consumed, 99 unknown, 2 repeated
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(pending_ids(*store), (std::vector<uint64_t>{1}));
  EXPECT_EQ(state_of(*store, 2), GroupState::kEvicted);
  EXPECT_EQ(state_of(*store, 3), GroupState::kConsumed);
  EXPECT_FALSE(*store->put(2, 4, "redelivered"));  // a tombstone: a late duplicate stays dropped
  const RolloutShardStats stats = store->stats();
  EXPECT_EQ(stats.pending, 1u);
  EXPECT_EQ(stats.evicted, 1u);
  EXPECT_EQ(stats.pending_bytes, payload_of(1).size());
  EXPECT_EQ(*store->discard({}), 0u);
}

TEST(RolloutShardTest, MaxGroupIdCoversEveryState) {
  TestDir dir;
  auto store = open_store(dir.path());
  EXPECT_EQ(*store->max_group_id(), 0u);
  put_ok(store.get(), 7, 1);
  put_ok(store.get(), 3, 1);
  EXPECT_EQ(*store->max_group_id(), 7u);
  put_ok(store.get(), 300, 1);
  ASSERT_TRUE(store->consume(1, {300}).ok());
  EXPECT_EQ(*store->max_group_id(), 300u);
  put_ok(store.get(), 1000, 1);
  ASSERT_EQ(*store->discard({1000}), 1u);
  EXPECT_EQ(*store->max_group_id(), 1000u);  // tombstones count
}

TEST(RolloutShardTest, DuplicatePutAfterEvictionIsNoOp) {
  TestDir dir;
  auto store = open_store(dir.path());
  put_ok(store.get(), 1, 1);
  ASSERT_EQ(*store->evict_stale(2), 1u);
  auto late = store->put(1, 5, "late redelivery");
  ASSERT_TRUE(late.ok());
  EXPECT_FALSE(*late);
  EXPECT_EQ(state_of(*store, 1), GroupState::kEvicted);
  EXPECT_TRUE(pending_ids(*store).empty());
  EXPECT_EQ(store->stats().pending, 0u);
}

TEST(RolloutShardTest, PruneConsumedDeletesPayloadsAndKeepsTombstones) {
  TestDir dir;
  auto store = open_store(dir.path());
  for (uint64_t id = 1; id <= 4; ++id) put_ok(store.get(), id, 1);
  ASSERT_TRUE(store->consume(1, {1}).ok());
  ASSERT_TRUE(store->consume(2, {2}).ok());
  ASSERT_TRUE(store->consume(3, {3}).ok());
  ASSERT_TRUE(store->prune_consumed(2).ok());
  EXPECT_EQ(store->stats().pruned_through, 2u);
  auto one = store->lookup(1);
  auto two = store->lookup(2);
  auto three = store->lookup(3);
  ASSERT_TRUE(one.ok() && two.ok() && three.ok());
  EXPECT_FALSE(one->has_payload);
  EXPECT_FALSE(two->has_payload);
  EXPECT_TRUE(three->has_payload);
  EXPECT_EQ(one->state, GroupState::kConsumed);
  EXPECT_EQ(two->consume_step, 2u);
  // Tombstones keep put idempotent.
  auto dup = store->put(1, 1, "again");
  ASSERT_TRUE(dup.ok());
  EXPECT_FALSE(*dup);
  EXPECT_EQ(pending_ids(*store), (std::vector<uint64_t>{4}));
  // Pruning is clamped to the cursor and never goes backwards.
  ASSERT_TRUE(store->prune_consumed(100).ok());
  EXPECT_EQ(store->stats().pruned_through, 3u);
  ASSERT_TRUE(store->prune_consumed(1).ok());
  EXPECT_EQ(store->stats().pruned_through, 3u);
  EXPECT_EQ(store->stats().consumed, 3u);
}

TEST(RolloutShardTest, StatsTrackEveryTransition) {
  TestDir dir;
  auto store = open_store(dir.path());
  RolloutShardStats s = store->stats();
  EXPECT_EQ(s.pending + s.consumed + s.evicted + s.pending_bytes + s.cursor, 0u);
  ASSERT_TRUE(*store->put(1, 1, "aaaa"));
  ASSERT_TRUE(*store->put(2, 1, "bb"));
  ASSERT_TRUE(*store->put(3, 2, "c"));
  s = store->stats();
  EXPECT_EQ(s.pending, 3u);
  EXPECT_EQ(s.pending_bytes, 7u);
  ASSERT_TRUE(store->consume(1, {1}).ok());
  s = store->stats();
  EXPECT_EQ(s.pending, 2u);
  EXPECT_EQ(s.consumed, 1u);
  EXPECT_EQ(s.pending_bytes, 3u);
  EXPECT_EQ(s.cursor, 1u);
  ASSERT_EQ(*store->evict_stale(2), 1u);
  s = store->stats();
  EXPECT_EQ(s.pending, 1u);
  EXPECT_EQ(s.evicted, 1u);
  EXPECT_EQ(s.pending_bytes, 1u);
  ASSERT_TRUE(store->rewind(0).ok());
  s = store->stats();
  EXPECT_EQ(s.pending, 2u);
  EXPECT_EQ(s.consumed, 0u);
  EXPECT_EQ(s.pending_bytes, 5u);
  EXPECT_EQ(s.cursor, 0u);
}

TEST(RolloutShardTest, ReopenKeepsGroupsCursorAndStats) {
  TestDir dir;
  RolloutShardStats before;
  {
    auto store = open_store(dir.path());
    for (uint64_t id = 1; id <= 6; ++id) put_ok(store.get(), id, id);
    ASSERT_TRUE(store->consume(1, {1, 2}).ok());
    ASSERT_TRUE(store->consume(2, {3}).ok());
    ASSERT_EQ(*store->evict_stale(5), 1u);  // group 4
    ASSERT_TRUE(store->prune_consumed(1).ok());
    before = store->stats();
  }
  auto store = open_store(dir.path());
  const RolloutShardStats after = store->stats();
  EXPECT_EQ(after.pending, before.pending);
  EXPECT_EQ(after.consumed, before.consumed);
  EXPECT_EQ(after.evicted, before.evicted);
  EXPECT_EQ(after.pending_bytes, before.pending_bytes);
  EXPECT_EQ(after.pruned_through, 1u);
  EXPECT_EQ(store->cursor(), 2u);
  auto groups = store->peek(0, 10);
  ASSERT_TRUE(groups.ok());
  EXPECT_EQ(ids_of(*groups), (std::vector<uint64_t>{5, 6}));
  EXPECT_EQ((*groups)[1].payload, payload_of(6));
  EXPECT_EQ((*groups)[1].version, 6u);
  EXPECT_FALSE(*store->put(4, 9, "x"));
  EXPECT_EQ(state_of(*store, 3), GroupState::kConsumed);
  // The reopened store keeps working: rewind still restores step 2.
  ASSERT_TRUE(store->rewind(1).ok());
  EXPECT_EQ(pending_ids(*store), (std::vector<uint64_t>{3, 5, 6}));
}

TEST(RolloutShardTest, ForkedChildWritesSurviveExitWithoutClose) {
  TestDir dir;
  const pid_t pid = ::fork();
  ASSERT_NE(pid, -1);
  if (pid == 0) {
    // Child: no gtest assertions here; report through the exit code and never close the store.
    ::alarm(30);
    auto opened = RolloutShard::open(dir.path());
    if (!opened.ok()) ::_exit(2);
    RolloutShard* store = opened->release();  // deliberately leaked: no Close, no flush
    for (uint64_t id = 1; id <= 3; ++id) {
      auto r = store->put(id, 1, payload_of(id));
      if (!r.ok() || !*r) ::_exit(3);
    }
    if (!store->consume(1, {2}).ok()) ::_exit(4);
    ::_exit(0);
  }
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus)) << "child did not exit normally, status " << wstatus;
  ASSERT_EQ(WEXITSTATUS(wstatus), 0);

  auto store = open_store(dir.path());
  EXPECT_EQ(store->cursor(), 1u);
  auto groups = store->peek(0, 10);
  ASSERT_TRUE(groups.ok()) << groups.status();
  EXPECT_EQ(ids_of(*groups), (std::vector<uint64_t>{1, 3}));
  EXPECT_EQ((*groups)[1].payload, payload_of(3));
  EXPECT_EQ(state_of(*store, 2), GroupState::kConsumed);
  EXPECT_EQ(store->stats().pending, 2u);
  EXPECT_EQ(store->stats().consumed, 1u);
}

TEST(RolloutShardTest, SyncWritesReopen) {
  TestDir dir;
  {
    RolloutShardOptions opts;
    opts.sync_writes = true;
    auto store = open_store(dir.path(), opts);
    put_ok(store.get(), 1, 1);
    ASSERT_TRUE(store->consume(1, {1}).ok());
  }
  auto store = open_store(dir.path());
  EXPECT_EQ(store->cursor(), 1u);
  EXPECT_EQ(state_of(*store, 1), GroupState::kConsumed);
}

TEST(RolloutShardTest, SecondOpenOfSameDirectoryIsUnavailable) {
  TestDir dir;
  auto store = open_store(dir.path());
  auto second = RolloutShard::open(dir.path());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable) << second.status();
}

TEST(RolloutShardTest, CorruptGroupRecordReturnsDataLossNamingKey) {
  TestDir dir;
  { auto store = open_store(dir.path()); }
  write_raw(dir.path(), group_key(7), "short");
  auto store = open_store(dir.path());
  auto info = store->lookup(7);
  EXPECT_EQ(info.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(info.status().message().find("g/7"), std::string::npos) << info.status();
  auto put = store->put(7, 1, "x");
  EXPECT_EQ(put.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(store->consume(1, {7}).code(), StatusCode::kDataLoss);
  EXPECT_EQ(store->cursor(), 0u);
}

TEST(RolloutShardTest, CorruptMetadataFailsOpenWithDataLoss) {
  TestDir dir;
  { auto store = open_store(dir.path()); }
  write_raw(dir.path(), "m/state", "bad");
  auto store = RolloutShard::open(dir.path());
  EXPECT_EQ(store.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(store.status().message().find("m/state"), std::string::npos) << store.status();
}

TEST(RolloutShardTest, ConcurrentPutsAndConsumesKeepCountsExact) {
  TestDir dir;
  auto store = open_store(dir.path());
  constexpr int kWriters = 4;
  constexpr uint64_t kPerWriter = 50;
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (uint64_t i = 0; i < kPerWriter; ++i) {
        const uint64_t id = static_cast<uint64_t>(w) * 1000 + i;
        auto r = store->put(id, 1, payload_of(id));
        EXPECT_TRUE(r.ok() && *r);
        auto dup = store->put(id, 1, "dup");  // redelivery races nothing
        EXPECT_TRUE(dup.ok() && !*dup);
      }
    });
  }
  uint64_t consumed = 0;
  uint64_t step = 0;
  std::thread learner([&] {
    while (consumed < kWriters * kPerWriter / 2) {
      auto batch = store->peek(0, 8);
      ASSERT_TRUE(batch.ok());
      if (batch->empty()) {
        std::this_thread::yield();
        continue;
      }
      ASSERT_TRUE(store->consume(++step, ids_of(*batch)).ok());
      consumed += batch->size();
    }
  });
  for (auto& t : writers) t.join();
  learner.join();
  const RolloutShardStats s = store->stats();
  EXPECT_EQ(s.consumed, consumed);
  EXPECT_EQ(s.pending + s.consumed, kWriters * kPerWriter);
  EXPECT_EQ(pending_ids(*store).size(), s.pending);
  EXPECT_EQ(s.cursor, step);
}

TEST(RolloutShardTest, ReadReturnsPayloadUntilEvictedOrPruned) {
  TestDir dir;
  auto store = open_store(dir.path());
  for (uint64_t id = 1; id <= 3; ++id) put_ok(store.get(), id, id);
  ASSERT_TRUE(store->consume(1, {1}).ok());
  ASSERT_EQ(*store->evict_stale(3), 1u);  // group 2
  auto consumed = store->read(1);
  ASSERT_TRUE(consumed.ok()) << consumed.status();
  EXPECT_EQ(consumed->payload, payload_of(1));
  EXPECT_EQ(consumed->version, 1u);
  auto pending = store->read(3);
  ASSERT_TRUE(pending.ok()) << pending.status();
  EXPECT_EQ(pending->payload, payload_of(3));
  EXPECT_EQ(store->read(2).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->read(99).status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(store->prune_consumed(1).ok());
  auto pruned = store->read(1);
  EXPECT_EQ(pruned.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(pruned.status().message().find("pruned"), std::string::npos) << pruned.status();
}

TEST(RolloutShardTest, ConsumedAfterListsKeptBatchesByStepThenId) {
  TestDir dir;
  auto store = open_store(dir.path());
  for (uint64_t id = 1; id <= 6; ++id) put_ok(store.get(), id, 1);
  ASSERT_TRUE(store->consume(1, {2}).ok());
  ASSERT_TRUE(store->consume(2, {5, 1}).ok());
  ASSERT_TRUE(store->consume(4, {3}).ok());
  using Pairs = std::vector<std::pair<uint64_t, uint64_t>>;
  EXPECT_EQ(*store->consumed_after(0), (Pairs{{1, 2}, {2, 1}, {2, 5}, {4, 3}}));
  EXPECT_EQ(*store->consumed_after(2), (Pairs{{4, 3}}));
  ASSERT_TRUE(store->prune_consumed(1).ok());
  EXPECT_EQ(*store->consumed_after(0), (Pairs{{2, 1}, {2, 5}, {4, 3}}));
  EXPECT_TRUE(store->consumed_after(4)->empty());
}

}  // namespace
}  // namespace grpo::storage
