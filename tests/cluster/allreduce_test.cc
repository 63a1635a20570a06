// Tests of cluster/allreduce.h: real ZeroMQ sockets, one thread per rank.
//
// Endpoints: inproc:// names made unique per test (all ranks share one Transport); tcp on
// 127.0.0.1 with one Transport per rank, as separate processes would have. A ring needs every
// port before any rank binds (tcp://127.0.0.1:* cannot work: the predecessor must know it), so
// the tcp tests probe free ports by binding a plain socket to port 0 and closing it, then create
// the ring; if another process grabbed a port in between, create() fails with AlreadyExists and
// the ring is rebuilt on fresh ports (up to 10 tries).
#include "tests/cluster/test_util.h"
#include "cluster/allreduce.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cluster/transport.h"

namespace grpo::cluster {
namespace {

using test_util::Collector;
using test_util::TempDir;
using test_util::free_tcp_ports;

using Clock = std::chrono::steady_clock;

enum class Kind { kInproc, kTcp, kIpc };

std::string kind_name(Kind k) {
  switch (k) {
    case Kind::kInproc: return "inproc";
    case Kind::kTcp: return "tcp";
    case Kind::kIpc: return "ipc";
  }
  return "?";
}


std::string unique_inproc(const std::string& stem) {
  static std::atomic<int> counter{0};
  return "inproc://ring-" + stem + "-" + std::to_string(counter.fetch_add(1));
}

// One ring of `world` ranks (instances created on this thread, used from rank threads).
struct Ring {
  std::vector<std::shared_ptr<Transport>> transports;  // one shared, or one per rank
  std::vector<std::string> endpoints;
  std::vector<std::unique_ptr<RingAllReduce>> ranks;
  std::unique_ptr<TempDir> dir;  // ipc only
};

Ring make_ring(Kind kind, int world, RingOptions options = {}) {
  for (int attempt = 0; attempt < 10; ++attempt) {
    Ring ring;
    if (kind == Kind::kIpc) ring.dir = std::make_unique<TempDir>();
    std::vector<int> ports = kind == Kind::kTcp ? free_tcp_ports(world) : std::vector<int>();
    const std::string stem = unique_inproc("r");
    for (int r = 0; r < world; ++r) {
      switch (kind) {
        case Kind::kInproc: ring.endpoints.push_back(stem + "-" + std::to_string(r)); break;
        case Kind::kTcp:
          ring.endpoints.push_back("tcp://127.0.0.1:" + std::to_string(ports[r]));
          break;
        case Kind::kIpc:
          ring.endpoints.push_back("ipc://" + ring.dir->path() + "/rank" + std::to_string(r));
          break;
      }
    }
    if (kind == Kind::kInproc) {
      ring.transports.push_back(Transport::create());
    } else {
      for (int r = 0; r < world; ++r) ring.transports.push_back(Transport::create());
    }
    bool retry = false;
    for (int r = 0; r < world; ++r) {
      auto t = ring.transports[kind == Kind::kInproc ? 0 : r];
      StatusOr<std::unique_ptr<RingAllReduce>> made =
          RingAllReduce::create(t, r, ring.endpoints, options);
      if (!made.ok() && made.status().code() == StatusCode::kAlreadyExists && kind == Kind::kTcp) {
        retry = true;  // a port was taken between probing and binding
        break;
      }
      EXPECT_TRUE(made.ok()) << made.status();
      if (!made.ok()) return ring;
      ring.ranks.push_back(std::move(made).value());
    }
    if (!retry) return ring;
  }
  ADD_FAILURE() << "could not bind a tcp ring in 10 tries";
  return Ring();
}

// Runs fn(rank) on one thread per rank; returns each rank's Status.
std::vector<Status> on_ranks(int world, const std::function<Status(int)>& fn) {
  std::vector<Status> out(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) threads.emplace_back([&, r] { out[r] = fn(r); });
  for (auto& t : threads) t.join();
  return out;
}

uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Rank r's input for call `call`: mixed signs and magnitudes.
float value(int rank, int call, size_t i) {
  const uint64_t h = splitmix((uint64_t(rank) << 48) ^ (uint64_t(call) << 40) ^ i);
  const double unit = double(h >> 11) / double(1ull << 53);  // [0, 1)
  return float((unit * 2.0 - 1.0) * double(1 + i % 7));
}

std::vector<std::vector<float>> inputs(int world, int call, size_t n) {
  std::vector<std::vector<float>> data(world, std::vector<float>(n));
  for (int r = 0; r < world; ++r)
    for (size_t i = 0; i < n; ++i) data[r][i] = value(r, call, i);
  return data;
}

// Every rank's result is bitwise identical to rank 0's and within 1e-5 of the double-precision
// sum, relative to the sum of magnitudes (the meaningful scale when terms cancel).
void expect_summed(const std::vector<std::vector<float>>& in,
                   const std::vector<std::vector<float>>& out, const std::string& what) {
  const int world = static_cast<int>(in.size());
  const size_t n = in[0].size();
  for (int r = 1; r < world; ++r) {
    ASSERT_EQ(out[r].size(), n);
    if (n == 0) continue;
    EXPECT_EQ(std::memcmp(out[r].data(), out[0].data(), n * sizeof(float)), 0)
        << what << ": rank " << r << " differs bitwise from rank 0";
  }
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    double ref = 0;
    double mag = 0;
    for (int r = 0; r < world; ++r) {
      ref += in[r][i];
      mag += std::fabs(in[r][i]);
    }
    if (std::fabs(double(out[0][i]) - ref) > 1e-5 * std::max(mag, 1e-30)) {
      if (++bad <= 5) ADD_FAILURE() << what << ": element " << i << " = " << out[0][i]
                                    << ", reference " << ref;
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}

// ---------------------------------------------------------------------------------------------
// Parameterized over transport kind and world size.

class RingTest : public ::testing::TestWithParam<std::tuple<Kind, int>> {
 protected:
  Kind kind() const { return std::get<0>(GetParam()); }
  int world() const { return std::get<1>(GetParam()); }
  static RingOptions options() {
    RingOptions o;
    o.timeout_ms = 20000;      // a bug shows as a failure, not a hang
    o.max_chunk_bytes = 1024;  // 256 floats: the 5000-float case splits every segment
    return o;
  }
};

TEST_P(RingTest, AllReduceSumIsBitwiseIdenticalAndMatchesDoubleReference) {
  const int w = world();
  Ring ring = make_ring(kind(), w, options());
  ASSERT_EQ(ring.ranks.size(), size_t(w));
  const std::vector<size_t> sizes = {0, 1, size_t(w - 1), 1000, 5000};
  int call = 0;
  for (size_t n : sizes) {
    // Two consecutive calls with different data on the same ring (sequence numbers advance).
    for (int repeat = 0; repeat < 2; ++repeat, ++call) {
      const auto in = inputs(w, call, n);
      auto out = in;
      std::vector<Status> st = on_ranks(w, [&](int r) {
        return ring.ranks[r]->all_reduce_sum(out[r].data(), n);
      });
      for (int r = 0; r < w; ++r) ASSERT_TRUE(st[r].ok()) << "rank " << r << ": " << st[r];
      expect_summed(in, out, kind_name(kind()) + " world " + std::to_string(w) + " n " +
                                 std::to_string(n) + " call " + std::to_string(call));
    }
  }
  for (int r = 0; r < w; ++r) {
    EXPECT_EQ(ring.ranks[r]->calls(), uint64_t(call));
    EXPECT_EQ(ring.ranks[r]->dropped(), 0u);
    if (w > 1) {
      EXPECT_EQ(ring.ranks[r]->messages_sent(), ring.ranks[(r + 1) % w]->messages_received());
    }
  }
  if (w > 1) {
    // 5000 floats in 256-float chunks: each segment travels as several messages.
    EXPECT_GT(ring.ranks[0]->messages_sent(), uint64_t(2 * (w - 1) * sizes.size() * 2));
  }
}

TEST_P(RingTest, BroadcastFromEveryRoot) {
  const int w = world();
  Ring ring = make_ring(kind(), w, options());
  ASSERT_EQ(ring.ranks.size(), size_t(w));
  for (size_t bytes : {size_t(0), size_t(1), size_t(3001)}) {  // 3001 bytes: 3 chunks + a tail
    for (int root = 0; root < w; ++root) {
      std::vector<std::vector<unsigned char>> buf(w, std::vector<unsigned char>(bytes));
      for (int r = 0; r < w; ++r)
        for (size_t i = 0; i < bytes; ++i) buf[r][i] = static_cast<unsigned char>(r * 31 + i * 7);
      const std::vector<unsigned char> expected = buf[root];
      std::vector<Status> st = on_ranks(w, [&](int r) {
        return ring.ranks[r]->broadcast(buf[r].data(), bytes, root);
      });
      for (int r = 0; r < w; ++r) {
        ASSERT_TRUE(st[r].ok()) << "rank " << r << ": " << st[r];
        EXPECT_EQ(buf[r], expected) << "rank " << r << " root " << root << " bytes " << bytes;
      }
    }
  }
  for (int r = 0; r < w; ++r) EXPECT_EQ(ring.ranks[r]->dropped(), 0u);
}

TEST_P(RingTest, BarrierWaitsForEveryRank) {
  const int w = world();
  Ring ring = make_ring(kind(), w, options());
  ASSERT_EQ(ring.ranks.size(), size_t(w));
  for (int round = 0; round < 2; ++round) {
    std::atomic<int> entered{0};
    std::vector<int> seen(w, -1);
    std::vector<Status> st = on_ranks(w, [&](int r) {
      // The last rank arrives late; nobody may leave before it entered.
      if (r == w - 1) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      entered.fetch_add(1);
      Status s = ring.ranks[r]->barrier();
      seen[r] = entered.load();
      return s;
    });
    for (int r = 0; r < w; ++r) {
      ASSERT_TRUE(st[r].ok()) << "rank " << r << ": " << st[r];
      EXPECT_EQ(seen[r], w) << "rank " << r << " left the barrier early";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    KindsAndWorlds, RingTest,
    ::testing::Combine(::testing::Values(Kind::kInproc, Kind::kTcp), ::testing::Values(1, 2, 3, 4)),
    [](const ::testing::TestParamInfo<std::tuple<Kind, int>>& info) {
      return kind_name(std::get<0>(info.param)) + "_world" + std::to_string(std::get<1>(info.param));
    });

// ---------------------------------------------------------------------------------------------

TEST(RingAllReduceTest, IpcRingWorks) {
  RingOptions o;
  o.timeout_ms = 20000;
  Ring ring = make_ring(Kind::kIpc, 3, o);
  ASSERT_EQ(ring.ranks.size(), 3u);
  const auto in = inputs(3, 7, 1001);
  auto out = in;
  std::vector<Status> st =
      on_ranks(3, [&](int r) { return ring.ranks[r]->all_reduce_sum(out[r].data(), 1001); });
  for (int r = 0; r < 3; ++r) ASSERT_TRUE(st[r].ok()) << st[r];
  expect_summed(in, out, "ipc");
}

TEST(RingAllReduceTest, SegmentsLargerThanDefaultChunkAreSplit) {
  RingOptions o;  // default max_chunk_bytes = 4 MiB
  o.timeout_ms = 30000;
  const int w = 3;
  const size_t n = 3'500'000;  // 14 MB; segments of ~4.67 MB: two messages each
  Ring ring = make_ring(Kind::kInproc, w, o);
  ASSERT_EQ(ring.ranks.size(), size_t(w));
  const auto in = inputs(w, 11, n);
  auto out = in;
  std::vector<Status> st =
      on_ranks(w, [&](int r) { return ring.ranks[r]->all_reduce_sum(out[r].data(), n); });
  for (int r = 0; r < w; ++r) ASSERT_TRUE(st[r].ok()) << st[r];
  expect_summed(in, out, "14 MB");
  for (int r = 0; r < w; ++r) EXPECT_EQ(ring.ranks[r]->messages_sent(), uint64_t(2 * (w - 1) * 2));
}

TEST(RingAllReduceTest, WorldOfOneIsALocalNoOp) {
  auto transport = Transport::create();
  auto made = RingAllReduce::create(transport, 0, {"inproc://solo"});
  ASSERT_TRUE(made.ok()) << made.status();
  std::vector<float> data = {1.5f, -2.0f, 3.25f};
  const auto copy = data;
  ASSERT_TRUE((*made)->all_reduce_sum(data.data(), data.size()).ok());
  EXPECT_EQ(data, copy);
  ASSERT_TRUE((*made)->broadcast(data.data(), 12).ok());
  ASSERT_TRUE((*made)->barrier().ok());
  EXPECT_EQ((*made)->world(), 1);
  EXPECT_EQ((*made)->rank(), 0);
  EXPECT_EQ((*made)->calls(), 3u);
}

TEST(RingAllReduceTest, InvalidArgumentsAreRejected) {
  auto transport = Transport::create();
  auto code = [&](int rank, std::vector<std::string> eps, RingOptions o = {}) {
    auto made = RingAllReduce::create(transport, rank, std::move(eps), o);
    return made.ok() ? StatusCode::kOk : made.status().code();
  };
  EXPECT_EQ(code(0, {}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(2, {"inproc://a", "inproc://b"}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(-1, {"inproc://a", "inproc://b"}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(0, {"inproc://a", "inproc://a"}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(0, {"inproc://a", ""}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(0, {"tcp://127.0.0.1:*", "tcp://127.0.0.1:1"}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(0, {"nonsense", "inproc://b"}), StatusCode::kInvalidArgument);
  RingOptions bad;
  bad.timeout_ms = 0;
  EXPECT_EQ(code(0, {"inproc://a", "inproc://b"}, bad), StatusCode::kInvalidArgument);
  bad = RingOptions();
  bad.max_chunk_bytes = 0;
  EXPECT_EQ(code(0, {"inproc://a", "inproc://b"}, bad), StatusCode::kInvalidArgument);

  // The same endpoint bound twice.
  auto first = RingAllReduce::create(transport, 0, {"inproc://taken", "inproc://other"});
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = RingAllReduce::create(transport, 1, {"inproc://x", "inproc://taken"});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kAlreadyExists) << second.status();
  EXPECT_NE(second.status().message().find("inproc://taken"), std::string::npos);

  EXPECT_EQ((*first)->broadcast(nullptr, 0, 2).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*first)->broadcast(nullptr, 0, -1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*first)->all_reduce_sum(nullptr, 3).code(), StatusCode::kInvalidArgument);
  // After destruction the endpoint can be bound again at once.
  first = StatusOr<std::unique_ptr<RingAllReduce>>(nullptr);
  auto again = RingAllReduce::create(transport, 0, {"inproc://taken", "inproc://other"});
  EXPECT_TRUE(again.ok()) << again.status();
}

TEST(RingAllReduceTest, MissingPeerGivesDeadlineExceededNamingIt) {
  RingOptions o;
  o.timeout_ms = 300;
  for (Kind kind : {Kind::kInproc, Kind::kTcp}) {
    auto transport = Transport::create();
    std::vector<std::string> eps;
    if (kind == Kind::kInproc) {
      eps = {unique_inproc("missing-0"), unique_inproc("missing-1")};
    } else {
      std::vector<int> ports = free_tcp_ports(2);
      eps = {"tcp://127.0.0.1:" + std::to_string(ports[0]),
             "tcp://127.0.0.1:" + std::to_string(ports[1])};
    }
    auto made = RingAllReduce::create(transport, 0, eps, o);  // rank 1 never shows up
    ASSERT_TRUE(made.ok()) << made.status();
    std::vector<float> data(100, 1.0f);
    for (int attempt = 0; attempt < 2; ++attempt) {  // and again: still no hang
      const auto start = Clock::now();
      Status s = (*made)->all_reduce_sum(data.data(), data.size());
      const auto ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
      EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s;
      EXPECT_NE(s.message().find("rank 1"), std::string::npos) << s;
      EXPECT_NE(s.message().find(eps[1]), std::string::npos) << s;
      EXPECT_GE(ms, 250);
      EXPECT_LT(ms, 3000);
    }
    Status b = (*made)->barrier();
    EXPECT_EQ(b.code(), StatusCode::kDeadlineExceeded) << b;
    std::vector<unsigned char> bytes(10);
    Status c = (*made)->broadcast(bytes.data(), bytes.size(), 1);  // rank 1 would be the root
    EXPECT_EQ(c.code(), StatusCode::kDeadlineExceeded) << c;
  }
}

TEST(RingAllReduceTest, DeadPeerGivesDeadlineExceeded) {
  RingOptions o;
  o.timeout_ms = 500;
  Ring ring = make_ring(Kind::kTcp, 3, o);
  ASSERT_EQ(ring.ranks.size(), 3u);
  auto in = inputs(3, 1, 64);
  auto out = in;
  std::vector<Status> st =
      on_ranks(3, [&](int r) { return ring.ranks[r]->all_reduce_sum(out[r].data(), 64); });
  for (int r = 0; r < 3; ++r) ASSERT_TRUE(st[r].ok()) << st[r];
  ring.ranks[2].reset();  // rank 2 dies
  const auto start = Clock::now();
  st = on_ranks(2, [&](int r) { return ring.ranks[r]->all_reduce_sum(out[r].data(), 64); });
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  EXPECT_EQ(st[0].code(), StatusCode::kDeadlineExceeded) << st[0];
  EXPECT_NE(st[0].message().find("rank 2"), std::string::npos) << st[0];
  EXPECT_NE(st[0].message().find(ring.endpoints[2]), std::string::npos) << st[0];
  EXPECT_FALSE(st[1].ok());  // waits on rank 0, which is stuck waiting on rank 2
  EXPECT_LT(ms, 5000);
}

TEST(RingAllReduceTest, GarbageIsDroppedAndTheRingKeepsWorking) {
  RingOptions o;
  o.timeout_ms = 20000;
  for (Kind kind : {Kind::kInproc, Kind::kTcp}) {
    SCOPED_TRACE(kind_name(kind));
    const int w = 3;
    Ring ring = make_ring(kind, w, o);
    ASSERT_EQ(ring.ranks.size(), size_t(w));
    auto transport = ring.transports[0];
    const std::string victim = ring.endpoints[1];
    // Single-frame garbage of assorted sizes (one is exactly a header's size).
    StatusOr<std::unique_ptr<Outbox>> outbox = Outbox::connect(transport, victim);
    ASSERT_TRUE(outbox.ok()) << outbox.status();
    for (const std::string& g : {std::string("garbage"), std::string(), std::string(64, 'G'),
                                 std::string(5000, '\0')}) {
      ASSERT_TRUE((*outbox)->send(g).ok());
    }
    // Well-framed messages of another ring (foreign ring id): a lone rank 0 of a two-rank ring
    // whose successor endpoint is the victim's. Its barrier sends one message, then times out.
    RingOptions quick;
    quick.timeout_ms = 50;
    const std::string rogue_ep = kind == Kind::kInproc
                                     ? unique_inproc("rogue")
                                     : "tcp://127.0.0.1:" + std::to_string(free_tcp_ports(1)[0]);
    auto rogue = RingAllReduce::create(transport, 0, {rogue_ep, victim}, quick);
    ASSERT_TRUE(rogue.ok()) << rogue.status();
    EXPECT_EQ((*rogue)->barrier().code(), StatusCode::kDeadlineExceeded);
    const uint64_t kGarbage = 5;
    // Keep reducing until the victim has seen (and dropped) all of it; every call must succeed.
    int call = 0;
    for (; call < 50 && ring.ranks[1]->malformed_dropped() < kGarbage; ++call) {
      const auto in = inputs(w, call, 333);
      auto out = in;
      std::vector<Status> st =
          on_ranks(w, [&](int r) { return ring.ranks[r]->all_reduce_sum(out[r].data(), 333); });
      for (int r = 0; r < w; ++r) ASSERT_TRUE(st[r].ok()) << "rank " << r << ": " << st[r];
      expect_summed(in, out, "after garbage, call " + std::to_string(call));
      if (ring.ranks[1]->malformed_dropped() < kGarbage) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    EXPECT_EQ(ring.ranks[1]->malformed_dropped(), kGarbage);
    EXPECT_EQ(ring.ranks[1]->stale_dropped(), 0u);
    EXPECT_EQ(ring.ranks[0]->dropped(), 0u);
    EXPECT_EQ(ring.ranks[2]->dropped(), 0u);
  }
}

TEST(RingAllReduceTest, LeftoversOfAnAbortedCallAreDroppedNotMixedIn) {
  RingOptions o;
  o.timeout_ms = 200;
  Ring ring = make_ring(Kind::kInproc, 2, o);
  ASSERT_EQ(ring.ranks.size(), 2u);
  std::vector<float> junk(10, 1000.0f);
  // Call 1: each rank alone (one after the other), so both time out; each leaves messages of
  // call 1 in the other's queue.
  EXPECT_EQ(ring.ranks[0]->all_reduce_sum(junk.data(), junk.size()).code(),
            StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(ring.ranks[1]->all_reduce_sum(junk.data(), junk.size()).ok());
  // Call 2, together: correct sums, the leftovers dropped.
  const auto in = inputs(2, 2, 10);
  auto out = in;
  std::vector<Status> st =
      on_ranks(2, [&](int r) { return ring.ranks[r]->all_reduce_sum(out[r].data(), 10); });
  for (int r = 0; r < 2; ++r) ASSERT_TRUE(st[r].ok()) << "rank " << r << ": " << st[r];
  expect_summed(in, out, "after an aborted call");
  EXPECT_GE(ring.ranks[0]->stale_dropped() + ring.ranks[1]->stale_dropped(), 1u);
  EXPECT_EQ(ring.ranks[0]->malformed_dropped() + ring.ranks[1]->malformed_dropped(), 0u);
}

TEST(RingAllReduceTest, APeerThatMovedOnFailsTheCallAtOnceAndTheRanksResync) {
  RingOptions o;
  o.timeout_ms = 3000;
  Ring ring = make_ring(Kind::kInproc, 2, o);
  ASSERT_EQ(ring.ranks.size(), 2u);
  const auto in = inputs(2, 5, 50);
  auto out = in;
  std::promise<void> rank0_gave_up;
  std::vector<Status> first(2);
  std::vector<Status> second(2);
  std::vector<int64_t> rank1_first_ms(1);
  std::thread t0([&] {
    std::vector<float> junk(50, 7.0f);
    first[0] = ring.ranks[0]->all_reduce_sum(junk.data(), 50);  // alone: times out
    rank0_gave_up.set_value();
    second[0] = ring.ranks[0]->all_reduce_sum(out[0].data(), 50);  // call 2
  });
  std::thread t1([&] {
    rank0_gave_up.get_future().wait();
    std::vector<float> junk(50, 7.0f);
    const auto start = Clock::now();
    first[1] = ring.ranks[1]->all_reduce_sum(junk.data(), 50);  // call 1, abandoned by rank 0
    rank1_first_ms[0] =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    second[1] = ring.ranks[1]->all_reduce_sum(out[1].data(), 50);  // call 2
  });
  t0.join();
  t1.join();
  EXPECT_EQ(first[0].code(), StatusCode::kDeadlineExceeded) << first[0];
  EXPECT_EQ(first[1].code(), StatusCode::kUnavailable) << first[1];
  EXPECT_NE(first[1].message().find("moved on to call 2"), std::string::npos) << first[1];
  EXPECT_LT(rank1_first_ms[0], 2000);  // noticed at once, not after timeout_ms
  ASSERT_TRUE(second[0].ok()) << second[0];
  ASSERT_TRUE(second[1].ok()) << second[1];
  expect_summed(in, out, "after resync");
  EXPECT_GE(ring.ranks[0]->stale_dropped(), 1u);  // rank 1's step-0 message of call 1
}

TEST(RingAllReduceTest, MismatchedCallsFailWithFailedPrecondition) {
  RingOptions o;
  o.timeout_ms = 2000;
  Ring ring = make_ring(Kind::kInproc, 2, o);
  ASSERT_EQ(ring.ranks.size(), 2u);
  std::vector<std::vector<float>> buf = {std::vector<float>(10, 1.0f), std::vector<float>(11, 1.0f)};
  std::vector<Status> st = on_ranks(2, [&](int r) {
    return ring.ranks[r]->all_reduce_sum(buf[r].data(), buf[r].size());  // n = 10 vs n = 11
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(st[r].code(), StatusCode::kFailedPrecondition) << st[r];
    EXPECT_NE(st[r].message().find("same calls"), std::string::npos) << st[r];
  }
  // Broadcast against barrier.
  st = on_ranks(2, [&](int r) {
    return r == 0 ? ring.ranks[0]->broadcast(buf[0].data(), 40) : ring.ranks[1]->barrier();
  });
  for (int r = 0; r < 2; ++r) EXPECT_EQ(st[r].code(), StatusCode::kFailedPrecondition) << st[r];
  // Matching calls work again.
  const auto in = inputs(2, 9, 10);
  auto out = in;
  st = on_ranks(2, [&](int r) { return ring.ranks[r]->all_reduce_sum(out[r].data(), 10); });
  for (int r = 0; r < 2; ++r) ASSERT_TRUE(st[r].ok()) << st[r];
  expect_summed(in, out, "after mismatch");
}

TEST(RingAllReduceTest, ShutdownInAnyOrderDoesNotHang) {
  const auto start = Clock::now();
  {
    RingOptions o;
    o.timeout_ms = 200;
    Ring ring = make_ring(Kind::kTcp, 3, o);
    ASSERT_EQ(ring.ranks.size(), 3u);
    // Rank 0 queues a message its successor never receives, then everything goes, the
    // Transports first (the instances keep them alive), ranks out of order.
    EXPECT_EQ(ring.ranks[0]->barrier().code(), StatusCode::kDeadlineExceeded);
    ring.transports.clear();
    ring.ranks[1].reset();
    ring.ranks[0].reset();
    ring.ranks[2].reset();
  }
  // Bounded by linger_ms (1 s) per context, not by anything like timeout_ms of a peer.
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count(),
            5000);
}

// Not an assertion: the log shows what 4 ranks moving 16 MiB each over inproc achieve here.
TEST(RingAllReduceTest, ThroughputFourRanksSixteenMiBInproc) {
  const int w = 4;
  const size_t n = (size_t{16} << 20) / sizeof(float);
  RingOptions o;
  o.timeout_ms = 60000;
  Ring ring = make_ring(Kind::kInproc, w, o);
  ASSERT_EQ(ring.ranks.size(), size_t(w));
  std::vector<std::vector<float>> buf(w, std::vector<float>(n));
  for (int r = 0; r < w; ++r)
    for (size_t i = 0; i < n; ++i) buf[r][i] = float((i + r) % 1000) * 0.001f;
  const int iterations = 5;
  std::vector<double> seconds;
  for (int it = 0; it < iterations; ++it) {
    const auto start = Clock::now();
    std::vector<Status> st =
        on_ranks(w, [&](int r) { return ring.ranks[r]->all_reduce_sum(buf[r].data(), n); });
    seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    for (int r = 0; r < w; ++r) ASSERT_TRUE(st[r].ok()) << st[r];
  }
  for (int r = 1; r < w; ++r)
    ASSERT_EQ(std::memcmp(buf[r].data(), buf[0].data(), n * sizeof(float)), 0);
  std::sort(seconds.begin(), seconds.end());
  const double median = seconds[seconds.size() / 2];
  const double bytes = double(n * sizeof(float));
  std::printf(
      "[throughput] ring all-reduce, %d ranks x 16 MiB over inproc (%u hardware threads): "
      "median %.1f ms/call (best %.1f), algorithm bandwidth %.2f GB/s, bus bandwidth %.2f GB/s\n",
      w, std::thread::hardware_concurrency(), median * 1e3, seconds.front() * 1e3,
      bytes / median / 1e9, bytes * 2.0 * (w - 1) / w / median / 1e9);
}

}  // namespace
}  // namespace grpo::cluster
