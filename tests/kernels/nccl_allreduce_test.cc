// NCCL collectives (kernels/cuda/nccl_allreduce.h): argument checks everywhere; with a CUDA device,
// a one-rank communicator (all-reduce is the identity, broadcast a no-op) and a missing rank that
// must time out instead of hanging; with two or more GPUs, one thread per rank and GPU: exact sums
// of small integers in float, bitwise identical across ranks, broadcast, and a collective that
// one rank skips. Tests that need NCCL and a device skip (GTEST_SKIP) where nccl_available() fails.
#include "kernels/cuda/nccl_allreduce.h"
#include "tests/kernels/device_buffer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cuda/token_logprobs.h"

namespace grpo::kernels {
namespace {

#define SKIP_WITHOUT_NCCL()                                                    \
  do {                                                                         \
    const Status nccl_ = nccl_available();                                     \
    if (!nccl_.ok()) GTEST_SKIP() << "NCCL not usable here: " << nccl_.message(); \
  } while (0)

using test_util::DeviceBuffer;

Status upload(const DeviceBuffer& dst, const void* src) {
  return cuda_copy_to_device(dst.get(), src, dst.bytes());
}
Status download(void* dst, const DeviceBuffer& src) {
  return cuda_copy_to_host(dst, src.get(), src.bytes());
}

// Small integers in float: every partial sum is exact, whatever order NCCL adds them in.
float addend(int rank, size_t i) {
  const size_t k = (i * 7 + static_cast<size_t>(rank) * 13) % 101;
  return static_cast<float>(static_cast<int64_t>(k) - 50);
}

std::string fake_id() { return std::string(nccl_unique_id_bytes(), '\x01'); }

// ---- Everywhere: arguments are checked before NCCL or CUDA is touched ---------------------------

TEST(NcclAllReduceTest, BadArgumentsAreInvalidArgument) {
  EXPECT_EQ(nccl_unique_id_bytes(), 128u);
  struct Bad {
    std::string id;
    int rank, world, device, timeout_ms;
    const char* what;
  };
  const std::vector<Bad> cases = {
      {fake_id(), 2, 2, 0, 1000, "rank == world"},
      {fake_id(), 5, 2, 0, 1000, "rank > world"},
      {fake_id(), -1, 2, 0, 1000, "rank < 0"},
      {fake_id(), 0, 0, 0, 1000, "world 0"},
      {fake_id(), 0, 1, -1, 1000, "device < 0"},
      {std::string(), 0, 1, 0, 1000, "empty id"},
      {std::string(nccl_unique_id_bytes() - 1, '\x01'), 0, 1, 0, 1000, "short id"},
      {std::string(nccl_unique_id_bytes() + 1, '\x01'), 0, 1, 0, 1000, "long id"},
      {fake_id(), 0, 1, 0, 0, "timeout 0"},
  };
  for (const Bad& c : cases) {
    NcclOptions options;
    options.timeout_ms = c.timeout_ms;
    auto comm = NcclAllReduce::create(c.id, c.rank, c.world, c.device, options);
    ASSERT_FALSE(comm.ok()) << c.what;
    EXPECT_EQ(comm.status().code(), StatusCode::kInvalidArgument)
        << c.what << ": " << comm.status();
  }
}

TEST(NcclAllReduceTest, AvailabilityAndVersionNeverAbort) {
  const Status s = nccl_available();
  EXPECT_TRUE(s.ok() || s.code() == StatusCode::kUnavailable) << s;
  if (!s.ok()) {
    EXPECT_FALSE(s.message().empty());
  }
  EXPECT_NE(nccl_version_string(), "unknown");
  auto count = nccl_cuda_device_count();
  EXPECT_TRUE(count.ok() || count.status().code() == StatusCode::kUnavailable) << count.status();
}

// ---- One device ---------------------------------------------------------------------------------

TEST(NcclAllReduceTest, WorldOneIsIdentity) {
  SKIP_WITHOUT_NCCL();
  ASSERT_TRUE(nccl_cuda_set_device(0).ok());
  auto id = nccl_unique_id();
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_EQ(id->size(), nccl_unique_id_bytes());
  auto created = NcclAllReduce::create(*id, 0, 1, 0);
  ASSERT_TRUE(created.ok()) << created.status();
  NcclAllReduce& comm = **created;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.world(), 1);
  EXPECT_EQ(comm.device(), 0);
  EXPECT_TRUE(comm.healthy());

