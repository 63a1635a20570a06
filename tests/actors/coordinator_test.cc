// The coordinator actor against fake generators on real inproc:// sockets and its real RocksDB
// state store: grants, a restarted generator's re-issue, epoch fencing, a lost generator's leases
// going to another, pause/resume and status through the admin socket (ipc://), a restarted
// coordinator continuing from its store, and storage acknowledgement: a lease completes only when
// the (fake) buffer reports its group stored, exactly once; a finished lease whose verifier restarts
// or is lost, or that stays unconfirmed past the store timeout, is re-issued; unknown ids are ignored.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <set>
#include <thread>

#include "actors/roles.h"
#include "actors/run_config.h"
#include "actors/run_phases.h"
#include "cluster/admin.h"
#include "cluster/codec.h"
#include "tests/cluster/test_util.h"

namespace grpo::actors {
namespace {

using cluster::test_util::Collector;
using cluster::test_util::TempDir;

RunSettings make_settings(const std::string& dir, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> o = {"run.endpoint_prefix=inproc://ct", "run.dir=" + dir, "grpo.steps=20",
                                "grpo.groups_per_step=2", "grpo.max_staleness=1", "generator.replicas=2",
                                "coordinator.member_timeout_seconds=1"};
  o.insert(o.end(), extra.begin(), extra.end());
  auto cfg = Config::parse(run_schema(), "", "t.toml", o);
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  auto s = settings_from_config(*cfg);
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

// One fake generator: a mailbox where grants arrive.
struct FakeGenerator {
  Collector got;
  std::unique_ptr<cluster::Mailbox> mailbox;
  size_t seen = 0;
  // The next grant, or nullopt when none comes within `wait`.
  std::optional<cluster::LeaseGrant> next(std::chrono::milliseconds wait = std::chrono::seconds(5)) {
    if (!got.wait_for(seen + 1, wait)) return std::nullopt;
    cluster::LeaseGrant g;
    EXPECT_TRUE(cluster::decode(got.messages()[seen++], &g).ok());
    return g;
  }
};

std::vector<uint64_t> ids_of(const cluster::LeaseGrant& g) {
  std::vector<uint64_t> ids;
  for (const auto& l : g.leases) ids.push_back(l.group_id);
  return ids;
}

class CoordinatorTest : public ::testing::Test {
 protected:
  void start(const RunSettings& st, bool restore = true) {
    if (!sys_) {
      sys_ = std::make_unique<caf::actor_system>(configure_actor_system(cfg_));
      supervisor_ = std::make_unique<caf::scoped_actor>(*sys_);
    }
    settings_ = st;
    if (!store_) store_ = std::move(storage::StateStore::open(dir_.path() + "/coordinator").value());
    RoleContext ctx{st, transport_, caf::actor(*supervisor_)};
    CoordinatorStart start;
    start.restore_pipeline = restore;
    coordinator_ = spawn_coordinator(*sys_, ctx, store_, start);
    // inproc:// connections do not survive the peer's socket closing (ipc:// and tcp:// reconnect),
    // so a restarted coordinator gets a fresh outbox.
    to_coordinator_ = std::move(cluster::Outbox::connect(transport_, "inproc://ct.coordinator.0").value());
    // The coordinator binds asynchronously; wait until its admin socket answers.
    for (int i = 0; i < 100 && !admin("status").ok(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  void stop() {
    (*supervisor_)->send_exit(coordinator_, caf::exit_reason::user_shutdown);
    (*supervisor_)->wait_for(coordinator_);
    coordinator_ = caf::actor();
  }
  void TearDown() override {
    if (coordinator_) stop();
    for (auto& g : generators_) g->mailbox.reset();
    buffer_mailbox_.reset();
    to_coordinator_.reset();
  }
  FakeGenerator& generator(int id) {
    while (static_cast<int>(generators_.size()) <= id) {
      auto g = std::make_unique<FakeGenerator>();
      const int n = static_cast<int>(generators_.size());
      g->mailbox = std::move(cluster::Mailbox::bind(transport_, "inproc://ct.generator." + std::to_string(n),
                                                    g->got.callback())
                                 .value());
      generators_.push_back(std::move(g));
    }
    return *generators_[static_cast<size_t>(id)];
  }
  // The fake buffer: a mailbox where the coordinator's StoredQuery messages arrive.
  Collector& buffer() {
    if (!buffer_mailbox_)
      buffer_mailbox_ = std::move(cluster::Mailbox::bind(transport_, "inproc://ct.buffer.0", buffer_got_.callback()).value());
    return buffer_got_;
  }
  void heartbeat(const std::string& role, uint64_t id, uint64_t epoch, std::vector<uint64_t> stored_ids = {}) {
    cluster::Heartbeat hb;
    hb.role = role;
    hb.worker_id = id;
    hb.epoch = epoch;
    hb.timestamp_ms = now_ms();
    hb.stored_ids = std::move(stored_ids);
    ASSERT_TRUE(to_coordinator_->send(cluster::encode(hb)).ok());
  }
  // The buffer reports these groups stored.
  void stored(std::vector<uint64_t> ids) { heartbeat("buffer", 0, 0, std::move(ids)); }
  // Polls the status until `until` holds (the admin socket and the mailbox are separate channels);
  // the last reply either way.
  cluster::AdminReply wait_status(const std::function<bool(const cluster::AdminReply&)>& until,
                                  std::chrono::milliseconds wait = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    cluster::AdminReply last;
    while (true) {
      auto r = admin("status");
      if (r.ok()) last = *r;
      if ((r.ok() && until(*r)) || std::chrono::steady_clock::now() > deadline) return last;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  void request(uint64_t worker, uint64_t epoch, bool restarted = false, bool retry = false, int max_groups = 2) {
    cluster::LeaseRequest r;
    r.worker_id = worker;
    r.policy_version = 0;
    r.max_groups = max_groups;
    r.epoch = epoch;
    r.restarted = restarted;
    r.retry = retry;
    ASSERT_TRUE(to_coordinator_->send(cluster::encode(r)).ok());
  }
  StatusOr<cluster::AdminReply> admin(const std::string& command, const std::string& role = "", int count = 0) {
    cluster::AdminRequest req;
    req.command = command;
    req.role = role;
    req.count = count;
    GRPO_ASSIGN_OR_RETURN(std::string bytes,
                          cluster::AdminClient::request(transport_, cluster::admin_endpoint("inproc://ct", dir_.path()),
                                                        cluster::encode(req), 2000));
    cluster::AdminReply reply;
    GRPO_RETURN_IF_ERROR(cluster::decode(bytes, &reply));
    return reply;
  }

  TempDir dir_{"coord"};
  std::shared_ptr<cluster::Transport> transport_ = cluster::Transport::create();
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::unique_ptr<caf::scoped_actor> supervisor_;
  std::shared_ptr<storage::StateStore> store_;
  RunSettings settings_;
  caf::actor coordinator_;
  std::unique_ptr<cluster::Outbox> to_coordinator_;
  std::vector<std::unique_ptr<FakeGenerator>> generators_;
  Collector buffer_got_;
  std::unique_ptr<cluster::Mailbox> buffer_mailbox_;
};

TEST_F(CoordinatorTest, GrantsReissuesToARestartedGeneratorAndFencesStaleEpochs) {
  FakeGenerator& g0 = generator(0);
  start(make_settings(dir_.path()));
  request(0, /*epoch=*/100);
  auto first = g0.next();
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->leases.size(), 2u);
  EXPECT_EQ(first->verifiers, 1);
  // The next request completes the grant and gets new groups.
  request(0, 100);
  auto second = g0.next();
  ASSERT_TRUE(second.has_value());
  ASSERT_EQ(second->leases.size(), 2u);
  EXPECT_NE(ids_of(*second), ids_of(*first));
  // A new epoch is a restarted process: its lost grant comes again, same groups and seeds.
  request(0, 200);
  auto again = g0.next();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(ids_of(*again), ids_of(*second));
  EXPECT_EQ(again->leases[0].seed, second->leases[0].seed);
  // A message from the old process (epoch 100) is fenced: no grant, nothing counted.
  request(0, 100);
  EXPECT_FALSE(g0.next(std::chrono::milliseconds(600)).has_value());
  auto status = admin("status");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->leases_issued, 4u);
  // The first grant is finished but not yet stored; its groups may have died in the restarted
  // process's outbox, so it waits in the re-issue queue rather than for the buffer.
  EXPECT_EQ(status->leases_completed, 0u);
  EXPECT_EQ(status->leases_awaiting_storage, 0u);
  EXPECT_EQ(status->leases_in_flight, 4u);
  EXPECT_EQ(status->run_state, "running");
  ASSERT_EQ(status->members.size(), 1u);
  EXPECT_EQ(status->members[0].epoch, 200u);
  // The buffer reports the first grant's groups stored after all: now they are completed (and need
  // no generator).
  stored(ids_of(*first));
  auto after = wait_status([](const cluster::AdminReply& r) { return r.leases_completed == 2; });
  EXPECT_EQ(after.leases_issued, 4u);
  EXPECT_EQ(after.leases_completed, 2u);
  EXPECT_EQ(after.leases_awaiting_storage, 0u);
  EXPECT_EQ(after.leases_in_flight, 2u);
}

TEST_F(CoordinatorTest, ALostGeneratorsLeasesGoToAnother) {
  FakeGenerator& g0 = generator(0);
  FakeGenerator& g1 = generator(1);
  start(make_settings(dir_.path()));
  request(0, 100);
  auto held = g0.next();
  ASSERT_TRUE(held.has_value());
  // Generator 0 falls silent; past member_timeout_seconds (1 s) it is lost and its leases are
  // the first thing the next generator gets.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  auto status = admin("members");
  ASSERT_TRUE(status.ok()) << status.status();
  ASSERT_EQ(status->members.size(), 1u);
  EXPECT_EQ(status->members[0].state, "lost");
  request(1, 300);
  auto taken = g1.next();
  ASSERT_TRUE(taken.has_value());
  EXPECT_EQ(ids_of(*taken), ids_of(*held));
  status = admin("status");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->leases_issued, 2u);  // re-issued, not new
}

TEST_F(CoordinatorTest, PauseHoldsLeasesResumeReleasesThem) {
  FakeGenerator& g0 = generator(0);
  start(make_settings(dir_.path()));
  auto paused = admin("pause");
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_EQ(paused->run_state, "paused");
  request(0, 100);
  EXPECT_FALSE(g0.next(std::chrono::milliseconds(600)).has_value());
  auto resumed = admin("resume");
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ(resumed->run_state, "running");
  EXPECT_TRUE(g0.next().has_value());  // the parked request is served
  // Scaling needs separate processes; an embedded run says so. Unknown commands are refused.
  auto scale = admin("scale", "generator", 4);
  ASSERT_TRUE(scale.ok());
  EXPECT_FALSE(scale->ok);
  EXPECT_NE(scale->error.find("embedded"), std::string::npos) << scale->error;
  auto bogus = admin("reboot");
  ASSERT_TRUE(bogus.ok());
  EXPECT_FALSE(bogus->ok);
  EXPECT_NE(bogus->error.find("unknown command 'reboot'"), std::string::npos);
}

TEST_F(CoordinatorTest, ARestartedCoordinatorContinuesFromItsStore) {
  FakeGenerator& g0 = generator(0);
  start(make_settings(dir_.path(), {"grpo.max_staleness=3", "coordinator.member_timeout_seconds=30"}));
  request(0, 100);
  auto first = g0.next();
  ASSERT_TRUE(first.has_value());
  request(0, 100);
  auto held = g0.next();
  ASSERT_TRUE(held.has_value());
  stored(ids_of(*first));
  ASSERT_EQ(wait_status([](const cluster::AdminReply& r) { return r.leases_completed == 2; }).leases_completed, 2u);
  ASSERT_TRUE(admin("pause").ok());
  stop();
  start(make_settings(dir_.path(), {"grpo.max_staleness=3", "coordinator.member_timeout_seconds=30"}));
  auto status = admin("status");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->leases_issued, 4u);
  EXPECT_EQ(status->leases_completed, 2u);
  EXPECT_EQ(status->leases_in_flight, 2u);
  EXPECT_EQ(status->run_state, "paused");
  ASSERT_TRUE(admin("resume").ok());
  // The generator never saw an answer to a request lost in the restart: its retry gets the grant
  // the store still holds as outstanding.
  request(0, 100, /*restarted=*/false, /*retry=*/true);
  auto again = g0.next();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(ids_of(*again), ids_of(*held));
  // Finishing it continues the id sequence where the first coordinator left it.
  request(0, 100);
  auto next = g0.next();
  ASSERT_TRUE(next.has_value());
  EXPECT_GT(ids_of(*next).front(), ids_of(*held).back());
}

// Storage acknowledgement: a finished lease completes only when the buffer reports its group, once;
// a report may come before the generator says it finished (the lease leaves its grant); ids never
// issued, and reports from roles other than the buffer, are ignored.
TEST_F(CoordinatorTest, ALeaseCompletesOnceWhenTheBufferReportsItsGroupStored) {
  FakeGenerator& g0 = generator(0);
  start(make_settings(dir_.path(), {"grpo.max_staleness=3", "coordinator.member_timeout_seconds=30"}));
  request(0, 100);
  auto a = g0.next();
  ASSERT_TRUE(a.has_value());
  request(0, 100);  // a is finished: its groups are on their way to the buffer
  auto b = g0.next();
  ASSERT_TRUE(b.has_value());
  ASSERT_EQ(ids_of(*a), (std::vector<uint64_t>{1, 2}));
  ASSERT_EQ(ids_of(*b), (std::vector<uint64_t>{3, 4}));
  auto status = admin("status");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->leases_completed, 0u);
  EXPECT_EQ(status->leases_awaiting_storage, 2u);
  EXPECT_EQ(status->leases_in_flight, 4u);

  stored({1});
  auto r = wait_status([](const cluster::AdminReply& x) { return x.leases_completed == 1; });
  EXPECT_EQ(r.leases_completed, 1u);
  EXPECT_EQ(r.leases_awaiting_storage, 1u);
  // Reported again (heartbeats and query answers overlap): still counted once. The report of 2
  // after it (same channel, in order) shows that the repeat was handled.
  stored({1, 1});
  stored({2});
  r = wait_status([](const cluster::AdminReply& x) { return x.leases_awaiting_storage == 0; });
  EXPECT_EQ(r.leases_completed, 2u);
  EXPECT_EQ(r.leases_in_flight, 2u);
  // Ids never issued (0, beyond the counter) are ignored; 3, still in generator 0's grant, leaves
  // it completed (its group reached the buffer before the generator asked again).
  stored({0, 999, 1u << 30, 3});
  r = wait_status([](const cluster::AdminReply& x) { return x.leases_completed == 3; });
  EXPECT_EQ(r.leases_completed, 3u);
  EXPECT_EQ(r.leases_issued, 4u);
  EXPECT_EQ(r.leases_in_flight, 1u);
  EXPECT_EQ(r.leases_awaiting_storage, 0u);
  // A verifier cannot confirm storage; the buffer's later report of 4 shows 4 was still open.
  heartbeat("verifier", 0, 100, {4});
  request(0, 100);  // b is finished: only 4 remains of it, now awaiting storage
  auto c = g0.next();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(ids_of(*c), (std::vector<uint64_t>{5, 6}));
  r = wait_status([](const cluster::AdminReply& x) { return x.leases_awaiting_storage == 1; });
  EXPECT_EQ(r.leases_awaiting_storage, 1u);
  EXPECT_EQ(r.leases_completed, 3u);
  stored({4});
  r = wait_status([](const cluster::AdminReply& x) { return x.leases_completed == 4; });
  EXPECT_EQ(r.leases_completed, 4u);
  EXPECT_EQ(r.leases_issued, 6u);
  EXPECT_EQ(r.leases_in_flight, 2u);  // c
  uint64_t g0_completed = 0;
  for (const auto& m : r.members)
    if (m.role == "generator" && m.worker_id == 0) g0_completed = m.leases_completed;
  EXPECT_EQ(g0_completed, 4u);
}

// A verifier that restarts (new epoch) or is lost (silent past member_timeout_seconds) loses the
// groups in its queue: the finished leases routed to it (group id mod the grant's verifier count)
// that the buffer has not confirmed are re-issued, same ids and seeds; the others wait.
TEST_F(CoordinatorTest, FinishedLeasesOfARestartedOrLostVerifierAreReissued) {
  FakeGenerator& g0 = generator(0);
  FakeGenerator& g1 = generator(1);
  start(make_settings(dir_.path(), {"verifier.replicas=2", "coordinator.member_timeout_seconds=2"}));
  heartbeat("verifier", 0, 100);
  heartbeat("verifier", 1, 100);
  request(0, 100);
  auto a = g0.next();
  ASSERT_TRUE(a.has_value());
  ASSERT_EQ(ids_of(*a), (std::vector<uint64_t>{1, 2}));  // 1 -> verifier 1, 2 -> verifier 0
  EXPECT_EQ(a->verifiers, 2);
  request(0, 100);
  auto b = g0.next();
  ASSERT_TRUE(b.has_value());
  ASSERT_EQ(ids_of(*b), (std::vector<uint64_t>{3, 4}));
  // Verifier 1 restarts: group 1 died in its queue and is leased again first; 2 still waits.
  heartbeat("verifier", 1, 200);
  request(1, 300);
  auto again = g1.next();
  ASSERT_TRUE(again.has_value());
  ASSERT_EQ(ids_of(*again), (std::vector<uint64_t>{1}));  // the run's 4 groups are all issued
  EXPECT_EQ(again->leases[0].seed, a->leases[0].seed);
  EXPECT_EQ(again->leases[0].prompt, a->leases[0].prompt);
  auto r = wait_status([](const cluster::AdminReply& x) { return x.leases_awaiting_storage == 1; });
  EXPECT_EQ(r.leases_issued, 4u);  // re-issued, not new
  EXPECT_EQ(r.leases_awaiting_storage, 1u);
  // b is finished (3 -> verifier 1, 4 -> verifier 0); generator 0 waits for work. Verifier 0 falls
  // silent after that while everyone else keeps beating: once it is lost, 2 and 4 go to generator 0.
  heartbeat("verifier", 0, 100);
  heartbeat("verifier", 1, 200);
  heartbeat("generator", 1, 300);
  request(0, 100);
  std::optional<cluster::LeaseGrant> reissued;
  for (int i = 0; i < 40 && !reissued; ++i) {
    heartbeat("generator", 0, 100);
    heartbeat("generator", 1, 300);
    heartbeat("verifier", 1, 200);
    reissued = g0.next(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(reissued.has_value());
  EXPECT_EQ(ids_of(*reissued), (std::vector<uint64_t>{2, 4}));
  r = wait_status([](const cluster::AdminReply& x) { return x.leases_awaiting_storage == 1; });
  EXPECT_EQ(r.leases_awaiting_storage, 1u);  // 3: verifier 1 is alive
  EXPECT_EQ(r.leases_issued, 4u);
  EXPECT_EQ(r.leases_completed, 0u);
  bool lost = false;
  for (const auto& m : r.members) lost = lost || (m.role == "verifier" && m.worker_id == 0 && m.state == "lost");
  EXPECT_TRUE(lost);
}

// Anything else that loses a finished group (a message dropped on the wire, a generator that
// skipped it) is caught by coordinator.store_timeout_seconds. The original arriving after all
// completes the lease and takes it out of the generator's grant: counted once.
TEST_F(CoordinatorTest, AFinishedLeaseNotStoredWithinTheStoreTimeoutIsReissued) {
  FakeGenerator& g0 = generator(0);
  FakeGenerator& g1 = generator(1);
  start(make_settings(dir_.path(), {"coordinator.member_timeout_seconds=30", "coordinator.store_timeout_seconds=1"}));
  request(0, 100);
  auto a = g0.next();
  ASSERT_TRUE(a.has_value());
  request(0, 100);
  auto b = g0.next();
  ASSERT_TRUE(b.has_value());
  // Nobody reports a's groups stored.
  auto r = wait_status([](const cluster::AdminReply& x) { return x.leases_awaiting_storage == 0; },
                       std::chrono::seconds(4));
  EXPECT_EQ(r.leases_awaiting_storage, 0u);
  EXPECT_EQ(r.leases_in_flight, 4u);  // a is in the re-issue queue, b with generator 0
  request(1, 300);
  auto again = g1.next();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(ids_of(*again), ids_of(*a));
  EXPECT_EQ(again->leases[1].seed, a->leases[1].seed);
  // a's groups were only late: the buffer has them now, and generator 1 need not finish them.
  stored(ids_of(*a));
  stored(ids_of(*a));
  r = wait_status([](const cluster::AdminReply& x) { return x.leases_completed == 2; });
  EXPECT_EQ(r.leases_completed, 2u);
  EXPECT_EQ(r.leases_in_flight, 2u);  // b only
  EXPECT_EQ(r.leases_issued, 4u);
  // Generator 1 finishing its (now empty) grant completes nothing more.
  request(1, 300);
  EXPECT_FALSE(g1.next(std::chrono::milliseconds(300)).has_value());
  auto last = admin("status");
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->leases_completed, 2u);
  EXPECT_EQ(last->leases_in_flight, 2u);
}

// The leases awaiting storage survive a coordinator restart (its state store); heartbeats sent
// while it was down are lost, so it asks the buffer (StoredQuery) about them and completes those
// the buffer's answer lists.
TEST_F(CoordinatorTest, ARestartedCoordinatorAsksTheBufferAboutLeasesAwaitingStorage) {
  FakeGenerator& g0 = generator(0);
  Collector& buffer_got = buffer();
  const auto settings = make_settings(dir_.path(), {"grpo.max_staleness=3", "coordinator.member_timeout_seconds=30"});
  start(settings);
  request(0, 100);
  auto a = g0.next();
  ASSERT_TRUE(a.has_value());
  request(0, 100);
  ASSERT_TRUE(g0.next().has_value());
  ASSERT_EQ(wait_status([](const cluster::AdminReply& x) { return x.leases_awaiting_storage == 2; }).leases_awaiting_storage, 2u);
  stop();
  start(settings);
  auto status = admin("status");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->leases_awaiting_storage, 2u);
  EXPECT_EQ(status->leases_in_flight, 4u);
  EXPECT_EQ(status->leases_completed, 0u);
  // Within a few seconds the buffer is asked about a's ids.
  std::vector<uint64_t> asked;
  for (size_t seen = 0; asked.empty() && buffer_got.wait_for(seen + 1, std::chrono::seconds(8));) {
    const auto messages = buffer_got.messages();
    for (; seen < messages.size(); ++seen) {
      cluster::StoredQuery q;
      if (cluster::decode(messages[seen], &q).ok()) asked = q.ids;
    }
  }
  EXPECT_EQ(asked, ids_of(*a));
  // The buffer holds only the first of them.
  stored({ids_of(*a)[0]});
  auto r = wait_status([](const cluster::AdminReply& x) { return x.leases_completed == 1; });
  EXPECT_EQ(r.leases_completed, 1u);
  EXPECT_EQ(r.leases_awaiting_storage, 1u);
}

}  // namespace
}  // namespace grpo::actors
