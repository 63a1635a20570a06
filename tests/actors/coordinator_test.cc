// The coordinator actor against fake generators on real inproc:// sockets and its real RocksDB
// state store: grants, a restarted generator's re-issue, epoch fencing, a lost generator's leases
// going to another, pause/resume and status through the admin socket (ipc://), and a restarted
// coordinator continuing from its store.
#include <gtest/gtest.h>

#include <chrono>
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
  EXPECT_EQ(status->leases_completed, 2u);
  EXPECT_EQ(status->leases_in_flight, 2u);
  EXPECT_EQ(status->run_state, "running");
  ASSERT_EQ(status->members.size(), 1u);
  EXPECT_EQ(status->members[0].epoch, 200u);
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

}  // namespace
}  // namespace grpo::actors
