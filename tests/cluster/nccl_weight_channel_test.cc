// The NCCL weight channel's protocol (cluster/nccl_weight_channel.h) without a GPU: a fake device
// broadcast moves the bytes between threads of this process and checks, like NCCL would by hanging
// or failing, that every rank makes the same collective calls. Covers the piece plan, per-chunk
// verification, corrupt chunks, a receiver with another manifest, the root's aborts, device
// failures and a receiver that cannot follow.
#include "cluster/nccl_weight_channel.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "cluster/codec.h"

namespace grpo::cluster {
namespace {

// `world` ranks of an in-process broadcast group. Call k of every rank meets call k of the others:
// the root's bytes are copied to the others' recv. Calls that disagree (bytes, root) fail on
// every rank; a rank missing for timeout_ms fails the others with DeadlineExceeded. After a
// failure the group is broken, as an aborted NCCL communicator is.
class FakeGroup {
 public:
  FakeGroup(int world, uint64_t capacity, int timeout_ms = 2000)
      : world_(world), capacity_(world, capacity), timeout_ms_(timeout_ms), calls_made_(world, 0) {}

  void set_capacity(int rank, uint64_t capacity) { capacity_[rank] = capacity; }
  // Flips byte `offset` of what rank `rank` receives (or, on the root, copies back) in call `call`.
  void corrupt(int rank, int call, uint64_t offset) { corrupt_[{rank, call}].insert(offset); }
  // Call `call` fails on every rank (a lost peer).
  void fail_call(int call) { fail_call_ = call; }
  int calls(int rank) const {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_made_[rank];
  }

  std::unique_ptr<DeviceBroadcast> rank(int r) { return std::make_unique<Rank>(this, r); }

 private:
  struct Call {
    uint64_t bytes = 0;
    int root = -1;
    bool disagree = false;
    std::string data;
    int arrived = 0;
    int departed = 0;
  };

  class Rank final : public DeviceBroadcast {
   public:
    Rank(FakeGroup* g, int r) : g_(g), r_(r) {}
    int rank() const override { return r_; }
    int world() const override { return g_->world_; }
    uint64_t capacity() const override { return g_->capacity_[r_]; }
    bool healthy() const override { return healthy_; }
    Status broadcast(const char* send, char* recv, uint64_t bytes, int root) override {
      if (!healthy_) return failed_precondition("fake: broken");
      if (bytes > capacity()) return invalid_argument("fake: bytes beyond capacity");
      Status s = g_->meet(r_, send, recv, bytes, root);
      if (!s.ok()) healthy_ = false;
      return s;
    }

   private:
    FakeGroup* g_;
    int r_;
    bool healthy_ = true;
  };

  Status meet(int rank, const char* send, char* recv, uint64_t bytes, int root) {
    std::unique_lock<std::mutex> lock(mu_);
    const int k = calls_made_[rank]++;
    Call& c = calls_[k];
    if (c.arrived == 0) {
      c.bytes = bytes;
      c.root = root;
    } else if (c.bytes != bytes || c.root != root) {
      c.disagree = true;
    }
    if (rank == root) c.data.assign(send, bytes);
    ++c.arrived;
    cv_.notify_all();
    const bool all = cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms_), [&] { return c.arrived == world_; });
    Status result;
    if (!all) {
      result = deadline_exceeded("fake: call " + std::to_string(k) + ": " + std::to_string(world_ - c.arrived) +
                                 " rank(s) never came");
    } else if (c.disagree) {
      result = failed_precondition("fake: call " + std::to_string(k) + ": ranks disagree on bytes or root");
    } else if (fail_call_ == k) {
      result = unavailable("fake: call " + std::to_string(k) + " failed (peer lost)");
    } else if (recv != nullptr && bytes > 0) {
      std::memcpy(recv, c.data.data(), bytes);
      for (uint64_t off : corrupt_[{rank, k}]) recv[off] ^= 0x5a;
    }
    if (++c.departed == world_) calls_.erase(k);
    return result;
  }

