// The NCCL weight channel on real GPUs (actors/nccl_weights.h over kernels/cuda's
// NcclHostBroadcast and NcclAllReduce): groups formed through the coordinator's registry, host
// blob -> device staging -> ncclBcast -> host, every chunk checked against the manifest.
// One GPU: a one-rank group (the root checks its own device copy). Two or more GPUs: the root and
// one receiver per further GPU, one thread each. Skips (GTEST_SKIP) where kernels::nccl_available()
// fails (no driver or device) and the multi-GPU cases where fewer than 2 GPUs are visible.
#include "actors/nccl_weights.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cluster/codec.h"
#include "cluster/nccl_group.h"
#include "kernels/cuda/nccl_allreduce.h"
#include "kernels/cuda/nccl_host_broadcast.h"

namespace grpo::actors {
namespace {

#define SKIP_WITHOUT_NCCL()                                                          \
  do {                                                                               \
    const Status nccl_ = kernels::nccl_available();                                  \
    if (!nccl_.ok()) GTEST_SKIP() << "NCCL not usable here: " << nccl_.message();    \
  } while (0)

std::string random_blob(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

cluster::WeightManifest manifest_of(uint64_t version, const std::string& blob, uint32_t chunk_bytes) {
  cluster::WeightManifest m;
  (void)cluster::make_chunks(version, blob, chunk_bytes, &m);
  return m;
}

// The groups of `world` members, as the coordinator hands them out: rank 0 is "learner.0".
std::vector<cluster::NcclGroup> form_groups(int world, uint64_t epoch, uint64_t piece_bytes) {
  auto id = make_nccl_unique_id();
  EXPECT_TRUE(id.ok()) << id.status();
  cluster::NcclGroupRegistry coordinator;
  cluster::NcclGroupRequest reg;
  reg.epoch = epoch;
  reg.member = "learner.0";
  reg.unique_id = id.ok() ? *id : std::string();
  reg.members.push_back(reg.member);
  for (int r = 1; r < world; ++r) reg.members.push_back(cluster::nccl_member_name("generator", r - 1));
  reg.piece_bytes = piece_bytes;
  std::vector<cluster::NcclGroup> groups;
  groups.push_back(coordinator.handle(reg));
  for (int r = 1; r < world; ++r) {
    cluster::NcclGroupRequest q;
    q.epoch = epoch;
    q.member = reg.members[r];
    groups.push_back(coordinator.handle(q));
  }
  for (int r = 0; r < world; ++r) EXPECT_EQ(groups[r].rank, r) << groups[r].error;
  return groups;
}

TEST(NcclWeightsGpuTest, UniqueIdSizeMatchesTheWire) {
  // Needs the NCCL library only, no device.
  EXPECT_EQ(kernels::nccl_unique_id_bytes(), size_t{cluster::kNcclUniqueIdBytes});
}

TEST(NcclWeightsGpuTest, JoinRefusesAGroupWithoutARank) {
  cluster::NcclGroup none;
  none.error = "no NCCL group for epoch 3 yet";
  auto c = join_nccl_weight_channel(none, {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("no NCCL group for epoch 3 yet"), std::string::npos) << c.status();
}

// ---- One GPU ------------------------------------------------------------------------------------

TEST(NcclWeightsGpuTest, OneRankCopiesInAndOutAndChecksEveryChunk) {
  SKIP_WITHOUT_NCCL();
  ASSERT_TRUE(kernels::nccl_cuda_set_device(0).ok());
  const uint64_t piece = (uint64_t{3} << 20) + 4096;
  auto groups = form_groups(1, 1, piece);
  NcclJoinOptions options;
  options.device = 0;
  options.timeout_ms = 60000;
  options.verify_root = true;
  auto joined = join_nccl_weight_channel(groups[0], options);
  ASSERT_TRUE(joined.ok()) << joined.status();
  cluster::NcclWeightChannel& ch = **joined;
  EXPECT_EQ(ch.world(), 1);
  EXPECT_EQ(ch.capacity(), piece);

  const std::string blob = random_blob((size_t{10} << 20) + 123, 1);  // 11 chunks of 1 MiB
  const cluster::WeightManifest m = manifest_of(1, blob, 1 << 20);
  Status s = ch.send(m, blob);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(ch.stats().pieces, 4u);  // 3 chunks per piece
  EXPECT_EQ(ch.stats().versions_sent, 1u);

  // A checksum the bytes do not have is caught on the copy back from the device.
  cluster::WeightManifest wrong = m;
  wrong.chunk_checksums[5] ^= 1;
  s = ch.send(wrong, blob);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("1 of 11 chunks changed on the root's device: 5"), std::string::npos) << s;
  EXPECT_TRUE(ch.healthy());

  // A chunk larger than the staging buffer is refused before any piece moves.
  s = ch.send(manifest_of(2, blob, 4 << 20), blob);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(ch.healthy());
}

TEST(NcclWeightsGpuTest, HostBroadcastChecksArgumentsOnTheHost) {
  SKIP_WITHOUT_NCCL();
  ASSERT_TRUE(kernels::nccl_cuda_set_device(0).ok());
  auto id = kernels::nccl_unique_id();
  ASSERT_TRUE(id.ok()) << id.status();
  kernels::NcclOptions o;
  o.timeout_ms = 60000;
  auto comm = kernels::NcclAllReduce::create(*id, 0, 1, 0, o);
  ASSERT_TRUE(comm.ok()) << comm.status();
  EXPECT_EQ(kernels::NcclHostBroadcast::create(nullptr, 1024).status().code(), StatusCode::kInvalidArgument);
  auto hb = kernels::NcclHostBroadcast::create(std::move(comm).value(), 4096);
  ASSERT_TRUE(hb.ok()) << hb.status();
  std::string in = random_blob(4096, 2), out(4096, '\0');
  EXPECT_EQ((*hb)->broadcast(in.data(), out.data(), 4097, 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*hb)->broadcast(in.data(), out.data(), 16, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*hb)->broadcast(nullptr, out.data(), 16, 0).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE((*hb)->broadcast(nullptr, nullptr, 0, 0).ok());
  ASSERT_TRUE((*hb)->healthy());
  Status s = (*hb)->broadcast(in.data(), out.data(), 4096, 0);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(out, in);
}

// ---- Two or more GPUs ---------------------------------------------------------------------------

struct RankOutcome {
  std::vector<Status> status;  // one per version
  std::vector<std::string> blobs;
};

TEST(NcclWeightsGpuTest, EveryGpuReceivesTheVerifiedVersion) {
  SKIP_WITHOUT_NCCL();
  auto count = kernels::nccl_cuda_device_count();
  ASSERT_TRUE(count.ok()) << count.status();
  const int world = *count;
  if (world < 2) GTEST_SKIP() << "needs >= 2 GPUs, " << world << " visible";
  const uint64_t piece = uint64_t{4} << 20;
  auto groups = form_groups(world, 7, piece);

  // Version 7 and 8 on the same channels; then version 9, which the last rank expects as 8 (it
  // missed the manifest): it takes part but refuses the bytes, the others take them.
  std::vector<std::string> blobs = {random_blob((size_t{9} << 20) + 5, 7), random_blob(size_t{3} << 20, 8),
                                    random_blob(1000003, 9)};
  std::vector<cluster::WeightManifest> manifests = {manifest_of(7, blobs[0], 1 << 20),
                                                    manifest_of(8, blobs[1], 1 << 20),
                                                    manifest_of(9, blobs[2], 65536)};
  std::vector<RankOutcome> out(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      NcclJoinOptions options;
      options.device = r;
      options.timeout_ms = 120000;
      if (!kernels::nccl_cuda_set_device(r).ok()) return;
      auto joined = join_nccl_weight_channel(groups[r], options);
      if (!joined.ok()) {
        out[r].status.push_back(joined.status());
        return;
      }
      cluster::NcclWeightChannel& ch = **joined;
      for (size_t v = 0; v < blobs.size(); ++v) {
        if (r == 0) {
          out[r].status.push_back(ch.send(manifests[v], blobs[v]));
          out[r].blobs.emplace_back();
        } else {
          const bool stale = v == 2 && r == world - 1;
          std::string got;
          out[r].status.push_back(ch.receive(stale ? manifests[1] : manifests[v], &got));
          out[r].blobs.push_back(std::move(got));
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) {
    ASSERT_EQ(out[r].status.size(), blobs.size()) << "rank " << r << ": " << (out[r].status.empty() ? Status() : out[r].status[0]);
    for (size_t v = 0; v < blobs.size(); ++v) {
      const bool stale = v == 2 && r == world - 1;
      if (stale) {
        EXPECT_EQ(out[r].status[v].code(), StatusCode::kFailedPrecondition) << out[r].status[v];
        continue;
      }
      ASSERT_TRUE(out[r].status[v].ok()) << "rank " << r << " v" << manifests[v].version << ": " << out[r].status[v];
      if (r > 0) {
        EXPECT_TRUE(out[r].blobs[v] == blobs[v]) << "rank " << r << " v" << manifests[v].version;
      }
    }
  }
}

TEST(NcclWeightsGpuTest, AMissingReceiverTimesTheRootOut) {
  SKIP_WITHOUT_NCCL();
  auto count = kernels::nccl_cuda_device_count();
  ASSERT_TRUE(count.ok()) << count.status();
  if (*count < 2) GTEST_SKIP() << "needs >= 2 GPUs, " << *count << " visible";
  auto groups = form_groups(2, 1, 1 << 20);
  Status root_status, other_status;
  std::atomic<bool> root_done{false};
  std::thread other([&] {
    NcclJoinOptions options;
    options.device = 1;
    options.timeout_ms = 5000;
    (void)kernels::nccl_cuda_set_device(1);
    auto joined = join_nccl_weight_channel(groups[1], options);
    other_status = joined.status();
    // Joined, alive, and never receives: the root's broadcast has no partner.
    while (!root_done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  NcclJoinOptions options;
  options.device = 0;
  options.timeout_ms = 5000;
  ASSERT_TRUE(kernels::nccl_cuda_set_device(0).ok());
  auto joined = join_nccl_weight_channel(groups[0], options);
  if (joined.ok()) {
    const std::string blob = random_blob(3 << 20, 3);
    root_status = (*joined)->send(manifest_of(1, blob, 1 << 20), blob);
  }
  root_done = true;
  other.join();
  ASSERT_TRUE(joined.ok()) << joined.status();
  ASSERT_TRUE(other_status.ok()) << other_status;
  EXPECT_EQ(root_status.code(), StatusCode::kDeadlineExceeded) << root_status;
  EXPECT_FALSE((*joined)->healthy());
}

}  // namespace
}  // namespace grpo::actors