  // Not small integers here: with one rank the bytes must come back untouched, NaN included.
  const size_t n = 4099;
  std::vector<float> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = 0.37f * static_cast<float>(i) - 1000.125f;
  host[5] = -0.0f;
  const uint32_t nan_bits = 0x7fc01234u;
  std::memcpy(&host[7], &nan_bits, sizeof(nan_bits));
  DeviceBuffer buf(static_cast<int64_t>(n * sizeof(float)));
  ASSERT_TRUE(upload(buf, host.data()).ok());

  Status s = comm.all_reduce_sum(buf.floats(), n, nullptr);
  ASSERT_TRUE(s.ok()) << s;
  std::vector<float> back(n);
  ASSERT_TRUE(download(back.data(), buf).ok());
  EXPECT_EQ(std::memcmp(back.data(), host.data(), n * sizeof(float)), 0);

  s = comm.broadcast(buf.get(), n * sizeof(float), 0, nullptr);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(download(back.data(), buf).ok());
  EXPECT_EQ(std::memcmp(back.data(), host.data(), n * sizeof(float)), 0);

  // Empty calls do nothing.
  EXPECT_TRUE(comm.all_reduce_sum(nullptr, 0, nullptr).ok());
  EXPECT_TRUE(comm.broadcast(nullptr, 0, 0, nullptr).ok());