  const int world_;
  std::vector<uint64_t> capacity_;
  const int timeout_ms_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> calls_made_;
  std::map<int, Call> calls_;
  std::map<std::pair<int, int>, std::set<uint64_t>> corrupt_;
  int fail_call_ = -1;
};

std::string random_blob(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

WeightManifest manifest_of(uint64_t version, const std::string& blob, uint32_t chunk_bytes) {
  WeightManifest m;
  (void)make_chunks(version, blob, chunk_bytes, &m);
  return m;
}

std::unique_ptr<NcclWeightChannel> channel(FakeGroup& g, int r, bool verify_root = false) {
  NcclWeightChannelOptions o;
  o.verify_root = verify_root;
  auto c = NcclWeightChannel::create(g.rank(r), o);
  EXPECT_TRUE(c.ok()) << c.status();
  return std::move(c).value();
}

struct Outcome {
  Status status;
  std::string blob;
  std::vector<uint32_t> bad;
  NcclWeightChannelStats stats;
};

// Runs one version: rank 0 sends `blob` with `root_manifest`, rank r > 0 receives with
// manifests[r] (root_manifest when absent); one thread per rank.
std::vector<Outcome> run_version(FakeGroup& g, int world, const WeightManifest& root_manifest, const std::string& blob,
                                 std::map<int, WeightManifest> manifests = {}, bool verify_root = false) {
  std::vector<std::unique_ptr<NcclWeightChannel>> channels;
  for (int r = 0; r < world; ++r) channels.push_back(channel(g, r, verify_root));
  std::vector<Outcome> out(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      if (r == 0) {
        out[r].status = channels[r]->send(root_manifest, blob);
      } else {
        const WeightManifest& m = manifests.count(r) ? manifests[r] : root_manifest;
        out[r].status = channels[r]->receive(m, &out[r].blob, &out[r].bad);
      }
      out[r].stats = channels[r]->stats();
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

TEST(NcclPiecePlanTest, WholeChunksUpToTheCapacity) {
  const std::string blob = random_blob(10500, 1);
  WeightManifest m = manifest_of(3, blob, 1000);  // 11 chunks, the last of 500 bytes
  auto plan = plan_nccl_pieces(m, 3500);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->num_chunks, 11u);
  EXPECT_EQ(plan->chunks_per_piece, 3u);
  EXPECT_EQ(plan->piece_bytes(), 3000u);
  EXPECT_EQ(plan->num_pieces, 4u);
  EXPECT_EQ(plan->piece_offset(3), 9000u);
  EXPECT_EQ(plan->piece_size(3), 1500u);
  EXPECT_EQ(plan->first_chunk(3), 9u);
  uint64_t sum = 0;
  for (uint32_t i = 0; i < plan->num_pieces; ++i) sum += plan->piece_size(i);
  EXPECT_EQ(sum, blob.size());

  // A capacity beyond the blob: one piece.
  auto one = plan_nccl_pieces(m, 1 << 20);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->num_pieces, 1u);
  EXPECT_EQ(one->chunks_per_piece, 11u);
  EXPECT_EQ(one->piece_size(0), 10500u);

  // Empty blob: no pieces.
  auto none = plan_nccl_pieces(manifest_of(4, "", 1000), 4096);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->num_pieces, 0u);

  EXPECT_EQ(plan_nccl_pieces(m, 999).status().code(), StatusCode::kInvalidArgument);
  WeightManifest wrong = m;
  wrong.chunk_checksums.pop_back();
  EXPECT_NE(plan_nccl_pieces(wrong, 4096).status().message().find("10 chunk checksums"), std::string::npos);
  wrong = m;
  wrong.chunk_bytes = 0;
  EXPECT_EQ(plan_nccl_pieces(wrong, 4096).status().code(), StatusCode::kInvalidArgument);
}

