// The chained weight broadcast (cluster/weight_relay.h) over real ZeroMQ sockets: a WeightSource
// behind its own mailbox (it answers repair requests) and receivers that each own a mailbox and a
// WeightRelay, as generators do. Time for the source is a fake clock the tests move.
#include "cluster/weight_relay.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cluster/codec.h"
#include "cluster/transport.h"
#include "tests/cluster/test_util.h"

namespace grpo::cluster {
namespace {

using namespace std::chrono_literals;

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// One version as the learner publishes it.
struct Published {
  std::string blob;
  std::string manifest;
  std::vector<std::string> chunks;
};

Published publish(uint64_t version, size_t bytes, uint32_t chunk_bytes, uint32_t seed) {
  Published p;
  p.blob = random_bytes(bytes, seed);
  WeightManifest m;
  auto chunks = make_chunks(version, p.blob, chunk_bytes, &m);
  m.tensors.push_back({"w", {static_cast<int64_t>(bytes)}, "u8", 0, bytes});
  p.manifest = encode(m);
  for (const auto& c : chunks) p.chunks.push_back(encode(c));
  return p;
}

// The same chunk with one data byte flipped and its checksum field unchanged.
std::string flip_a_byte(const std::string& chunk_bytes) {
  WeightChunk c;
  EXPECT_TRUE(decode(chunk_bytes, &c).ok());
  c.data[c.data.size() / 2] ^= 0x01;
  return encode(c);
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// A WeightSource listening at its own endpoint, and `n` receivers.
class Broadcast {
 public:
  // Lets a test change (or drop: return false) what the source sends to an endpoint.
  using Tamper = std::function<bool(const std::string& endpoint, std::string* bytes)>;

  Broadcast(std::vector<std::string> endpoints, std::string source_endpoint, WeightSourceOptions options = {},
            std::vector<bool> alive = {})
      : transport_(Transport::create()), endpoints_(std::move(endpoints)) {
    source_ = std::make_unique<WeightSource>(
        [this](const std::string& endpoint, std::string_view bytes) { return send(endpoint, bytes); },
        [this](uint64_t id) { return id < endpoints_.size() ? endpoints_[id] : std::string(); }, options);
    auto mailbox = Mailbox::bind(transport_, source_endpoint, [this](std::string bytes) {
      std::lock_guard<std::mutex> lock(mu_);
      (void)source_->on_message(std::move(bytes), now_ms.load());
    });
    EXPECT_TRUE(mailbox.ok()) << mailbox.status();
    source_mailbox_ = std::move(mailbox).value();
    for (size_t i = 0; i < endpoints_.size(); ++i) {
      auto node = std::make_unique<Node>();
      if (alive.empty() || alive[i]) {
        WeightRelayOptions o;
        o.worker_id = i;
        o.self_endpoint = endpoints_[i];
        o.repair_endpoint = source_mailbox_->endpoint();
        auto relay = WeightRelay::create(transport_, o);
        EXPECT_TRUE(relay.ok()) << relay.status();
        node->relay = std::move(relay).value();
        WeightRelay* r = node->relay.get();
        auto mb = Mailbox::bind(transport_, endpoints_[i], [r](std::string bytes) { r->handle(bytes); });
        EXPECT_TRUE(mb.ok()) << mb.status();
        node->mailbox = std::move(mb).value();
      }
      nodes_.push_back(std::move(node));
    }
  }

  ~Broadcast() {
    for (auto& n : nodes_)
      if (n->mailbox) n->mailbox->close();
    source_mailbox_->close();
  }

  // What the learner and the generators' heartbeats send to the broadcaster.
  Status feed(std::string bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    return source_->on_message(std::move(bytes), now_ms.load());
  }
  void feed_version(const Published& p) {
    ASSERT_TRUE(feed(p.manifest).ok());
    for (const auto& c : p.chunks) ASSERT_TRUE(feed(c).ok());
  }
  void heartbeat(size_t i) {
    Heartbeat hb;
    hb.role = "generator";
    hb.worker_id = i;
    const int64_t held = nodes_[i]->relay ? nodes_[i]->relay->held_version() : -1;
    hb.policy_version = held < 0 ? 0 : static_cast<uint64_t>(held);
    hb.in_flight = held < 0 ? -1 : 0;
    ASSERT_TRUE(feed(encode(hb)).ok());
  }
  bool holds(size_t i, int64_t version, std::chrono::milliseconds timeout = 10s) {
    return wait_until([&] { return nodes_[i]->relay->held_version() == version; }, timeout);
  }

  WeightRelay& relay(size_t i) { return *nodes_[i]->relay; }
  Mailbox& mailbox(size_t i) { return *nodes_[i]->mailbox; }
  WeightSourceStats source_stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return source_->stats();
  }
  std::vector<std::vector<uint64_t>> chains() {
    std::lock_guard<std::mutex> lock(mu_);
    return source_->chains();
  }
  int sends_to(const std::string& endpoint) {
    std::lock_guard<std::mutex> lock(mu_);
    return sends_[endpoint];
  }

  Tamper tamper;  // set before feeding
  std::atomic<int64_t> now_ms{0};

 private:
  struct Node {
    std::unique_ptr<WeightRelay> relay;
    std::unique_ptr<Mailbox> mailbox;
  };

  // Called by the source, under mu_.
  Status send(const std::string& endpoint, std::string_view bytes) {
    std::string copy(bytes);
    if (tamper && !tamper(endpoint, &copy)) return ok_status();
    ++sends_[endpoint];
    auto it = outboxes_.find(endpoint);
    if (it == outboxes_.end()) {
      auto outbox = Outbox::connect(transport_, endpoint);
      if (!outbox.ok()) return outbox.status();
      it = outboxes_.emplace(endpoint, std::move(outbox).value()).first;
    }
    return it->second->send(copy);
  }

  std::shared_ptr<Transport> transport_;
  std::vector<std::string> endpoints_;
  std::mutex mu_;  // the source is driven from the test thread and its mailbox thread
  std::unique_ptr<WeightSource> source_;
  std::map<std::string, std::unique_ptr<Outbox>> outboxes_;
  std::map<std::string, int> sends_;
  std::unique_ptr<Mailbox> source_mailbox_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

std::vector<std::string> ipc_endpoints(const test_util::TempDir& dir, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back("ipc://" + dir.path() + "/g" + std::to_string(i));
  return out;
}

std::vector<std::string> tcp_endpoints(const std::vector<int>& ports) {
  std::vector<std::string> out;
  for (int p : ports) out.push_back("tcp://127.0.0.1:" + std::to_string(p));
  return out;
}

// --- codec pieces of the chain ------------------------------------------------------------------

TEST(WeightRelayCodecTest, RelayListAndChunkRequestRoundTrip) {
  WeightManifest m;
  m.version = 3;
  m.relay = {"ipc:///tmp/a", "tcp://10.0.0.2:7101"};
  WeightManifest back;
  ASSERT_TRUE(decode(encode(m), &back).ok());
  EXPECT_EQ(back.relay, m.relay);
  WeightChunkRequest r;
  r.version = 9;
  r.worker_id = 4;
  r.indices = {7, 1};
  const std::string bytes = encode(r);
  ASSERT_EQ(peek_kind(bytes).value(), MessageKind::kWeightChunkRequest);
  EXPECT_STREQ(message_kind_name(MessageKind::kWeightChunkRequest), "WeightChunkRequest");
  WeightChunkRequest r2;
  ASSERT_TRUE(decode(bytes, &r2).ok());
  EXPECT_EQ(r2.version, 9u);
  EXPECT_EQ(r2.worker_id, 4u);
  EXPECT_EQ(r2.indices, (std::vector<uint32_t>{7, 1}));
  WeightChunk wrong_kind;
  EXPECT_EQ(decode(bytes, &wrong_kind).code(), StatusCode::kInvalidArgument);
}

TEST(WeightRelayCodecTest, ChunkViewPointsIntoTheMessageAndNeedsAlignment) {
  WeightChunk c;
  c.version = 2;
  c.index = 1;
  c.data = random_bytes(1000, 3);
  c.checksum = checksum64(c.data);
  const std::string bytes = encode(c);
  WeightChunkView v;
  ASSERT_TRUE(decode(bytes, &v).ok());
  EXPECT_EQ(v.version, 2u);
  EXPECT_EQ(v.index, 1u);
  EXPECT_EQ(v.checksum, c.checksum);
  EXPECT_EQ(v.data, c.data);
  EXPECT_TRUE(v.data.data() >= bytes.data() && v.data.data() + v.data.size() <= bytes.data() + bytes.size());
  std::string shifted = " " + bytes;
  EXPECT_EQ(decode(std::string_view(shifted).substr(1), &v).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(decode(std::string_view(bytes).substr(0, bytes.size() - 8), &v).ok());
}

TEST(WeightRelayCodecTest, AssemblerWritesIntoARecycledBuffer) {
  const Published p = publish(1, (256 << 10) + 5, 64 << 10, 12);
  WeightManifest m;
  ASSERT_TRUE(decode(p.manifest, &m).ok());
  WeightAssembler a;
  std::string old(300 << 10, 'z');  // a previous blob, larger and full of other bytes
  const char* buffer = old.data();
  a.recycle(std::move(old));
  ASSERT_TRUE(a.begin(m).ok());
  for (size_t i = p.chunks.size(); i-- > 0;) {  // any order
    WeightChunkView v;
    ASSERT_TRUE(decode(p.chunks[i], &v).ok());
    ASSERT_TRUE(a.add_chunk(v).ok());
  }
  ASSERT_TRUE(a.complete());
  std::string blob = std::move(a.take_blob()).value();
  EXPECT_EQ(blob.data(), buffer);  // no new allocation
  EXPECT_TRUE(blob == p.blob);
}

// --- delivery along the chain ------------------------------------------------------------------

class WeightRelayChainTest : public ::testing::TestWithParam<std::string> {};

TEST_P(WeightRelayChainTest, FourReceiversGetBitIdenticalBlobsThroughTheHeadOnly) {
  test_util::TempDir dir("wrelay");
  std::vector<std::string> endpoints;
  std::string source_endpoint;
  if (GetParam() == "ipc") {
    endpoints = ipc_endpoints(dir, 4);
    source_endpoint = "ipc://" + dir.path() + "/src";
  } else {
    const auto ports = test_util::free_tcp_ports(5);
    endpoints = tcp_endpoints({ports[0], ports[1], ports[2], ports[3]});
    source_endpoint = "tcp://127.0.0.1:" + std::to_string(ports[4]);
  }
  Broadcast b(endpoints, source_endpoint);
  for (size_t i = 0; i < 4; ++i) b.heartbeat(i);
  // 17 chunks, the last one short.
  const Published v1 = publish(1, (1 << 20) + 13, 64 << 10, 1);
  b.feed_version(v1);
  for (size_t i = 0; i < 4; ++i) ASSERT_TRUE(b.holds(i, 1)) << "receiver " << i;
  for (size_t i = 0; i < 4; ++i) {
    auto got = b.relay(i).take_completed();
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->manifest.version, 1u);
    EXPECT_TRUE(got->manifest.relay.empty());
    ASSERT_EQ(got->manifest.tensors.size(), 1u);
    EXPECT_EQ(got->manifest.tensors[0].name, "w");
    EXPECT_TRUE(got->blob == v1.blob) << "receiver " << i << " holds other bytes";
  }
  EXPECT_EQ(b.chains(), (std::vector<std::vector<uint64_t>>{{0, 1, 2, 3}}));
  // The source sent to the head only; every hop but the last forwarded the manifest and 17 chunks.
  EXPECT_EQ(b.sends_to(endpoints[0]), 18);
  for (size_t i = 1; i < 4; ++i) EXPECT_EQ(b.sends_to(endpoints[i]), 0);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(b.relay(i).stats().forwarded, 18u) << "receiver " << i;
  EXPECT_EQ(b.relay(3).stats().forwarded, 0u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(b.relay(i).stats().chunks, 17u);
    EXPECT_EQ(b.relay(i).stats().corrupt, 0u);
  }
  EXPECT_EQ(b.source_stats().direct_sends, 0u);

  // The next version takes the same path, and a receiver asked again gets nothing new.
  for (size_t i = 0; i < 4; ++i) b.heartbeat(i);
  const Published v2 = publish(2, 300 << 10, 64 << 10, 2);
  b.feed_version(v2);
  for (size_t i = 0; i < 4; ++i) ASSERT_TRUE(b.holds(i, 2));
  EXPECT_TRUE(b.relay(3).take_completed()->blob == v2.blob);
  EXPECT_FALSE(b.relay(3).take_completed().has_value());
  EXPECT_EQ(b.source_stats().direct_sends, 0u);
}

INSTANTIATE_TEST_SUITE_P(Transports, WeightRelayChainTest, ::testing::Values("ipc", "tcp"),
                         [](const auto& info) { return info.param; });

TEST(WeightRelayTest, TwoChainsSplitTheReceivers) {
  test_util::TempDir dir("wrelay");
  WeightSourceOptions o;
  o.chains = 2;
  Broadcast b(ipc_endpoints(dir, 4), "ipc://" + dir.path() + "/src", o);
  for (size_t i = 0; i < 4; ++i) b.heartbeat(i);
  const Published v1 = publish(1, 200 << 10, 16 << 10, 3);
  b.feed_version(v1);
  for (size_t i = 0; i < 4; ++i) ASSERT_TRUE(b.holds(i, 1));
  EXPECT_EQ(b.chains(), (std::vector<std::vector<uint64_t>>{{0, 1}, {2, 3}}));
  EXPECT_EQ(b.relay(1).stats().forwarded, 0u);
  EXPECT_EQ(b.relay(3).stats().forwarded, 0u);
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(b.relay(i).take_completed()->blob == v1.blob);
}

// --- repair ------------------------------------------------------------------------------------

TEST(WeightRelayTest, CorruptChunkIsRefetchedThenForwardedDownstream) {
  test_util::TempDir dir("wrelay");
  auto endpoints = ipc_endpoints(dir, 4);
  Broadcast b(endpoints, "ipc://" + dir.path() + "/src");
  const Published v1 = publish(1, 1 << 20, 64 << 10, 4);
  int corrupted = 0;
  // The first copy of chunk 5 that the source sends to the head arrives damaged.
  b.tamper = [&](const std::string& endpoint, std::string* bytes) {
    if (endpoint == endpoints[0] && *bytes == v1.chunks[5] && corrupted++ == 0) *bytes = flip_a_byte(*bytes);
    return true;
  };
  for (size_t i = 0; i < 4; ++i) b.heartbeat(i);
  b.feed_version(v1);
  for (size_t i = 0; i < 4; ++i) ASSERT_TRUE(b.holds(i, 1)) << "receiver " << i;
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(b.relay(i).take_completed()->blob == v1.blob);
  EXPECT_EQ(corrupted, 2);  // the damaged copy, then the repair
  EXPECT_EQ(b.relay(0).stats().corrupt, 1u);
  EXPECT_EQ(b.relay(0).stats().repairs_requested, 1u);
  EXPECT_EQ(b.source_stats().chunk_requests, 1u);
  EXPECT_EQ(b.source_stats().chunks_resent, 1u);
  // The damaged copy went no further: downstream saw each of the 16 chunks once, all good.
  for (size_t i = 1; i < 4; ++i) {
    EXPECT_EQ(b.relay(i).stats().corrupt, 0u) << "receiver " << i;
    EXPECT_EQ(b.relay(i).stats().chunks, 16u);
    EXPECT_EQ(b.mailbox(i).received(), 17u);
  }
  EXPECT_EQ(b.relay(0).stats().forwarded, 17u);
}

TEST(WeightRelayTest, ReceiversBehindADeadHopGetTheVersionDirectlyAfterTheGrace) {
  test_util::TempDir dir("wrelay");
  auto endpoints = ipc_endpoints(dir, 4);
  WeightSourceOptions o;
  o.behind_grace_ms = 2000;
  o.member_timeout_ms = 6000;
  // Receiver 1 heartbeats once, then dies: nothing listens at its endpoint.
  Broadcast b(endpoints, "ipc://" + dir.path() + "/src", o, {true, false, true, true});
  b.heartbeat(0);
  b.heartbeat(2);
  b.heartbeat(3);
  {
    Heartbeat hb;
    hb.role = "generator";
    hb.worker_id = 1;
    hb.in_flight = -1;
    ASSERT_TRUE(b.feed(encode(hb)).ok());
  }
  const Published v1 = publish(1, 512 << 10, 32 << 10, 5);
  b.feed_version(v1);
  EXPECT_EQ(b.chains(), (std::vector<std::vector<uint64_t>>{{0, 1, 2, 3}}));
  ASSERT_TRUE(b.holds(0, 1));
  EXPECT_FALSE(b.holds(2, 1, 300ms));
  EXPECT_FALSE(b.holds(3, 1, 10ms));

  // Within the grace period the source waits for the chain.
  b.now_ms = 1500;
  b.heartbeat(2);
  b.heartbeat(3);
  EXPECT_EQ(b.source_stats().direct_sends, 0u);
  // After it, the receivers still behind get v1 straight from the source.
  b.now_ms = 2500;
  b.heartbeat(0);
  b.heartbeat(2);
  b.heartbeat(3);
  ASSERT_TRUE(b.holds(2, 1));
  ASSERT_TRUE(b.holds(3, 1));
  EXPECT_EQ(b.source_stats().direct_sends, 2u);
  EXPECT_TRUE(b.relay(2).take_completed()->blob == v1.blob);
  EXPECT_TRUE(b.relay(3).take_completed()->blob == v1.blob);
  // A second heartbeat soon after does not send it again.
  b.heartbeat(2);
  EXPECT_EQ(b.source_stats().direct_sends, 2u);

  // Receiver 1 has been silent past the member timeout: the next chain leaves it out.
  b.now_ms = 7000;
  for (size_t i : {0, 2, 3}) b.heartbeat(i);
  const Published v2 = publish(2, 256 << 10, 32 << 10, 6);
  b.feed_version(v2);
  EXPECT_EQ(b.chains(), (std::vector<std::vector<uint64_t>>{{0, 2, 3}}));
  for (size_t i : {0, 2, 3}) ASSERT_TRUE(b.holds(i, 2)) << "receiver " << i;
  EXPECT_TRUE(b.relay(3).take_completed()->blob == v2.blob);
  EXPECT_EQ(b.source_stats().direct_sends, 2u);
  EXPECT_EQ(b.source_stats().members_dropped, 1u);
}

TEST(WeightRelayTest, ReceiverBehindADeadHopIsCaughtUpWhileVersionsKeepComing) {
  test_util::TempDir dir("wrelay");
  WeightSourceOptions o;
  o.behind_grace_ms = 2000;
  Broadcast b(ipc_endpoints(dir, 3), "ipc://" + dir.path() + "/src", o, {true, false, true});
  for (size_t i = 0; i < 3; ++i) b.heartbeat(i);
  // A version every 500 ms: the newest is never 2 s old, but receiver 2 lacks older ones.
  for (int v = 1; v <= 4; ++v) {
    b.now_ms = (v - 1) * 500;
    b.heartbeat(1);  // the dead hop's last heartbeats are still fresh
    b.feed_version(publish(static_cast<uint64_t>(v), 64 << 10, 16 << 10, 20 + v));
    b.heartbeat(2);
  }
  ASSERT_TRUE(b.holds(0, 4));
  EXPECT_EQ(b.relay(2).held_version(), -1);
  EXPECT_EQ(b.source_stats().direct_sends, 0u);  // at 1500 ms nothing is 2 s old yet
  b.now_ms = 2000;  // v1 completed 2 s ago and receiver 2 still lacks it
  const Published v5 = publish(5, 64 << 10, 16 << 10, 25);
  b.feed_version(v5);
  b.heartbeat(2);
  EXPECT_EQ(b.source_stats().direct_sends, 1u);
  ASSERT_TRUE(b.holds(2, 5));
  EXPECT_TRUE(b.relay(2).take_completed()->blob == v5.blob);
}

TEST(WeightSourceTest, AChainMemberOneVersionBehindIsNotSentDirectly) {
  int sends = 0;
  WeightSourceOptions o;
  o.behind_grace_ms = 2000;
  WeightSource source([&](const std::string&, std::string_view) { ++sends; return ok_status(); },
                      [](uint64_t id) { return "inproc://g" + std::to_string(id); }, o);
  auto heartbeat = [&](int64_t held, int64_t now) {
    Heartbeat hb;
    hb.role = "generator";
    hb.policy_version = held < 0 ? 0 : static_cast<uint64_t>(held);
    hb.in_flight = held < 0 ? -1 : 0;
    ASSERT_TRUE(source.on_message(encode(hb), now).ok());
  };
  heartbeat(-1, 0);
  // Versions every 100 ms; each heartbeat arrives while the newest is still on its way.
  for (int v = 1; v <= 50; ++v) {
    const Published p = publish(static_cast<uint64_t>(v), 4 << 10, 1 << 10, static_cast<uint32_t>(v));
    ASSERT_TRUE(source.on_message(p.manifest, v * 100).ok());
    for (const auto& c : p.chunks) ASSERT_TRUE(source.on_message(c, v * 100).ok());
    heartbeat(v - 1, v * 100 + 50);
  }
  EXPECT_EQ(source.stats().direct_sends, 0u);
  EXPECT_EQ(sends, 50 * 5);  // the manifest and 4 chunks of each version, to the head only
  // Stuck at v10 while v30 (completed at 3000 ms, over 2 s before 5100 ms) exists: sent directly.
  heartbeat(10, 5100);
  EXPECT_EQ(source.stats().direct_sends, 1u);
  EXPECT_EQ(sends, 50 * 5 + 5);
}

TEST(WeightRelayTest, LateJoinerGetsTheLatestVersionAtOnce) {
  test_util::TempDir dir("wrelay");
  Broadcast b(ipc_endpoints(dir, 2), "ipc://" + dir.path() + "/src");
  b.heartbeat(0);
  const Published v1 = publish(1, 100 << 10, 32 << 10, 7);
  b.feed_version(v1);
  ASSERT_TRUE(b.holds(0, 1));
  b.now_ms = 10;  // well within the grace: receiver 1 was in no chain, so it is not waited for
  b.heartbeat(1);
  ASSERT_TRUE(b.holds(1, 1));
  EXPECT_TRUE(b.relay(1).take_completed()->blob == v1.blob);
  EXPECT_EQ(b.source_stats().direct_sends, 1u);
}

// --- hostile input -----------------------------------------------------------------------------

TEST(WeightRelayTest, MalformedManifestsAndChunksAreDroppedAndCounted) {
  test_util::TempDir dir("wrelay");
  auto transport = Transport::create();
  const std::string self = "ipc://" + dir.path() + "/g0";
  const std::string next = "ipc://" + dir.path() + "/g1";
  WeightRelayOptions o;
  o.self_endpoint = self;
  auto relay = std::move(WeightRelay::create(transport, o)).value();
  test_util::Collector downstream;
  auto next_mailbox = std::move(Mailbox::bind(transport, next, downstream.callback())).value();

  const Published v1 = publish(1, 64 << 10, 16 << 10, 8);
  WeightManifest good;
  ASSERT_TRUE(decode(v1.manifest, &good).ok());
  auto handle = [&](std::string bytes) { return relay->handle(bytes); };

  WeightManifest m = good;
  m.chunk_checksums.pop_back();  // 3 checksums for 4 chunks
  EXPECT_TRUE(handle(encode(m)));
  m = good;
  m.relay = {"not-an-endpoint"};
  EXPECT_TRUE(handle(encode(m)));
  m = good;
  m.relay = {next, self};  // would come back here
  EXPECT_TRUE(handle(encode(m)));
  m = good;
  m.tensors[0].nbytes = (64 << 10) + 1;  // a tensor past the end of the blob
  EXPECT_TRUE(handle(encode(m)));
  EXPECT_EQ(relay->stats().malformed, 4u);
  EXPECT_EQ(relay->stats().manifests, 0u);

  WeightChunk c;
  ASSERT_TRUE(decode(v1.chunks[0], &c).ok());
  EXPECT_TRUE(handle(v1.chunks[0]));  // before any manifest: nothing to check it against
  EXPECT_EQ(relay->stats().stale, 1u);

  m = good;
  m.relay = {next};
  EXPECT_TRUE(handle(encode(m)));
  EXPECT_EQ(relay->stats().manifests, 1u);
  WeightChunk bad = c;
  bad.index = 9;  // out of range
  EXPECT_TRUE(handle(encode(bad)));
  EXPECT_EQ(relay->stats().malformed, 5u);
  bad = c;
  bad.data.pop_back();  // wrong size: damaged, like a checksum mismatch
  EXPECT_TRUE(handle(encode(bad)));
  EXPECT_EQ(relay->stats().corrupt, 1u);
  bad = c;
  bad.version = 0;  // an older version
  EXPECT_TRUE(handle(encode(bad)));
  EXPECT_EQ(relay->stats().stale, 2u);

  // Bytes that are no message, and other messages, are left to the owner untouched.
  std::string garbage(64, '\xff');
  EXPECT_FALSE(relay->handle(garbage));
  EXPECT_EQ(garbage, std::string(64, '\xff'));
  std::string grant = encode(LeaseGrant{});
  const std::string grant_copy = grant;
  EXPECT_FALSE(relay->handle(grant));
  EXPECT_EQ(grant, grant_copy);

  // None of the bad messages went downstream; the good ones still do and complete the version.
  for (const auto& chunk : v1.chunks) EXPECT_TRUE(handle(chunk));
  EXPECT_EQ(relay->held_version(), 1);
  ASSERT_TRUE(downstream.wait_for(5));
  std::this_thread::sleep_for(50ms);
  const auto got = downstream.messages();
  ASSERT_EQ(got.size(), 5u);
  WeightManifest forwarded;
  ASSERT_TRUE(decode(got[0], &forwarded).ok());
  EXPECT_TRUE(forwarded.relay.empty());
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(got[i + 1], v1.chunks[i]);  // the received bytes, unchanged
  next_mailbox->close();
}

TEST(WeightSourceTest, MalformedRequestsAndHeartbeatsAreDroppedAndCounted) {
  std::vector<std::pair<std::string, std::string>> sent;
  WeightSource source([&](const std::string& e, std::string_view b) {
                        sent.emplace_back(e, std::string(b));
                        return ok_status();
                      },
                      [](uint64_t id) { return id < 2 ? "inproc://g" + std::to_string(id) : std::string(); });
  Heartbeat hb;
  hb.role = "generator";
  hb.worker_id = 0;
  hb.in_flight = -1;
  ASSERT_TRUE(source.on_message(encode(hb), 0).ok());
  const Published v1 = publish(1, 64 << 10, 16 << 10, 9);
  ASSERT_TRUE(source.on_message(v1.manifest, 0).ok());
  for (const auto& c : v1.chunks) ASSERT_TRUE(source.on_message(c, 0).ok());
  ASSERT_EQ(source.latest_version(), 1);
  sent.clear();

  auto request = [](uint64_t version, uint64_t worker, std::vector<uint32_t> indices) {
    WeightChunkRequest r;
    r.version = version;
    r.worker_id = worker;
    r.indices = std::move(indices);
    return encode(r);
  };
  EXPECT_EQ(source.on_message(request(1, 0, {4}), 10).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(source.on_message(request(1, 0, {}), 10).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(source.on_message(request(1, 7, {0}), 10).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(source.on_message(request(1, 0, std::vector<uint32_t>(5, 0)), 10).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(source.on_message(std::string(24, '\x07'), 10).ok());
  EXPECT_EQ(source.on_message(encode(LeaseGrant{}), 10).code(), StatusCode::kInvalidArgument);
  hb.worker_id = 1u << 30;  // no such generator
  EXPECT_EQ(source.on_message(encode(hb), 10).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(source.stats().bad_messages, 7u);
  EXPECT_TRUE(sent.empty());
  // A request for a version no longer kept is not an error, just late.
  EXPECT_TRUE(source.on_message(request(0, 0, {0}), 10).ok());
  EXPECT_EQ(source.stats().stale, 1u);
  // A good request is answered with exactly the chunks asked for (duplicates once).
  ASSERT_TRUE(source.on_message(request(1, 1, {2, 0, 2}), 10).ok());
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].first, "inproc://g1");
  EXPECT_EQ(sent[0].second, v1.chunks[0]);
  EXPECT_EQ(sent[1].second, v1.chunks[2]);

  // From the learner: an inconsistent manifest and a chunk that fails its checksum are refused.
  WeightManifest m;
  ASSERT_TRUE(decode(publish(2, 64 << 10, 16 << 10, 10).manifest, &m).ok());
  m.total_bytes += 16 << 10;  // 5 chunks' worth, 4 checksums
  EXPECT_EQ(source.on_message(encode(m), 20).code(), StatusCode::kInvalidArgument);
  const Published v2 = publish(2, 64 << 10, 16 << 10, 11);
  ASSERT_TRUE(source.on_message(v2.manifest, 20).ok());
  EXPECT_EQ(source.on_message(flip_a_byte(v2.chunks[1]), 20).code(), StatusCode::kDataLoss);
  EXPECT_EQ(source.stats().bad_messages, 9u);
}

}  // namespace
}  // namespace grpo::cluster
