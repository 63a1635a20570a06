// Tests of cluster/transport.h over inproc://, ipc:// (in a temp dir) and tcp://127.0.0.1.
#include "tests/cluster/test_util.h"
#include "cluster/transport.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cluster/codec.h"

namespace grpo::cluster {
namespace {

using test_util::Collector;
using test_util::TempDir;

using Clock = std::chrono::steady_clock;



// Polls `pred` until it holds or the timeout passes.
bool wait_until(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Delivery is at most once: a message sent while a connection is being torn down can be lost.
// After a reconnect, tests send until one copy gets through.
bool send_until_received(Outbox& outbox, Collector& got, const std::string& message) {
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  const size_t before = got.messages().size();
  while (Clock::now() < deadline) {
    if (!outbox.send(message).ok()) return false;
    if (got.wait_for(before + 1, std::chrono::milliseconds(50))) return true;
  }
  return false;
}

std::unique_ptr<Mailbox> must_bind(const std::shared_ptr<Transport>& t, const std::string& ep,
                                   Mailbox::Callback cb, MailboxOptions options = {}) {
  StatusOr<std::unique_ptr<Mailbox>> m = Mailbox::bind(t, ep, std::move(cb), options);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(m).value() : nullptr;
}

std::unique_ptr<Outbox> must_connect(const std::shared_ptr<Transport>& t, const std::string& ep,
                                     OutboxOptions options = {}) {
  StatusOr<std::unique_ptr<Outbox>> o = Outbox::connect(t, ep, options);
  EXPECT_TRUE(o.ok()) << o.status();
  return o.ok() ? std::move(o).value() : nullptr;
}

TEST(TransportTest, InprocDeliversThousandMessagesInOrder) {
  auto transport = Transport::create();
  Collector got;
  auto mailbox = must_bind(transport, "inproc://in-order", got.callback());
  auto outbox = must_connect(transport, "inproc://in-order");
  ASSERT_TRUE(mailbox && outbox);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(outbox->send("message " + std::to_string(i)).ok());
  ASSERT_TRUE(got.wait_for(1000));
  std::vector<std::string> messages = got.messages();
  ASSERT_EQ(messages.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(messages[i], "message " + std::to_string(i));
  EXPECT_EQ(outbox->sent(), 1000u);
  EXPECT_TRUE(wait_until([&] { return mailbox->received() == 1000; }));
  EXPECT_EQ(mailbox->dropped(), 0u);
}

TEST(TransportTest, InprocConnectBeforeBind) {
  auto transport = Transport::create();
  auto outbox = must_connect(transport, "inproc://late-binder");
  ASSERT_TRUE(outbox);
  ASSERT_TRUE(outbox->send("early").ok());  // queued until the mailbox binds
  Collector got;
  auto mailbox = must_bind(transport, "inproc://late-binder", got.callback());
  ASSERT_TRUE(got.wait_for(1));
  EXPECT_EQ(got.messages()[0], "early");
}

TEST(TransportTest, MultipleSendersToOneMailbox) {
  auto transport = Transport::create();
  Collector got;
  auto mailbox = must_bind(transport, "inproc://fan-in", got.callback());
  constexpr int kSenders = 4;
  constexpr int kPerSender = 250;
  std::vector<std::thread> threads;
  for (int s = 0; s < kSenders; ++s) {
    threads.emplace_back([&, s] {
      auto outbox = must_connect(transport, "inproc://fan-in");
      for (int i = 0; i < kPerSender; ++i) {
        EXPECT_TRUE(outbox->send(std::to_string(s) + ":" + std::to_string(i)).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(got.wait_for(kSenders * kPerSender));
  // Every message arrives once, and each sender's messages arrive in the order sent.
  std::map<int, int> next;
  for (const std::string& m : got.messages()) {
    const int sender = std::stoi(m.substr(0, m.find(':')));
    const int index = std::stoi(m.substr(m.find(':') + 1));
    EXPECT_EQ(index, next[sender]) << m;
    next[sender] = index + 1;
  }
  for (int s = 0; s < kSenders; ++s) EXPECT_EQ(next[s], kPerSender);
}

TEST(TransportTest, SharedOutboxFromManyThreads) {
  auto transport = Transport::create();
  Collector got;
  auto mailbox = must_bind(transport, "inproc://shared-outbox", got.callback());
  auto outbox = must_connect(transport, "inproc://shared-outbox");
  std::vector<std::thread> threads;
  for (int s = 0; s < 4; ++s) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) EXPECT_TRUE(outbox->send("x").ok());
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(got.wait_for(800));
  EXPECT_EQ(outbox->sent(), 800u);
}

TEST(TransportTest, OversizedInprocMessageIsDroppedAndCounted) {
  auto transport = Transport::create();
  Collector got;
  MailboxOptions options;
  options.max_message_bytes = 1024;
  auto mailbox = must_bind(transport, "inproc://small", got.callback(), options);
  auto outbox = must_connect(transport, "inproc://small");
  ASSERT_TRUE(outbox->send(std::string(4096, 'x')).ok());
  ASSERT_TRUE(outbox->send(std::string(1024, 'y')).ok());  // exactly the limit: accepted
  ASSERT_TRUE(got.wait_for(1));
  EXPECT_EQ(got.messages()[0], std::string(1024, 'y'));
  ASSERT_TRUE(wait_until([&] { return mailbox->received() == 1; }));  // counted after the callback
  EXPECT_EQ(mailbox->dropped(), 1u);
  EXPECT_EQ(mailbox->received(), 1u);
}

TEST(TransportTest, OversizedIpcMessageIsRefusedAndLaterMessagesArrive) {
  TempDir dir;
  const std::string endpoint = "ipc://" + dir.path() + "/small.sock";
  auto transport = Transport::create();
  Collector got;
  MailboxOptions options;
  options.max_message_bytes = 1024;
  auto mailbox = must_bind(transport, endpoint, got.callback(), options);
  auto outbox = must_connect(transport, endpoint);
  ASSERT_TRUE(outbox->send(std::string(64 * 1024, 'x')).ok());
  // ZeroMQ drops the connection that carried the oversized message; the outbox reconnects and
  // later messages get through (some sent meanwhile may be lost with the connection).
  ASSERT_TRUE(send_until_received(*outbox, got, "small"));
  for (const std::string& m : got.messages()) EXPECT_EQ(m, "small");
}

TEST(TransportTest, IpcRoundTripOfEncodedMessage) {
  TempDir dir;
  const std::string endpoint = "ipc://" + dir.path() + "/mailbox.sock";
  auto transport = Transport::create();
  Collector got;
  auto mailbox = must_bind(transport, endpoint, got.callback());
  ASSERT_TRUE(mailbox);
  EXPECT_EQ(mailbox->endpoint(), endpoint);
  auto outbox = must_connect(transport, endpoint);
  Heartbeat hb;
  hb.role = "verifier";
  hb.worker_id = 3;
  hb.timestamp_ms = 123;
  ASSERT_TRUE(outbox->send(encode(hb)).ok());
  ASSERT_TRUE(got.wait_for(1));
  Heartbeat decoded;
  ASSERT_TRUE(decode(got.messages()[0], &decoded).ok());
  EXPECT_EQ(decoded.role, "verifier");
  EXPECT_EQ(decoded.worker_id, 3u);
  EXPECT_EQ(decoded.timestamp_ms, 123u);

  // Closing unbinds: the socket file goes away and the path can be bound again at once.
  const std::string path = dir.path() + "/mailbox.sock";
  mailbox->close();
  struct stat st;
  EXPECT_NE(::stat(path.c_str(), &st), 0);
  Collector again;
  auto rebound = must_bind(transport, endpoint, again.callback());
  ASSERT_TRUE(rebound);
  ASSERT_TRUE(send_until_received(*outbox, again, "after rebind"));  // the outbox reconnects
  EXPECT_EQ(again.messages()[0], "after rebind");
}

TEST(TransportTest, TcpRoundTripOnEphemeralPort) {
  auto transport = Transport::create();
  Collector got;
  auto mailbox = must_bind(transport, "tcp://127.0.0.1:*", got.callback());
  ASSERT_TRUE(mailbox);
  EXPECT_EQ(mailbox->endpoint().rfind("tcp://127.0.0.1:", 0), 0u) << mailbox->endpoint();
  EXPECT_EQ(mailbox->endpoint().find('*'), std::string::npos) << mailbox->endpoint();
  auto outbox = must_connect(transport, mailbox->endpoint());
  ASSERT_TRUE(outbox->send("over tcp").ok());
  ASSERT_TRUE(got.wait_for(1));
  EXPECT_EQ(got.messages()[0], "over tcp");
}

TEST(TransportTest, BindingTwiceFails) {
  TempDir dir;
  auto transport = Transport::create();
  Collector got;
  auto tcp = must_bind(transport, "tcp://127.0.0.1:*", got.callback());
  ASSERT_TRUE(tcp);
  for (const std::string& endpoint :
       {std::string("inproc://twice"), "ipc://" + dir.path() + "/twice.sock", tcp->endpoint()}) {
    std::unique_ptr<Mailbox> first;
    if (endpoint.rfind("tcp", 0) != 0) {
      first = must_bind(transport, endpoint, got.callback());
      ASSERT_TRUE(first);
    }
    StatusOr<std::unique_ptr<Mailbox>> second = Mailbox::bind(transport, endpoint, got.callback());
    ASSERT_FALSE(second.ok()) << endpoint;
    EXPECT_EQ(second.status().code(), StatusCode::kAlreadyExists) << second.status();
    EXPECT_NE(second.status().message().find(endpoint), std::string::npos) << second.status();
  }
  // A second Transport (as another process would) cannot steal the ipc endpoint either.
  const std::string endpoint = "ipc://" + dir.path() + "/other.sock";
  auto first = must_bind(transport, endpoint, got.callback());
  auto other = Transport::create();
  StatusOr<std::unique_ptr<Mailbox>> stolen = Mailbox::bind(other, endpoint, got.callback());
  ASSERT_FALSE(stolen.ok());
  EXPECT_EQ(stolen.status().code(), StatusCode::kAlreadyExists) << stolen.status();
}

TEST(TransportTest, MalformedEndpointsFail) {
  auto transport = Transport::create();
  Collector got;
  StatusOr<std::unique_ptr<Mailbox>> m = Mailbox::bind(transport, "bogus://x", got.callback());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument) << m.status();
  EXPECT_NE(m.status().message().find("bogus://x"), std::string::npos);
  StatusOr<std::unique_ptr<Outbox>> o = Outbox::connect(transport, "tcp://nohostport");
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument) << o.status();
}

TEST(TransportTest, CloseIsPromptAndIdempotent) {
  auto transport = Transport::create();
  Collector got;
  auto mailbox = must_bind(transport, "inproc://closing", got.callback());
  auto outbox = must_connect(transport, "inproc://closing");
  ASSERT_TRUE(outbox->send("one").ok());
  ASSERT_TRUE(got.wait_for(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(30));  // let the thread sit in poll

  const auto start = Clock::now();
  mailbox->close();
  const auto elapsed = Clock::now() - start;
  EXPECT_LT(elapsed, std::chrono::milliseconds(300));  // typically ~poll_interval_ms (20 ms)
  mailbox->close();
  outbox->close();
  outbox->close();
  EXPECT_EQ(outbox->send("after close").code(), StatusCode::kFailedPrecondition);
  // The endpoint is free again.
  auto again = must_bind(transport, "inproc://closing", got.callback());
  EXPECT_TRUE(again);
}

TEST(TransportTest, CallbackExceptionsDoNotStopTheMailbox) {
  auto transport = Transport::create();
  std::atomic<int> calls{0};
  auto mailbox = must_bind(transport, "inproc://throws", [&](std::string bytes) {
    ++calls;
    if (bytes == "throw") throw std::runtime_error("callback failure (expected by the test)");
    if (bytes == "throw int") throw 42;
  });
  auto outbox = must_connect(transport, "inproc://throws");
  ASSERT_TRUE(outbox->send("throw").ok());
  ASSERT_TRUE(outbox->send("throw int").ok());
  ASSERT_TRUE(outbox->send("fine").ok());
  ASSERT_TRUE(wait_until([&] { return mailbox->received() == 3; }));
  EXPECT_EQ(calls.load(), 3);
  EXPECT_EQ(mailbox->received(), 3u);
  EXPECT_EQ(mailbox->callback_errors(), 2u);
}

TEST(TransportTest, CloseFromInsideCallbackStopsReceiving) {
  auto transport = Transport::create();
  std::atomic<int> calls{0};
  Mailbox* self = nullptr;
  auto mailbox = must_bind(transport, "inproc://self-close", [&](std::string) {
    ++calls;
    self->close();  // only requests the stop
  });
  self = mailbox.get();
  auto outbox = must_connect(transport, "inproc://self-close");
  ASSERT_TRUE(outbox->send("a").ok());
  ASSERT_TRUE(outbox->send("b").ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(calls.load(), 1);
  mailbox.reset();  // joins the (already finished) thread
}

TEST(TransportTest, SendTimesOutWhenNoPeer) {
  // (ZMQ_IMMEDIATE has no effect on inproc://, whose connections exist before the bind.)
  TempDir dir;
  auto transport = Transport::create();
  OutboxOptions options;
  options.send_timeout_ms = 50;
  options.immediate = true;  // do not queue for a peer that is not there
  auto outbox = must_connect(transport, "ipc://" + dir.path() + "/nobody-home.sock", options);
  const auto start = Clock::now();
  Status s = outbox->send("hello?");
  const auto elapsed = Clock::now() - start;
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_GE(elapsed, std::chrono::milliseconds(40));
  EXPECT_LT(elapsed, std::chrono::seconds(2));
}

TEST(TransportTest, SendTimesOutWhenQueueIsFull) {
  auto transport = Transport::create();
  OutboxOptions options;
  options.send_timeout_ms = 20;
  options.send_hwm = 10;
  // A peer that never reads: a bare mailbox whose callback blocks until released.
  std::mutex gate;
  gate.lock();
  MailboxOptions mailbox_options;
  mailbox_options.receive_hwm = 10;
  auto mailbox = must_bind(transport, "inproc://blocked", [&](std::string) {
    std::lock_guard<std::mutex> lock(gate);
  }, mailbox_options);
  auto outbox = must_connect(transport, "inproc://blocked", options);
  Status s;
  int sent = 0;
  for (; sent < 10000 && s.ok(); ++sent) s = outbox->send("fill");
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_LT(sent, 10000);
  gate.unlock();
}

TEST(TransportTest, ShutdownInAnyOrderDoesNotHang) {
  const auto start = Clock::now();
  for (int order = 0; order < 3; ++order) {
    auto transport = Transport::create();
    Collector got;
    auto mailbox = must_bind(transport, "inproc://shutdown", got.callback());
    auto outbox = must_connect(transport, "inproc://shutdown");
    auto orphan = must_connect(transport, "inproc://nobody");  // messages that never leave
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE(outbox->send("m").ok());
      ASSERT_TRUE(orphan->send("lost").ok());
    }
    transport.reset();  // the sockets keep the context alive
    if (order == 0) {
      mailbox.reset();
      outbox.reset();
      orphan.reset();
    } else if (order == 1) {
      orphan.reset();
      outbox.reset();
      mailbox.reset();
    } else {
      outbox->close();
      mailbox->close();
      orphan.reset();
      outbox.reset();
      mailbox.reset();
    }
  }
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
}

}  // namespace
}  // namespace grpo::cluster