TEST(NcclPiecePlanTest, VerifyFindsEachCorruptChunk) {
  const std::string blob = random_blob(10500, 2);
  WeightManifest m = manifest_of(3, blob, 1000);
  auto plan = plan_nccl_pieces(m, 4000).value();  // 4 chunks per piece: pieces of 4, 4, 3 chunks
  std::vector<uint32_t> bad;
  for (uint32_t i = 0; i < plan.num_pieces; ++i)
    EXPECT_EQ(verify_nccl_piece(m, plan, i, std::string_view(blob).substr(plan.piece_offset(i), plan.piece_size(i)), &bad), 0u);
  EXPECT_TRUE(bad.empty());
  std::string piece = blob.substr(plan.piece_offset(2), plan.piece_size(2));  // chunks 8, 9, 10
  piece[0] ^= 1;       // chunk 8
  piece.back() ^= 1;   // chunk 10 (the short one)
  EXPECT_EQ(verify_nccl_piece(m, plan, 2, piece, &bad), 2u);
  EXPECT_EQ(bad, (std::vector<uint32_t>{8, 10}));
}

TEST(NcclWeightChannelTest, CreateChecksItsArguments) {
  EXPECT_EQ(NcclWeightChannel::create(nullptr).status().code(), StatusCode::kInvalidArgument);
  FakeGroup tiny(1, kNcclWeightHeaderBytes - 1);
  EXPECT_EQ(NcclWeightChannel::create(tiny.rank(0)).status().code(), StatusCode::kInvalidArgument);
  FakeGroup g(2, 4096);
  NcclWeightChannelOptions o;
  o.root = 2;
  EXPECT_EQ(NcclWeightChannel::create(g.rank(0), o).status().code(), StatusCode::kInvalidArgument);

  // The root does not receive and the others do not send; neither makes a collective call.
  auto root = channel(g, 0);
  auto other = channel(g, 1);
  std::string blob;
  const WeightManifest m = manifest_of(1, "abc", 1024);
  EXPECT_EQ(root->receive(m, &blob).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(other->send(m, "abc").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(g.calls(0) + g.calls(1), 0);
}

TEST(NcclWeightChannelTest, EveryReceiverGetsTheVerifiedBlob) {
  FakeGroup g(4, 4096);
  g.set_capacity(2, 1 << 20);  // a larger staging buffer follows the root's pieces
  const std::string blob = random_blob(50000, 3);
  const WeightManifest m = manifest_of(7, blob, 1000);  // 50 chunks, 4 per piece: 13 pieces
  auto out = run_version(g, 4, m, blob);
  ASSERT_TRUE(out[0].status.ok()) << out[0].status;
  EXPECT_EQ(out[0].stats.versions_sent, 1u);
  EXPECT_EQ(out[0].stats.pieces, 13u);
  for (int r = 1; r < 4; ++r) {
    ASSERT_TRUE(out[r].status.ok()) << r << ": " << out[r].status;
    EXPECT_EQ(out[r].blob, blob) << r;
    EXPECT_TRUE(out[r].bad.empty());
    EXPECT_EQ(out[r].stats.versions_received, 1u);
    EXPECT_EQ(out[r].stats.bytes, blob.size());
    EXPECT_EQ(out[r].stats.pieces, 13u);
  }
  EXPECT_EQ(g.calls(0), 14);  // the header and 13 pieces
}

TEST(NcclWeightChannelTest, OneRankChecksItsOwnCopy) {
  FakeGroup g(1, 1 << 16);
  const std::string blob = random_blob(100000, 4);
  const WeightManifest m = manifest_of(2, blob, 4096);
  auto root = channel(g, 0, /*verify_root=*/true);
  ASSERT_TRUE(root->send(m, blob).ok());
  EXPECT_EQ(root->stats().pieces, 2u);  // 16 chunks per 64 KiB piece: 25 chunks in 2 pieces
  // A byte changed on the way back is caught.
  g.corrupt(0, 4, 5000);  // call 4: the second version's first piece (calls 0..2 were the first)
  Status s = root->send(m, blob);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("1 of 25 chunks changed on the root's device: 1"), std::string::npos) << s;
}

TEST(NcclWeightChannelTest, EmptyVersionIsOnlyAHeader) {
  FakeGroup g(2, 4096);
  const WeightManifest m = manifest_of(1, "", 1024);
  auto out = run_version(g, 2, m, "");
  ASSERT_TRUE(out[0].status.ok()) << out[0].status;
  ASSERT_TRUE(out[1].status.ok()) << out[1].status;
  EXPECT_TRUE(out[1].blob.empty());
  EXPECT_EQ(g.calls(1), 1);
}

TEST(NcclWeightChannelTest, CorruptChunksAreListedAndTheOthersCarryOn) {
  FakeGroup g(3, 4096);
  const std::string blob = random_blob(20000, 5);
  const WeightManifest m = manifest_of(9, blob, 1000);  // 20 chunks, 4 per piece
  g.corrupt(1, 2, 10);    // call 2 = piece 1: chunk 4
  g.corrupt(1, 2, 3999);  // chunk 7
  g.corrupt(1, 5, 0);     // call 5 = piece 4: chunk 16
  auto out = run_version(g, 3, m, blob);
  EXPECT_TRUE(out[0].status.ok()) << out[0].status;
  EXPECT_TRUE(out[2].status.ok()) << out[2].status;
  EXPECT_EQ(out[2].blob, blob);
  EXPECT_EQ(out[1].status.code(), StatusCode::kDataLoss) << out[1].status;
  EXPECT_NE(out[1].status.message().find("3 of 20 chunks failed their checksum: 4, 7, 16"), std::string::npos)
      << out[1].status;
  EXPECT_EQ(out[1].bad, (std::vector<uint32_t>{4, 7, 16}));
  EXPECT_EQ(out[1].stats.corrupt_chunks, 3u);
  EXPECT_EQ(out[1].stats.versions_received, 0u);
  EXPECT_EQ(g.calls(1), 6);  // it still took every piece
}

TEST(NcclWeightChannelTest, AReceiverWithAnotherManifestTakesPartThenFails) {
  FakeGroup g(3, 4096);
  const std::string blob = random_blob(9000, 6);
  const WeightManifest m = manifest_of(5, blob, 1000);
  std::map<int, WeightManifest> manifests;
  manifests[1] = manifest_of(4, blob, 1000);                    // an older version
  manifests[2] = manifest_of(5, random_blob(9000, 7), 1000);    // same sizes, other bytes
  auto out = run_version(g, 3, m, blob, manifests);
  EXPECT_TRUE(out[0].status.ok()) << out[0].status;
  EXPECT_EQ(out[1].status.code(), StatusCode::kFailedPrecondition) << out[1].status;
  EXPECT_NE(out[1].status.message().find("version 5 (the root's) vs 4"), std::string::npos) << out[1].status;
  EXPECT_EQ(out[2].status.code(), StatusCode::kFailedPrecondition) << out[2].status;
  EXPECT_NE(out[2].status.message().find("the chunk checksums differ"), std::string::npos) << out[2].status;
  EXPECT_EQ(out[1].stats.mismatched, 1u);
  EXPECT_EQ(g.calls(1), g.calls(0));
  EXPECT_EQ(g.calls(2), g.calls(0));
}

TEST(NcclWeightChannelTest, TheRootAbortsAVersionItCannotSend) {
  FakeGroup g(2, 4096);
  const std::string blob = random_blob(9000, 8);
  // The blob does not match its manifest.
  auto out = run_version(g, 2, manifest_of(5, blob, 1000), blob.substr(1));
  EXPECT_EQ(out[0].status.code(), StatusCode::kInvalidArgument) << out[0].status;
  EXPECT_NE(out[0].status.message().find("blob of 8999 bytes, manifest says 9000"), std::string::npos);
  EXPECT_EQ(out[1].status.code(), StatusCode::kUnavailable) << out[1].status;
  EXPECT_NE(out[1].status.message().find("the root aborted version 5"), std::string::npos);
  EXPECT_EQ(out[0].stats.aborted, 1u);
  EXPECT_EQ(out[1].stats.aborted, 1u);
  // A chunk larger than the staging buffer.
  FakeGroup g2(2, 4096);
  auto big = run_version(g2, 2, manifest_of(6, blob, 8192), blob);
  EXPECT_NE(big[0].status.message().find("exceeds the device staging buffer of 4096 bytes"), std::string::npos)
      << big[0].status;
  EXPECT_EQ(big[1].status.code(), StatusCode::kUnavailable) << big[1].status;
  EXPECT_EQ(g2.calls(0), 1);
  EXPECT_EQ(g2.calls(1), 1);
}

TEST(NcclWeightChannelTest, ADeviceFailureIsReturnedAndBreaksTheChannel) {
  FakeGroup g(3, 4096);
  const std::string blob = random_blob(20000, 9);
  const WeightManifest m = manifest_of(2, blob, 1000);
  g.fail_call(3);
  std::vector<std::unique_ptr<NcclWeightChannel>> ch;
  for (int r = 0; r < 3; ++r) ch.push_back(channel(g, r));
  std::vector<Status> st(3);
  std::vector<std::thread> threads;
  std::vector<std::string> blobs(3);
  for (int r = 0; r < 3; ++r)
    threads.emplace_back([&, r] { st[r] = r == 0 ? ch[r]->send(m, blob) : ch[r]->receive(m, &blobs[r]); });
  for (auto& t : threads) t.join();
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(st[r].code(), StatusCode::kUnavailable) << r << ": " << st[r];
    EXPECT_NE(st[r].message().find("piece 2 of 5"), std::string::npos) << st[r];
    EXPECT_FALSE(ch[r]->healthy());
    EXPECT_EQ(ch[r]->stats().failures, 1u);
  }
  // A broken channel fails at once.
  EXPECT_EQ(ch[0]->send(m, blob).code(), StatusCode::kFailedPrecondition);
}