  // Argument errors are found on the host and leave the communicator usable.
  EXPECT_EQ(comm.broadcast(buf.get(), 4, 1, nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(comm.broadcast(buf.get(), 4, -1, nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(comm.all_reduce_sum(nullptr, 3, nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(comm.all_reduce_sum(host.data(), 3, nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(comm.healthy());
  s = comm.all_reduce_sum(buf.floats(), n, nullptr);
  EXPECT_TRUE(s.ok()) << s;
}

TEST(NcclAllReduceTest, BadDeviceIsInvalidArgument) {
  SKIP_WITHOUT_NCCL();
  auto count = nccl_cuda_device_count();
  ASSERT_TRUE(count.ok()) << count.status();
  auto created = NcclAllReduce::create(fake_id(), 0, 1, *count);
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kInvalidArgument) << created.status();
}

TEST(NcclAllReduceTest, MissingRankTimesOutInsteadOfHanging) {
  SKIP_WITHOUT_NCCL();
  ASSERT_TRUE(nccl_cuda_set_device(0).ok());
  auto id = nccl_unique_id();
  ASSERT_TRUE(id.ok()) << id.status();
  NcclOptions options;
  options.timeout_ms = 3000;
  auto created = NcclAllReduce::create(*id, 0, 2, 0, options);  // rank 1 never comes
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kDeadlineExceeded) << created.status();
}

// ---- Several GPUs: one thread per rank, each on its own device ----------------------------------

struct RankResult {
  Status status;
  std::vector<float> sum;
  std::vector<uint8_t> bcast;
};

TEST(NcclAllReduceTest, WorldOfAllGpusSumsExactlyAndIdentically) {
  SKIP_WITHOUT_NCCL();
  auto count = nccl_cuda_device_count();
  ASSERT_TRUE(count.ok()) << count.status();
  const int world = *count;
  if (world < 2) GTEST_SKIP() << "needs >= 2 GPUs, " << world << " visible";
  auto id = nccl_unique_id();
  ASSERT_TRUE(id.ok()) << id.status();

  // Odd sizes, small and large, so segments and chunks do not divide evenly.
  const std::vector<size_t> sizes = {1, 3, 1000, (size_t{1} << 20) + 17};
  const size_t bcast_bytes = 12345;
  const int root = world - 1;
  std::vector<RankResult> results(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      RankResult& out = results[static_cast<size_t>(r)];
      auto run = [&]() -> Status {
        GRPO_RETURN_IF_ERROR(nccl_cuda_set_device(r));
        NcclOptions options;
        options.timeout_ms = 120000;
        GRPO_ASSIGN_OR_RETURN(auto comm, NcclAllReduce::create(*id, r, world, r, options));
        if (comm->rank() != r || comm->world() != world) return internal_error("rank/world");
        for (size_t n : sizes) {
          std::vector<float> host(n);
          for (size_t i = 0; i < n; ++i) host[i] = addend(r, i);
          DeviceBuffer buf(static_cast<int64_t>(n * sizeof(float)));
          GRPO_RETURN_IF_ERROR(upload(buf, host.data()));
          GRPO_RETURN_IF_ERROR(comm->all_reduce_sum(buf.floats(), n, nullptr));
          GRPO_RETURN_IF_ERROR(download(host.data(), buf));
          out.sum.insert(out.sum.end(), host.begin(), host.end());
        }
        std::vector<uint8_t> bytes(bcast_bytes);
        for (size_t i = 0; i < bcast_bytes; ++i)
          bytes[i] = static_cast<uint8_t>(r == root ? (i * 31 + 7) & 0xff : 0xee);
        DeviceBuffer bbuf(static_cast<int64_t>(bcast_bytes));
        GRPO_RETURN_IF_ERROR(upload(bbuf, bytes.data()));
        GRPO_RETURN_IF_ERROR(comm->broadcast(bbuf.get(), bcast_bytes, root, nullptr));
        GRPO_RETURN_IF_ERROR(download(bytes.data(), bbuf));
        out.bcast = bytes;
        return ok_status();
      };
      out.status = run();
    });
  }
  for (auto& t : threads) t.join();

  for (int r = 0; r < world; ++r)
    ASSERT_TRUE(results[static_cast<size_t>(r)].status.ok())
        << "rank " << r << ": " << results[static_cast<size_t>(r)].status;
  // Exact sums.
  size_t offset = 0;
  for (size_t n : sizes) {
    for (size_t i = 0; i < n; ++i) {
      float expected = 0.0f;
      for (int r = 0; r < world; ++r) expected += addend(r, i);
      ASSERT_EQ(results[0].sum[offset + i], expected) << "n=" << n << " i=" << i;
    }
    offset += n;
  }
  // Bitwise identical on every rank; the broadcast carries the root's bytes.
  for (int r = 1; r < world; ++r) {
    const RankResult& a = results[0];
    const RankResult& b = results[static_cast<size_t>(r)];
    ASSERT_EQ(a.sum.size(), b.sum.size());
    EXPECT_EQ(std::memcmp(a.sum.data(), b.sum.data(), a.sum.size() * sizeof(float)), 0)
        << "rank " << r;
  }
  for (int r = 0; r < world; ++r) {
    const auto& got = results[static_cast<size_t>(r)].bcast;
    ASSERT_EQ(got.size(), bcast_bytes);
    for (size_t i = 0; i < bcast_bytes; ++i)
      ASSERT_EQ(got[i], static_cast<uint8_t>((i * 31 + 7) & 0xff)) << "rank " << r << " i=" << i;
  }
}

TEST(NcclAllReduceTest, SkippedCollectiveTimesOutAndAborts) {
  SKIP_WITHOUT_NCCL();
  auto count = nccl_cuda_device_count();
  ASSERT_TRUE(count.ok()) << count.status();
  if (*count < 2) GTEST_SKIP() << "needs >= 2 GPUs, " << *count << " visible";
  auto id = nccl_unique_id();
  ASSERT_TRUE(id.ok()) << id.status();

  // Rank 0 calls all_reduce_sum, rank 1 never does: rank 0 must give up after its timeout.
  Status rank0_call, rank0_next;
  bool rank0_healthy = true;
  Status created[2];
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      Status s = nccl_cuda_set_device(r);
      if (!s.ok()) {
        created[r] = s;
        return;
      }
      NcclOptions options;
      options.timeout_ms = 3000;
      auto comm = NcclAllReduce::create(*id, r, 2, r, options);
      created[r] = comm.status();
      if (!comm.ok()) return;
      if (r == 0) {
        DeviceBuffer buf(1024 * sizeof(float));
        rank0_call = (*comm)->all_reduce_sum(buf.floats(), 1024, nullptr);
        rank0_healthy = (*comm)->healthy();
        rank0_next = (*comm)->all_reduce_sum(buf.floats(), 1024, nullptr);
      }
      // Both instances are destroyed here; rank 1's finalisation gives up after its timeout too.
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(created[0].ok()) << created[0];
  ASSERT_TRUE(created[1].ok()) << created[1];
  EXPECT_EQ(rank0_call.code(), StatusCode::kDeadlineExceeded) << rank0_call;
  EXPECT_NE(rank0_call.message().find("rank 0 of 2"), std::string::npos) << rank0_call;
  EXPECT_FALSE(rank0_healthy);
  EXPECT_EQ(rank0_next.code(), StatusCode::kFailedPrecondition) << rank0_next;
}

}  // namespace
}  // namespace grpo::kernels
