// Tests of cluster/security.h: CURVE keys, key files, and secured mailboxes, outboxes and rings
// over ipc:// (in a temp dir) and tcp://127.0.0.1 (inproc:// runs no security at all).
#include "tests/cluster/test_util.h"
#include "cluster/security.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cluster/allreduce.h"
#include "cluster/transport.h"

namespace grpo::cluster {
namespace {

using test_util::Collector;
using test_util::TempDir;

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long a refused peer is given to (not) get a message through.
constexpr milliseconds kRefusalWindow{500};



CurveKeyPair new_pair() {
  auto pair = generate_curve_keypair();
  EXPECT_TRUE(pair.ok()) << pair.status();
  return pair.ok() ? *pair : CurveKeyPair{};
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

int file_mode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int>(st.st_mode & 0777);
}

// The endpoints a secured test runs on: an ipc path in `dir`, and an ephemeral tcp port.
std::vector<std::string> secured_endpoints(const TempDir& dir, const std::string& name) {
  return {"ipc://" + dir.path() + "/" + name, "tcp://127.0.0.1:*"};
}

OutboxOptions outbox_with(SecurityOptions security) {
  OutboxOptions o;
  o.security = std::move(security);
  return o;
}

MailboxOptions mailbox_with(SecurityOptions security) {
  MailboxOptions o;
  o.security = std::move(security);
  return o;
}

// ---------------------------------------------------------------------------------------------
// Keys and key files

TEST(SecurityTest, CurveIsSupportedAndKeypairsAreFreshAndConsistent) {
  ASSERT_TRUE(curve_supported());
  const CurveKeyPair a = new_pair();
  const CurveKeyPair b = new_pair();
  EXPECT_EQ(a.public_key.size(), kCurveKeyZ85Chars);
  EXPECT_EQ(a.secret_key.size(), kCurveKeyZ85Chars);
  EXPECT_NE(a.public_key, b.public_key);
  EXPECT_NE(a.secret_key, b.secret_key);
  EXPECT_TRUE(check_curve_keypair(a, "a").ok());
  EXPECT_TRUE(check_curve_key(a.public_key, "a").ok());
  // A public key from another pair does not belong to the secret.
  const Status mixed = check_curve_keypair({b.public_key, a.secret_key}, "mixed");
  EXPECT_EQ(mixed.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(mixed.message().find("does not belong"), std::string::npos) << mixed;
}

TEST(SecurityTest, MalformedKeysAreRefusedWithTheProblem) {
  Status s = check_curve_key("abc", "k");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("3 characters"), std::string::npos) << s;
  s = check_curve_key(std::string(39, 'a') + "~", "k");
  EXPECT_NE(s.message().find("bad character at position 39"), std::string::npos) << s;
  s = check_curve_key(std::string(40, '#'), "k");  // each group overflows 32 bits
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("Z85"), std::string::npos) << s;
  EXPECT_EQ(check_curve_key("", "k").code(), StatusCode::kInvalidArgument);
}

TEST(SecurityTest, KeyFileRoundTripAndModes) {
  TempDir dir;
  const CurveKeyPair pair = new_pair();
  const std::string secret_path = dir.path() + "/cluster.key";
  const std::string public_path = dir.path() + "/cluster.pub";
  ASSERT_TRUE(write_key_file(secret_path, pair).ok());
  ASSERT_TRUE(write_public_key_file(public_path, pair.public_key).ok());
  EXPECT_EQ(file_mode(secret_path), 0600);
  EXPECT_EQ(file_mode(public_path), 0644);

  auto read = read_key_file(secret_path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->public_key, pair.public_key);
  EXPECT_EQ(read->secret_key, pair.secret_key);
  auto pub = read_public_key_file(public_path);
  ASSERT_TRUE(pub.ok()) << pub.status();
  EXPECT_EQ(*pub, pair.public_key);
  auto pub_of_secret_file = read_public_key_file(secret_path);
  ASSERT_TRUE(pub_of_secret_file.ok());
  EXPECT_EQ(*pub_of_secret_file, pair.public_key);

  // Overwriting replaces the file atomically and leaves no temporary behind.
  const CurveKeyPair other = new_pair();
  ASSERT_TRUE(write_key_file(secret_path, other).ok());
  EXPECT_EQ(read_key_file(secret_path)->secret_key, other.secret_key);
  EXPECT_EQ(std::system(("test -z \"$(ls '" + dir.path() + "' | grep tmp)\"").c_str()), 0);

  // A hand-written file with comments, blank lines and spaces is accepted.
  const std::string hand = dir.path() + "/hand.key";
  write_text(hand, "# comment\n\n  secret=\"" + pair.secret_key + "\"  # trailing\r\npublic = \"" +
                       pair.public_key + "\"");
  auto hand_read = read_key_file(hand);
  ASSERT_TRUE(hand_read.ok()) << hand_read.status();
  EXPECT_EQ(hand_read->public_key, pair.public_key);
}

TEST(SecurityTest, MalformedKeyFilesNameTheFileAndTheProblem) {
  TempDir dir;
  const CurveKeyPair pair = new_pair();
  const CurveKeyPair other = new_pair();
  auto expect_error = [&](const std::string& name, const std::string& content, StatusCode code,
                          const std::string& needle, bool public_only = false) {
    const std::string path = dir.path() + "/" + name;
    if (!content.empty()) write_text(path, content);
    const Status s = public_only ? read_public_key_file(path).status()
                                 : read_key_file(path).status();
    EXPECT_EQ(s.code(), code) << name << ": " << s;
    EXPECT_NE(s.message().find(path), std::string::npos) << name << ": " << s;
    EXPECT_NE(s.message().find(needle), std::string::npos) << name << ": " << s;
  };
  const std::string pub_line = "public = \"" + pair.public_key + "\"\n";
  const std::string sec_line = "secret = \"" + pair.secret_key + "\"\n";
  expect_error("missing.key", "", StatusCode::kNotFound, "does not exist");
  expect_error("missing.pub", "", StatusCode::kNotFound, "does not exist", true);
  expect_error("short.key", pub_line + "secret = \"abc\"\n", StatusCode::kInvalidArgument,
               "line 2: `secret` key has 3 characters");
  expect_error("badchar.key", "public = \"" + std::string(40, '~') + "\"\n" + sec_line,
               StatusCode::kInvalidArgument, "bad character");
  expect_error("overflow.pub", "public = \"" + std::string(40, '#') + "\"\n",
               StatusCode::kInvalidArgument, "not valid Z85", true);
  expect_error("public_only.key", pub_line, StatusCode::kInvalidArgument, "no `secret`");
  expect_error("no_public.key", sec_line, StatusCode::kInvalidArgument, "no `public`");
  expect_error("mismatch.key", "public = \"" + other.public_key + "\"\n" + sec_line,
               StatusCode::kInvalidArgument, "does not belong");
  expect_error("unknown.key", pub_line + sec_line + "colour = \"blue\"\n",
               StatusCode::kInvalidArgument, "unknown key `colour`");
  expect_error("unquoted.key", "public = " + pair.public_key + "\n" + sec_line,
               StatusCode::kInvalidArgument, "quoted string");
  expect_error("twice.key", pub_line + pub_line + sec_line, StatusCode::kInvalidArgument,
               "given twice");
  expect_error("garbage.key", "hello\n", StatusCode::kInvalidArgument, "line 1");
  (void)::mkdir((dir.path() + "/dir.key").c_str(), 0700);
  expect_error("dir.key", "", StatusCode::kInvalidArgument, "not a regular file");

  // Writing refuses malformed keys and names the file.
  const Status w = write_key_file(dir.path() + "/w.key", {pair.public_key, other.secret_key});
  EXPECT_EQ(w.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(w.message().find("w.key"), std::string::npos) << w;
  EXPECT_EQ(file_mode(dir.path() + "/w.key"), -1);
  const Status no_dir = write_key_file(dir.path() + "/no/such/dir.key", pair);
  EXPECT_FALSE(no_dir.ok());
  EXPECT_NE(no_dir.message().find("no/such/dir.key"), std::string::npos) << no_dir;
}

TEST(SecurityTest, SocketsRefuseMalformedSecurityOptions) {
  auto transport = Transport::create();
  SecurityOptions bad;
  bad.enabled = true;
  bad.own = {"short", "short"};
  Collector c;
  auto mailbox = Mailbox::bind(transport, "tcp://127.0.0.1:*", c.callback(), mailbox_with(bad));
  EXPECT_EQ(mailbox.status().code(), StatusCode::kInvalidArgument) << mailbox.status();
  auto outbox = Outbox::connect(transport, "tcp://127.0.0.1:1", outbox_with(bad));
  EXPECT_EQ(outbox.status().code(), StatusCode::kInvalidArgument) << outbox.status();
  SecurityOptions bad_allow = cluster_security(new_pair());
  bad_allow.allowed_client_keys.push_back("nope");
  mailbox = Mailbox::bind(transport, "tcp://127.0.0.1:*", c.callback(), mailbox_with(bad_allow));
  EXPECT_EQ(mailbox.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(mailbox.status().message().find("allowed client key 1"), std::string::npos)
      << mailbox.status();
  RingOptions ring;
  ring.security = bad;
  auto r = RingAllReduce::create(transport, 0, {"tcp://127.0.0.1:1", "tcp://127.0.0.1:2"}, ring);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status();
}

// ---------------------------------------------------------------------------------------------
// Secured mailboxes and outboxes

TEST(SecurityTest, SecuredMailboxReceivesFromClusterMember) {
  TempDir dir;
  const CurveKeyPair cluster = new_pair();
  for (const std::string& endpoint : secured_endpoints(dir, "member")) {
    SCOPED_TRACE(endpoint);
    auto server = Transport::create();
    auto client = Transport::create();  // as if in another process
    Collector c;
    auto mailbox =
        Mailbox::bind(server, endpoint, c.callback(), mailbox_with(cluster_security(cluster)));
    ASSERT_TRUE(mailbox.ok()) << mailbox.status();
    auto outbox =
        Outbox::connect(client, (*mailbox)->endpoint(), outbox_with(cluster_security(cluster)));
    ASSERT_TRUE(outbox.ok()) << outbox.status();
    for (int i = 0; i < 100; ++i) ASSERT_TRUE((*outbox)->send("m" + std::to_string(i)).ok());
    ASSERT_TRUE(c.wait_for(100));
    const auto got = c.messages();
    for (int i = 0; i < 100; ++i) EXPECT_EQ(got[i], "m" + std::to_string(i));
    EXPECT_EQ(server->authentication_denied(), 0u);
  }
}

TEST(SecurityTest, StrangersAndUnsecuredOutboxesAreRefused) {
  TempDir dir;
  const CurveKeyPair cluster = new_pair();
  for (const std::string& endpoint : secured_endpoints(dir, "refuse")) {
    SCOPED_TRACE(endpoint);
    auto server = Transport::create();
    auto client = Transport::create();
    Collector c;
    auto mailbox =
        Mailbox::bind(server, endpoint, c.callback(), mailbox_with(cluster_security(cluster)));
    ASSERT_TRUE(mailbox.ok()) << mailbox.status();
    const std::string& at = (*mailbox)->endpoint();

    // Knows the server's public key but holds a random keypair of its own.
    SecurityOptions stranger = cluster_security(new_pair());
    stranger.server_public_key = cluster.public_key;
    // Holds the cluster pair but expects another server key: the server cannot prove itself.
    SecurityOptions wrong_server = cluster_security(cluster);
    wrong_server.server_public_key = new_pair().public_key;
    auto a = Outbox::connect(client, at, outbox_with(stranger));
    auto b = Outbox::connect(client, at, OutboxOptions{});  // no security at all
    auto d = Outbox::connect(client, at, outbox_with(wrong_server));
    ASSERT_TRUE(a.ok() && b.ok() && d.ok());
    for (int i = 0; i < 10; ++i) {
      EXPECT_TRUE((*a)->send("stranger").ok());
      EXPECT_TRUE((*b)->send("plain").ok());
      EXPECT_TRUE((*d)->send("wrong-server").ok());
    }
    EXPECT_FALSE(c.wait_for(1, kRefusalWindow));
    EXPECT_EQ((*mailbox)->received(), 0u);
    EXPECT_EQ((*mailbox)->dropped(), 0u);
    EXPECT_GE(server->authentication_denied(), 1u);  // the stranger, refused by ZAP

    // The mailbox goes on serving the legitimate client.
    auto good = Outbox::connect(client, at, outbox_with(cluster_security(cluster)));
    ASSERT_TRUE(good.ok());
    ASSERT_TRUE((*good)->send("member").ok());
    ASSERT_TRUE(c.wait_for(1));
    std::this_thread::sleep_for(milliseconds(100));
    EXPECT_EQ(c.messages(), std::vector<std::string>{"member"});
  }
}

TEST(SecurityTest, SecuredOutboxCannotTalkToUnsecuredMailbox) {
  TempDir dir;
  const CurveKeyPair cluster = new_pair();
  auto transport = Transport::create();
  Collector c;
  auto mailbox = Mailbox::bind(transport, "ipc://" + dir.path() + "/plain", c.callback());
  ASSERT_TRUE(mailbox.ok());
  auto outbox =
      Outbox::connect(transport, (*mailbox)->endpoint(), outbox_with(cluster_security(cluster)));
  ASSERT_TRUE(outbox.ok());
  ASSERT_TRUE((*outbox)->send("x").ok());
  EXPECT_FALSE(c.wait_for(1, kRefusalWindow));
}

TEST(SecurityTest, AdminMailboxAdmitsOnlyTheAdminKey) {
  TempDir dir;
  const CurveKeyPair cluster = new_pair();
  const CurveKeyPair admin = new_pair();
  for (const std::string& endpoint : secured_endpoints(dir, "admin")) {
    SCOPED_TRACE(endpoint);
    auto server = Transport::create();
    auto client = Transport::create();
    Collector member_box;
    Collector admin_box;
    // A member's ordinary mailbox and its admin mailbox share the server's Transport (and ZAP
    // handler) but have different allow-lists.
    auto member_mailbox = Mailbox::bind(server, "tcp://127.0.0.1:*", member_box.callback(),
                                        mailbox_with(cluster_security(cluster)));
    ASSERT_TRUE(member_mailbox.ok());
    auto admin_mailbox = Mailbox::bind(server, endpoint, admin_box.callback(),
                                       mailbox_with(admin_server_security(cluster,
                                                                          admin.public_key)));
    ASSERT_TRUE(admin_mailbox.ok()) << admin_mailbox.status();

    auto member = Outbox::connect(client, (*admin_mailbox)->endpoint(),
                                  outbox_with(cluster_security(cluster)));
    ASSERT_TRUE(member.ok());
    ASSERT_TRUE((*member)->send("from member").ok());
    EXPECT_FALSE(admin_box.wait_for(1, kRefusalWindow));
    EXPECT_GE(server->authentication_denied(), 1u);

    auto op = Outbox::connect(client, (*admin_mailbox)->endpoint(),
                              outbox_with(admin_client_security(admin, cluster.public_key)));
    ASSERT_TRUE(op.ok());
    ASSERT_TRUE((*op)->send("from admin").ok());
    ASSERT_TRUE(admin_box.wait_for(1));
    std::this_thread::sleep_for(milliseconds(100));
    EXPECT_EQ(admin_box.messages(), std::vector<std::string>{"from admin"});

    // The admin key is not a cluster key: the ordinary mailbox refuses it.
    auto op_to_member = Outbox::connect(client, (*member_mailbox)->endpoint(),
                                        outbox_with(admin_client_security(admin,
                                                                          cluster.public_key)));
    ASSERT_TRUE(op_to_member.ok());
    ASSERT_TRUE((*op_to_member)->send("admin to member").ok());
    EXPECT_FALSE(member_box.wait_for(1, kRefusalWindow));
  }
}

TEST(SecurityTest, MailboxRebindsWithNewKeysAfterClose) {
  TempDir dir;
  const std::string endpoint = "ipc://" + dir.path() + "/rebind";
  const CurveKeyPair first = new_pair();
  const CurveKeyPair second = new_pair();
  auto transport = Transport::create();
  Collector c;
  auto m1 = Mailbox::bind(transport, endpoint, c.callback(), mailbox_with(cluster_security(first)));
  ASSERT_TRUE(m1.ok());
  (*m1)->close();
  auto m2 =
      Mailbox::bind(transport, endpoint, c.callback(), mailbox_with(cluster_security(second)));
  ASSERT_TRUE(m2.ok()) << m2.status();
  auto old_member = Outbox::connect(transport, endpoint, outbox_with(cluster_security(first)));
  ASSERT_TRUE((*old_member)->send("old").ok());
  EXPECT_FALSE(c.wait_for(1, kRefusalWindow));
  auto new_member = Outbox::connect(transport, endpoint, outbox_with(cluster_security(second)));
  ASSERT_TRUE((*new_member)->send("new").ok());
  ASSERT_TRUE(c.wait_for(1));
  EXPECT_EQ(c.messages(), std::vector<std::string>{"new"});
}

// Documents the header's warning: ZeroMQ runs no security mechanism on inproc://.
TEST(SecurityTest, InprocIsNeverAuthenticated) {
  auto transport = Transport::create();
  Collector c;
  auto mailbox = Mailbox::bind(transport, "inproc://secured-in-name-only", c.callback(),
                               mailbox_with(cluster_security(new_pair())));
  ASSERT_TRUE(mailbox.ok());
  auto plain = Outbox::connect(transport, "inproc://secured-in-name-only");
  ASSERT_TRUE(plain.ok());
  ASSERT_TRUE((*plain)->send("unchecked").ok());
  EXPECT_TRUE(c.wait_for(1));
}

TEST(SecurityTest, ShutdownWithZapHandlerDoesNotHang) {
  TempDir dir;
  const CurveKeyPair cluster = new_pair();
  for (int order = 0; order < 3; ++order) {
    const auto start = Clock::now();
    auto transport = Transport::create();
    Collector c;
    auto mailbox = Mailbox::bind(transport, "ipc://" + dir.path() + "/s" + std::to_string(order),
                                 c.callback(), mailbox_with(cluster_security(cluster)));
    ASSERT_TRUE(mailbox.ok());
    auto outbox = Outbox::connect(transport, (*mailbox)->endpoint(),
                                  outbox_with(cluster_security(new_pair())));  // refused
    ASSERT_TRUE(outbox.ok());
    ASSERT_TRUE((*outbox)->send("x").ok());
    std::this_thread::sleep_for(milliseconds(50));
    std::unique_ptr<Mailbox> m = std::move(*mailbox);
    std::unique_ptr<Outbox> o = std::move(*outbox);
    if (order == 0) {
      transport.reset();
      m.reset();
      o.reset();
    } else if (order == 1) {
      o.reset();
      transport.reset();
      m.reset();
    } else {
      m.reset();
      o.reset();
      transport.reset();
    }
    EXPECT_LT(Clock::now() - start, std::chrono::seconds(3)) << "order " << order;
  }
}

// ---------------------------------------------------------------------------------------------
// Secured ring all-reduce

TEST(SecurityTest, SecuredRingAllReduceWorksAndStrangersCannotInject) {
  TempDir dir;
  const CurveKeyPair cluster = new_pair();
  const std::vector<std::string> endpoints = {"ipc://" + dir.path() + "/ring0",
                                              "ipc://" + dir.path() + "/ring1"};
  RingOptions options;
  options.timeout_ms = 10000;
  options.security = cluster_security(cluster);
  std::vector<std::shared_ptr<Transport>> transports = {Transport::create(), Transport::create()};
  std::vector<std::unique_ptr<RingAllReduce>> ranks(2);
  for (int r = 0; r < 2; ++r) {
    auto ring = RingAllReduce::create(transports[r], r, endpoints, options);
    ASSERT_TRUE(ring.ok()) << ring.status();
    ranks[r] = std::move(*ring);
  }
  auto run_round = [&](float base) {
    std::vector<std::vector<float>> data(2, std::vector<float>(1000));
    for (int r = 0; r < 2; ++r) {
      for (size_t i = 0; i < data[r].size(); ++i) data[r][i] = base + r * 1000.0f + i;
    }
    std::vector<Status> results(2);
    std::vector<std::thread> threads;
    for (int r = 0; r < 2; ++r) {
      threads.emplace_back([&, r] {
        results[r] = ranks[r]->all_reduce_sum(data[r].data(), data[r].size());
      });
    }
    for (auto& t : threads) t.join();
    for (int r = 0; r < 2; ++r) {
      ASSERT_TRUE(results[r].ok()) << results[r];
      for (size_t i = 0; i < data[r].size(); ++i) {
        ASSERT_EQ(data[r][i], 2 * base + 1000.0f + 2.0f * i) << "rank " << r << " i " << i;
      }
    }
  };
  run_round(1.0f);

  // An unsecured peer and a stranger with random keys send to rank 0's endpoint. Had anything
  // arrived, the ring would have counted it as malformed (single frames are not ring messages).
  auto intruders = Transport::create();
  SecurityOptions stranger = cluster_security(new_pair());
  stranger.server_public_key = cluster.public_key;
  auto plain = Outbox::connect(intruders, endpoints[0]);
  auto keyed = Outbox::connect(intruders, endpoints[0], outbox_with(stranger));
  ASSERT_TRUE(plain.ok() && keyed.ok());
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE((*plain)->send(std::string(64, 'x')).ok());
    ASSERT_TRUE((*keyed)->send(std::string(64, 'y')).ok());
  }
  std::this_thread::sleep_for(kRefusalWindow);
  run_round(5.0f);
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(ranks[r]->malformed_dropped(), 0u) << "rank " << r;
    EXPECT_EQ(ranks[r]->stale_dropped(), 0u) << "rank " << r;
  }
  EXPECT_GE(transports[0]->authentication_denied(), 1u);
  (*plain)->close();
  (*keyed)->close();
  ranks.clear();
}

TEST(SecurityTest, SecuredAndUnsecuredRanksDoNotTalk) {
  TempDir dir;
  const std::vector<std::string> endpoints = {"ipc://" + dir.path() + "/mix0",
                                              "ipc://" + dir.path() + "/mix1"};
  RingOptions secured;
  secured.timeout_ms = 500;
  secured.security = cluster_security(new_pair());
  RingOptions plain;
  plain.timeout_ms = 500;
  auto t0 = Transport::create();
  auto t1 = Transport::create();
  auto r0 = RingAllReduce::create(t0, 0, endpoints, secured);
  auto r1 = RingAllReduce::create(t1, 1, endpoints, plain);
  ASSERT_TRUE(r0.ok() && r1.ok());
  Status s0;
  Status s1;
  std::thread a([&] { s0 = (*r0)->barrier(); });
  std::thread b([&] { s1 = (*r1)->barrier(); });
  a.join();
  b.join();
  EXPECT_EQ(s0.code(), StatusCode::kDeadlineExceeded) << s0;
  EXPECT_EQ(s1.code(), StatusCode::kDeadlineExceeded) << s1;
}

}  // namespace
}  // namespace grpo::cluster