TEST(NcclWeightChannelTest, AReceiverThatCannotFollowFailsAndTheOthersTimeOut) {
  FakeGroup g(2, 4096, /*timeout_ms=*/200);
  g.set_capacity(1, 2048);  // smaller than the root's pieces of 4 chunks
  const std::string blob = random_blob(9000, 10);
  auto out = run_version(g, 2, manifest_of(5, blob, 1000), blob);
  EXPECT_EQ(out[1].status.code(), StatusCode::kFailedPrecondition) << out[1].status;
  EXPECT_NE(out[1].status.message().find("cannot follow the root's pieces of 4000 bytes"), std::string::npos)
      << out[1].status;
  EXPECT_EQ(out[0].status.code(), StatusCode::kDeadlineExceeded) << out[0].status;
}

TEST(NcclWeightChannelTest, ConsecutiveVersionsReuseTheReceiversBlob) {
  FakeGroup g(2, 8192);
  auto root = channel(g, 0);
  auto recv = channel(g, 1);
  std::string got;
  for (uint64_t v = 1; v <= 3; ++v) {
    const std::string blob = random_blob(30000 - v * 1000, 20 + v);
    const WeightManifest m = manifest_of(v, blob, 2048);
    Status rs, ss;
    std::thread t([&] { ss = root->send(m, blob); });
    rs = recv->receive(m, &got);
    t.join();
    ASSERT_TRUE(ss.ok()) << ss;
    ASSERT_TRUE(rs.ok()) << rs;
    EXPECT_EQ(got, blob);
  }
  EXPECT_EQ(recv->stats().versions_received, 3u);
  EXPECT_EQ(root->stats().versions_sent, 3u);
}

}  // namespace
}  // namespace grpo::cluster
