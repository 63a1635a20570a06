// The sharded rollout buffer: routing, idempotent puts across reopen, the cross-shard batch order,
// and exactly-once batches when the process stops between the writes of a commit (simulated by
// calling the lower-level steps, or a shard directly, then reopening).
#include "storage/rollout_store.h"

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "tests/storage/test_dir.h"

namespace grpo::storage {
namespace {

namespace fs = std::filesystem;
using test_util::TestDir;
using Ids = std::vector<uint64_t>;

RolloutStoreOptions with_shards(int shards) {
  RolloutStoreOptions opts;
  opts.shards = shards;
  return opts;
}

std::unique_ptr<RolloutStore> open_store(const std::string& dir, int shards) {
  auto store = RolloutStore::open(dir, with_shards(shards));
  GRPO_CHECK_MSG(store.ok(), store.status().to_string());
  return std::move(store).value();
}

std::unique_ptr<RolloutShard> open_shard(const std::string& dir) {
  auto shard = RolloutShard::open(dir);
  GRPO_CHECK_MSG(shard.ok(), shard.status().to_string());
  return std::move(shard).value();
}

std::string payload_of(uint64_t id) { return "payload-" + std::to_string(id); }

void put_ok(RolloutStore* store, uint64_t id, uint64_t version) {
  auto r = store->put(id, version, payload_of(id));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(*r) << "group " << id << " was already present";
}

Ids ids_of(const std::vector<StoredGroup>& groups) {
  Ids ids;
  for (const auto& g : groups) ids.push_back(g.group_id);
  return ids;
}

// take_batch that must return a batch: its ids, or none (and the test fails).
Ids take(RolloutStore* store, uint64_t step, uint64_t min_version, size_t n) {
  auto batch = store->take_batch(step, min_version, n);
  if (!batch.ok()) {
    ADD_FAILURE() << "step " << step << ": " << batch.status();
    return {};
  }
  if (!batch->has_value()) {
    ADD_FAILURE() << "no batch for step " << step;
    return {};
  }
  for (const auto& g : **batch) EXPECT_EQ(g.payload, payload_of(g.group_id));
  return ids_of(**batch);
}

Ids pending_ids(const RolloutStore& store) {
  auto groups = store.peek(0, 1000);
  GRPO_CHECK_MSG(groups.ok(), groups.status().to_string());
  return ids_of(*groups);
}

GroupInfo info_of(const RolloutStore& store, uint64_t id) {
  auto info = store.lookup(id);
  GRPO_CHECK_MSG(info.ok(), info.status().to_string());
  return *info;
}

std::string shard_dir(const TestDir& dir, int k) { return dir.path() + "/shard-" + std::to_string(k); }

TEST(RolloutStoreTest, RoutesEachGroupToShardIdModuloCount) {
  TestDir dir;
  {
    auto store = open_store(dir.path(), 3);
    EXPECT_EQ(store->shards(), 3);
    for (uint64_t id = 1; id <= 9; ++id) put_ok(store.get(), id, 1);
    EXPECT_EQ(store->stats().pending, 9u);
    EXPECT_EQ(info_of(*store, 7).state, GroupState::kPending);
  }
  // On disk, each shard holds exactly its ids.
  for (int k = 0; k < 3; ++k) {
    auto shard = open_shard(shard_dir(dir, k));
    EXPECT_EQ(shard->stats().pending, 3u) << "shard " << k;
    for (uint64_t id = 1; id <= 9; ++id) {
      const bool here = shard->lookup(id).ok();
      EXPECT_EQ(here, static_cast<int>(id % 3) == k) << "group " << id << " in shard " << k;
    }
  }
}

TEST(RolloutStoreTest, PutIsIdempotentAcrossReopenAndAcceptedCountPersists) {
  TestDir dir;
  {
    auto store = open_store(dir.path(), 2);
    for (uint64_t id = 1; id <= 5; ++id) put_ok(store.get(), id, 1);
    EXPECT_FALSE(*store->put(3, 9, "redelivered"));
    ASSERT_EQ(take(store.get(), 1, 0, 2), (Ids{1, 2}));
    ASSERT_EQ(*store->discard({5}), 1u);
    EXPECT_EQ(store->stats().accepted, 5u);
  }
  auto store = open_store(dir.path(), 2);
  for (uint64_t id = 1; id <= 5; ++id) {
    auto again = store->put(id, 7, "after restart");
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_FALSE(*again) << "group " << id << " stored twice";
  }
  put_ok(store.get(), 6, 1);
  const RolloutStoreStats s = store->stats();
  EXPECT_EQ(s.accepted, 6u);
  EXPECT_EQ(s.pending, 3u);
  EXPECT_EQ(s.consumed, 2u);
  EXPECT_EQ(s.evicted, 1u);
  EXPECT_EQ(pending_ids(*store), (Ids{3, 4, 6}));
  auto groups = store->peek(0, 1);
  ASSERT_TRUE(groups.ok());
  EXPECT_EQ((*groups)[0].payload, payload_of(3));
  EXPECT_EQ((*groups)[0].version, 1u);
}

TEST(RolloutStoreTest, BatchesAcrossShardsMatchOneShardInAscendingIdOrder) {
  // The same puts into 1 and 4 shards give the same batches: sharding does not change a run.
  TestDir one_dir;
  TestDir four_dir;
  auto one = open_store(one_dir.path(), 1);
  auto four = open_store(four_dir.path(), 4);
  const std::vector<std::pair<uint64_t, uint64_t>> puts = {{30, 2}, {10, 5}, {20, 1}, {256, 3}, {15, 4},
                                                           {7, 3},  {41, 2}, {2, 6},  {99, 1},  {64, 5}};
  for (auto [id, version] : puts) {
    put_ok(one.get(), id, version);
    put_ok(four.get(), id, version);
  }
  auto peeked = four->peek(3, 100);
  ASSERT_TRUE(peeked.ok());
  EXPECT_EQ(ids_of(*peeked), (Ids{2, 7, 10, 15, 64, 256}));
  EXPECT_EQ(ids_of(*four->peek(0, 3)), (Ids{2, 7, 10}));
  EXPECT_TRUE(four->peek(0, 0)->empty());

  EXPECT_EQ(take(four.get(), 1, 3, 4), (Ids{2, 7, 10, 15}));
  EXPECT_EQ(take(one.get(), 1, 3, 4), (Ids{2, 7, 10, 15}));
  EXPECT_EQ(take(four.get(), 2, 1, 3), take(one.get(), 2, 1, 3));
  EXPECT_EQ(*four->batch_ids(2), (Ids{20, 30, 41}));
  EXPECT_EQ(four->stats().consumed, 7u);
  EXPECT_EQ(four->cursor(), 2u);
  EXPECT_EQ(pending_ids(*four), pending_ids(*one));
}

TEST(RolloutStoreTest, TakeBatchWaitsForEnoughGroupsAndChangesNothing) {
  TestDir dir;
  auto store = open_store(dir.path(), 2);
  put_ok(store.get(), 1, 1);
  put_ok(store.get(), 2, 0);  // below min_version: does not count
  auto batch = store->take_batch(1, 1, 2);
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_FALSE(batch->has_value());
  EXPECT_EQ(store->cursor(), 0u);
  EXPECT_EQ(store->stats().logged_through, 0u);
  EXPECT_EQ(store->stats().pending, 2u);
  put_ok(store.get(), 3, 2);
  EXPECT_EQ(take(store.get(), 1, 1, 2), (Ids{1, 3}));
  EXPECT_EQ(store->take_batch(0, 0, 1).status().code(), StatusCode::kInvalidArgument);
}

TEST(RolloutStoreTest, CommittedStepIsServedAgainUnchanged) {
  TestDir dir;
  auto store = open_store(dir.path(), 2);
  for (uint64_t id = 1; id <= 6; ++id) put_ok(store.get(), id, 1);
  ASSERT_EQ(take(store.get(), 1, 0, 3), (Ids{1, 2, 3}));
  ASSERT_EQ(take(store.get(), 2, 0, 2), (Ids{4, 5}));
  // A learner restarted from step 0 while the buffer kept running asks for steps 1 and 2 again.
  EXPECT_EQ(take(store.get(), 1, 99, 5), (Ids{1, 2, 3}));
  EXPECT_EQ(take(store.get(), 2, 99, 5), (Ids{4, 5}));
  EXPECT_EQ(store->cursor(), 2u);
  EXPECT_EQ(pending_ids(*store), (Ids{6}));
  EXPECT_EQ(info_of(*store, 2).consume_step, 1u);
  // A step that was skipped was never served.
  put_ok(store.get(), 7, 1);
  ASSERT_EQ(take(store.get(), 4, 0, 1), (Ids{6}));
  EXPECT_EQ(store->take_batch(3, 0, 1).status().code(), StatusCode::kFailedPrecondition);
}

TEST(RolloutStoreTest, StopAfterIntentReplaysTheSameBatchAfterReopen) {
  TestDir dir;
  {
    auto store = open_store(dir.path(), 2);
    for (uint64_t id = 10; id <= 15; ++id) put_ok(store.get(), id, 1);
    ASSERT_TRUE(store->log_intent(1, {14, 11, 12, 13}).ok());  // then the process stops
  }
  auto store = open_store(dir.path(), 2);
  EXPECT_EQ(store->cursor(), 0u);
  EXPECT_EQ(store->stats().logged_through, 1u);
  EXPECT_EQ(store->stats().pending, 6u);
  // A fresh choice would now take 1, 2, 10, 11; the logged batch is served instead.
  put_ok(store.get(), 1, 1);
  put_ok(store.get(), 2, 1);
  EXPECT_EQ(*store->evict_stale(5), 0u) << "eviction must wait while a batch waits for replay";
  EXPECT_EQ(*store->discard({12, 2}), 1u) << "a group of a waiting batch must not be discarded";
  EXPECT_EQ(store->consume(2, {1}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(take(store.get(), 1, 9, 1), (Ids{11, 12, 13, 14}));
  EXPECT_EQ(store->cursor(), 1u);
  EXPECT_EQ(info_of(*store, 14).consume_step, 1u);
  EXPECT_EQ(pending_ids(*store), (Ids{1, 10, 15}));
  EXPECT_EQ(take(store.get(), 2, 0, 2), (Ids{1, 10}));
}

TEST(RolloutStoreTest, StopAfterSomeShardsConsumedRollsBackThenReplays) {
  TestDir dir;
  {
    auto store = open_store(dir.path(), 2);
    for (uint64_t id = 1; id <= 6; ++id) put_ok(store.get(), id, 1);
    ASSERT_EQ(take(store.get(), 1, 0, 1), (Ids{1}));
    ASSERT_TRUE(store->log_intent(2, {2, 3, 4, 5}).ok());
  }
  {
    // The commit reached shard 1 (ids 3 and 5) and the process stopped before shard 0.
    auto shard1 = open_shard(shard_dir(dir, 1));
    ASSERT_TRUE(shard1->consume(2, {3, 5}).ok());
  }
  {
    auto store = open_store(dir.path(), 2);
    EXPECT_EQ(store->cursor(), 1u);
    EXPECT_EQ(info_of(*store, 3).state, GroupState::kPending) << "shard 1 was not rolled back";
    EXPECT_EQ(store->stats().pending, 5u);
    EXPECT_EQ(take(store.get(), 2, 0, 1), (Ids{2, 3, 4, 5}));
    EXPECT_EQ(store->stats().consumed, 5u);
  }
  // Every shard consumed but the cursor was not written: the same outcome.
  {
    auto store = open_store(dir.path(), 2);
    put_ok(store.get(), 7, 1);
    put_ok(store.get(), 8, 1);
    ASSERT_TRUE(store->log_intent(3, {6, 7, 8}).ok());
  }
  {
    auto shard0 = open_shard(shard_dir(dir, 0));
    ASSERT_TRUE(shard0->consume(3, {6, 8}).ok());
    auto shard1 = open_shard(shard_dir(dir, 1));
    ASSERT_TRUE(shard1->consume(3, {7}).ok());
  }
  auto store = open_store(dir.path(), 2);
  EXPECT_EQ(store->cursor(), 2u);
  EXPECT_EQ(pending_ids(*store), (Ids{6, 7, 8}));
  EXPECT_EQ(take(store.get(), 3, 0, 1), (Ids{6, 7, 8}));
  EXPECT_EQ(store->cursor(), 3u);
  EXPECT_TRUE(pending_ids(*store).empty());
}

TEST(RolloutStoreTest, ShardAheadOfTheStepLogIsDataLoss) {
  TestDir dir;
  {
    auto store = open_store(dir.path(), 2);
    put_ok(store.get(), 1, 1);
  }
  {
    auto shard1 = open_shard(shard_dir(dir, 1));
    ASSERT_TRUE(shard1->consume(5, {1}).ok());  // a step no intent recorded
  }
  auto reopened = RolloutStore::open(dir.path(), with_shards(2));
  EXPECT_EQ(reopened.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(reopened.status().message().find("shard 1"), std::string::npos) << reopened.status();
}

TEST(RolloutStoreTest, ResumeFromCheckpointReplaysLaterStepsExactly) {
  TestDir dir;
  std::vector<Ids> served;
  {
    auto store = open_store(dir.path(), 3);
    for (uint64_t id = 1; id <= 12; ++id) put_ok(store.get(), id, id);
    for (uint64_t step = 1; step <= 3; ++step) served.push_back(take(store.get(), step, 0, 3));
    put_ok(store.get(), 20, 20);
  }
  // The learner's checkpoint is at step 1: the buffer reopens and rewinds there.
  auto store = open_store(dir.path(), 3);
  ASSERT_TRUE(store->rewind(1).ok());
  EXPECT_EQ(store->cursor(), 1u);
  EXPECT_EQ(store->stats().logged_through, 3u);
  EXPECT_EQ(store->stats().pending, 10u);  // steps 2 and 3 count as pending again
  // A late group with a lower id than anything waiting changes nothing.
  put_ok(store.get(), 0, 50);
  EXPECT_EQ(take(store.get(), 2, 9, 1), served[1]);
  EXPECT_EQ(take(store.get(), 3, 9, 1), served[2]);
  EXPECT_EQ(take(store.get(), 4, 0, 3), (Ids{0, 10, 11}));
  // Rewinding to the cursor is a no-op; past it or below the pruned steps is refused.
  EXPECT_TRUE(store->rewind(4).ok());
  EXPECT_EQ(store->rewind(5).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store->prune_consumed(2).ok());
  EXPECT_EQ(store->rewind(1).code(), StatusCode::kFailedPrecondition);
}

TEST(RolloutStoreTest, RequestPastWaitingStepsCommitsThemFirst) {
  // The buffer restarted (rewinding to the checkpoint) but the learner did not: it asks for a later
  // step, which says the waiting steps were trained. They are committed as logged, never re-chosen.
  TestDir dir;
  auto store = open_store(dir.path(), 2);
  for (uint64_t id = 1; id <= 8; ++id) put_ok(store.get(), id, 1);
  for (uint64_t step = 1; step <= 3; ++step) take(store.get(), step, 0, 2);
  ASSERT_TRUE(store->rewind(1).ok());
  EXPECT_EQ(take(store.get(), 4, 0, 2), (Ids{7, 8}));
  EXPECT_EQ(info_of(*store, 3).consume_step, 2u);
  EXPECT_EQ(info_of(*store, 6).consume_step, 3u);
  EXPECT_EQ(store->stats().consumed, 8u);
  EXPECT_EQ(store->cursor(), 4u);
}

TEST(RolloutStoreTest, PruneDeletesPayloadsAndIntentsButKeepsTombstones) {
  TestDir dir;
  auto store = open_store(dir.path(), 2);
  for (uint64_t id = 1; id <= 6; ++id) put_ok(store.get(), id, 1);
  for (uint64_t step = 1; step <= 3; ++step) take(store.get(), step, 0, 2);
  ASSERT_TRUE(store->prune_consumed(2).ok());
  EXPECT_EQ(store->stats().pruned_through, 2u);
  EXPECT_EQ(store->batch_ids(1).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store->batch_ids(2).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(*store->batch_ids(3), (Ids{5, 6}));
  EXPECT_FALSE(info_of(*store, 1).has_payload);
  EXPECT_FALSE(info_of(*store, 4).has_payload);
  EXPECT_TRUE(info_of(*store, 5).has_payload);
  auto pruned = store->take_batch(2, 0, 2);
  EXPECT_EQ(pruned.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(pruned.status().message().find("pruned"), std::string::npos) << pruned.status();
  EXPECT_EQ(take(store.get(), 3, 0, 2), (Ids{5, 6}));
  EXPECT_FALSE(*store->put(1, 1, "again"));
  EXPECT_EQ(store->stats().accepted, 6u);
  // Clamped to the cursor, never backwards, and kept across reopen.
  ASSERT_TRUE(store->prune_consumed(100).ok());
  EXPECT_EQ(store->stats().pruned_through, 3u);
  ASSERT_TRUE(store->prune_consumed(1).ok());
  EXPECT_EQ(store->stats().pruned_through, 3u);
  store.reset();
  store = open_store(dir.path(), 2);
  EXPECT_EQ(store->stats().pruned_through, 3u);
  EXPECT_EQ(store->stats().consumed, 6u);
}

TEST(RolloutStoreTest, ConsumeChecksLikeOneStoreAndIsAllOrNothing) {
  TestDir dir;
  auto store = open_store(dir.path(), 2);
  for (uint64_t id = 1; id <= 3; ++id) put_ok(store.get(), id, 1);
  EXPECT_EQ(store->consume(1, {}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->consume(1, {1, 1}).code(), StatusCode::kInvalidArgument);
  Status unknown = store->consume(1, {1, 99, 2});
  EXPECT_EQ(unknown.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(unknown.message().find("99"), std::string::npos) << unknown;
  EXPECT_EQ(store->stats().logged_through, 0u) << "a refused batch must not be logged";
  ASSERT_TRUE(store->consume(2, {2}).ok());
  Status twice = store->consume(3, {3, 2});
  EXPECT_EQ(twice.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(twice.message().find("consumed by step 2"), std::string::npos) << twice;
  EXPECT_EQ(store->consume(2, {3}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->cursor(), 2u);
  EXPECT_EQ(pending_ids(*store), (Ids{1, 3}));
}

TEST(RolloutStoreTest, ShardCountIsFixedWhenTheDirectoryIsCreated) {
  TestDir dir;
  { auto store = open_store(dir.path(), 2); }
  auto other = RolloutStore::open(dir.path(), with_shards(3));
  EXPECT_EQ(other.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(other.status().message().find("2 shard"), std::string::npos) << other.status();
  EXPECT_EQ(RolloutStore::open(dir.path(), with_shards(0)).status().code(), StatusCode::kInvalidArgument);
  auto store = open_store(dir.path(), 2);
  auto second = RolloutStore::open(dir.path(), with_shards(2));
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable) << second.status();
}

// A buffer directory as written before sharding: one store at DIR with steps 1..3 consumed, step 1
// pruned.
void write_single_store(const std::string& dir) {
  auto legacy = open_shard(dir);
  for (uint64_t id = 1; id <= 8; ++id) ASSERT_TRUE(*legacy->put(id, 1, payload_of(id)));
  ASSERT_TRUE(legacy->consume(1, {1, 2}).ok());
  ASSERT_TRUE(legacy->consume(2, {3, 5}).ok());
  ASSERT_TRUE(legacy->consume(3, {4, 6}).ok());
  ASSERT_TRUE(legacy->prune_consumed(1).ok());
}

void expect_adopted(const std::string& dir) {
  auto store = open_store(dir, 1);
  EXPECT_TRUE(fs::exists(dir + "/shard-0/CURRENT"));
  EXPECT_FALSE(fs::exists(dir + "/CURRENT"));
  EXPECT_FALSE(fs::exists(dir + ".single-store"));
  const RolloutStoreStats s = store->stats();
  EXPECT_EQ(s.cursor, 3u);
  EXPECT_EQ(s.logged_through, 3u);
  EXPECT_EQ(s.pruned_through, 1u);
  EXPECT_EQ(s.accepted, 8u);
  EXPECT_EQ(*store->batch_ids(2), (Ids{3, 5}));
  EXPECT_EQ(*store->batch_ids(3), (Ids{4, 6}));
  EXPECT_FALSE(*store->put(4, 1, "redelivered"));
  // Resume from a checkpoint at step 2: step 3 replays as it was.
  ASSERT_TRUE(store->rewind(2).ok());
  EXPECT_EQ(take(store.get(), 3, 0, 1), (Ids{4, 6}));
  EXPECT_EQ(take(store.get(), 4, 0, 2), (Ids{7, 8}));
}

TEST(RolloutStoreTest, AdoptsSingleStoreDirectoryAsShardZero) {
  TestDir dir;
  write_single_store(dir.path());
  // Two shards cannot take it: refused, and the directory is left as it was.
  auto refused = RolloutStore::open(dir.path(), with_shards(2));
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("buffer.shards = 1"), std::string::npos) << refused.status();
  EXPECT_TRUE(fs::exists(dir.path() + "/CURRENT"));
  expect_adopted(dir.path());
  // It keeps opening as a one-shard buffer, with what the first open did.
  auto store = open_store(dir.path(), 1);
  EXPECT_EQ(store->cursor(), 4u);
  EXPECT_EQ(*store->batch_ids(4), (Ids{7, 8}));
}

TEST(RolloutStoreTest, InterruptedAdoptionIsFinishedByTheNextOpen) {
  TestDir dir;
  write_single_store(dir.path());
  // The first rename happened, then the process stopped.
  fs::rename(dir.path(), dir.path() + ".single-store");
  expect_adopted(dir.path());
}

TEST(RolloutStoreTest, AdoptionStoppedBeforeTheLastRenameIsFinished) {
  TestDir dir;
  write_single_store(dir.path());
  { auto adopted = open_store(dir.path(), 1); }
  // The step log was written and the process stopped before shard 0 moved into place.
  fs::rename(dir.path() + "/shard-0", dir.path() + ".single-store");
  expect_adopted(dir.path());
}

TEST(RolloutStoreTest, MissingShardOrShardWithoutStepLogIsDataLoss) {
  TestDir dir;
  {
    auto store = open_store(dir.path(), 2);
    put_ok(store.get(), 1, 1);
  }
  fs::remove_all(shard_dir(dir, 0));
  auto missing = RolloutStore::open(dir.path(), with_shards(2));
  EXPECT_EQ(missing.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(missing.status().message().find("shard 0"), std::string::npos) << missing.status();
  EXPECT_FALSE(fs::exists(shard_dir(dir, 0))) << "a missing shard must not be recreated empty";

  fs::remove_all(dir.path() + "/steps");
  auto orphan = RolloutStore::open(dir.path(), with_shards(2));
  EXPECT_EQ(orphan.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(orphan.status().message().find("shard 1"), std::string::npos) << orphan.status();
}

TEST(RolloutStoreTest, CorruptIntentIsDataLossNamingTheStep) {
  TestDir dir;
  {
    auto store = open_store(dir.path(), 2);
    put_ok(store.get(), 1, 1);
    ASSERT_TRUE(store->log_intent(1, {1}).ok());
  }
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir.path() + "/steps", &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string key = "s/";
    for (int i = 0; i < 7; ++i) key.push_back('\0');
    key.push_back('\1');
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, "short").ok());
    ASSERT_TRUE(db->Close().ok());
  }
  auto store = open_store(dir.path(), 2);
  auto batch = store->take_batch(1, 0, 1);
  EXPECT_EQ(batch.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(batch.status().message().find("step 1"), std::string::npos) << batch.status();
  EXPECT_EQ(store->cursor(), 0u);
}

TEST(RolloutStoreTest, ForkedChildStoppedAfterIntentIsReplayedByTheParent) {
  TestDir dir;
  const pid_t pid = ::fork();
  ASSERT_NE(pid, -1);
  if (pid == 0) {
    // Child: no gtest assertions; report through the exit code; never close the store.
    ::alarm(30);
    auto opened = RolloutStore::open(dir.path(), with_shards(2));
    if (!opened.ok()) ::_exit(2);
    RolloutStore* store = opened->release();  // deliberately leaked: no Close, no flush
    for (uint64_t id = 1; id <= 6; ++id) {
      auto r = store->put(id, 1, payload_of(id));
      if (!r.ok() || !*r) ::_exit(3);
    }
    auto first = store->take_batch(1, 0, 2);
    if (!first.ok() || !first->has_value()) ::_exit(4);
    if (!store->log_intent(2, {3, 6, 5}).ok()) ::_exit(5);
    ::_exit(0);
  }
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus)) << "child did not exit normally, status " << wstatus;
  ASSERT_EQ(WEXITSTATUS(wstatus), 0);

  auto store = open_store(dir.path(), 2);
  EXPECT_EQ(store->cursor(), 1u);
  EXPECT_EQ(take(store.get(), 1, 0, 2), (Ids{1, 2}));
  EXPECT_EQ(take(store.get(), 2, 0, 2), (Ids{3, 5, 6}));
  EXPECT_EQ(pending_ids(*store), (Ids{4}));
  EXPECT_EQ(store->stats().accepted, 6u);
}

TEST(RolloutStoreTest, ConcurrentPutsAndBatchesKeepCountsExact) {
  TestDir dir;
  auto store = open_store(dir.path(), 3);
  constexpr int kWriters = 4;
  constexpr uint64_t kPerWriter = 50;
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (uint64_t i = 0; i < kPerWriter; ++i) {
        const uint64_t id = static_cast<uint64_t>(w) * 1000 + i;
        auto r = store->put(id, 1, payload_of(id));
        EXPECT_TRUE(r.ok() && *r);
        auto dup = store->put(id, 1, "dup");
        EXPECT_TRUE(dup.ok() && !*dup);
      }
    });
  }
  uint64_t consumed = 0;
  uint64_t step = 0;
  std::thread learner([&] {
    while (consumed < kWriters * kPerWriter / 2) {
      auto batch = store->take_batch(step + 1, 0, 8);
      ASSERT_TRUE(batch.ok()) << batch.status();
      if (!batch->has_value()) {
        std::this_thread::yield();
        continue;
      }
      ++step;
      consumed += (*batch)->size();
    }
  });
  for (auto& t : writers) t.join();
  learner.join();
  const RolloutStoreStats s = store->stats();
  EXPECT_EQ(s.consumed, consumed);
  EXPECT_EQ(s.pending + s.consumed, kWriters * kPerWriter);
  EXPECT_EQ(s.accepted, kWriters * kPerWriter);
  EXPECT_EQ(pending_ids(*store).size(), s.pending);
  EXPECT_EQ(s.cursor, step);
}

}  // namespace
}  // namespace grpo::storage
