// `grpo up` with CURVE keys (security.keys_dir, made by `grpoctl keygen`): while the run trains,
// strangers without the cluster secret send forged but well-formed messages at its services, each
// of which would derail the run if it were let in:
//   - Heartbeat{role learner, step 1000000} to the coordinator: it would mark the run done at once
//     and stop leasing, so the learner would never reach its last step;
//   - LeaseGrants with absurd group ids to the generators: the groups would be generated, scored
//     and stored in the buffer under those ids;
//   - ScoredGroups with absurd group ids to the buffer: stored (and trained on) under those ids;
//   - junk at both ranks of the learners' gradient ring (learner.replicas = 2): it would break the
//     all-reduce and fail the run.
// The strangers are (a) plain unsecured sockets, (b) a fresh random CURVE keypair and (c) the
// admin keypair, which is meant for admin sockets only and must not pass as a cluster member.
// A control holding the cluster keypair shows that what a member sends does arrive. Afterwards
// the buffer's RocksDB store is opened and searched for the forged group ids.
// Also: key files that are missing or malformed fail the config with exit 2, naming the file.
// Real processes, real sockets.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cluster/codec.h"
#include "cluster/security.h"
#include "cluster/transport.h"
#include "storage/rollout_store.h"
#include "tests/apps/run_grpo.h"
#include "tests/cluster/test_util.h"

namespace grpo {
namespace {
namespace fs = std::filesystem;
using testing::app_binary;
using testing::lines_of;
using testing::read_file;
using testing::run_grpo;
using testing::run_program;
using testing::source_dir;

constexpr int kSteps = 60;  // a step takes ~0.1 s: the run goes on well after the attack
constexpr int kGenerators = 2;
constexpr uint64_t kForgedStep = 1000000;
// Group ids the coordinator would not reach in ages: each stranger forges its own range.
constexpr uint64_t kForgedGroupBase = 1000000000000ULL;

std::vector<std::string> run_args(const std::string& dir, const std::string& keys_dir) {
  return {"up", "--config", source_dir() + "/configs/cluster-local.toml", "run.dir=" + dir + "/run",
          "run.endpoint_prefix=ipc://" + dir + "/sock", "security.keys_dir=" + keys_dir, "model.dim=32",
          "model.layers=1", "model.ffn_hidden=64", "sft.steps=3", "sft.batch_size=8",
          "grpo.steps=" + std::to_string(kSteps), "grpo.group_size=4", "grpo.groups_per_step=2",
          "generator.replicas=" + std::to_string(kGenerators), "generator.batch_groups=1", "learner.replicas=2",
          "task.eval_prompts=8", "task.eval_samples=1", "checkpoint.every=50"};
}

std::string endpoint(const std::string& dir, const std::string& role, int id) {
  return "ipc://" + dir + "/sock." + role + "." + std::to_string(id);
}

bool contains(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }


// Waits up to `timeout` until every file holds `needle`.
bool wait_for_logs(const std::vector<std::string>& files, const std::string& needle, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    bool all = true;
    for (const auto& f : files) all = all && contains(read_file(f), needle);
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

// The messages one stranger forges; `tag` keeps the group ids of the strangers apart.
struct Forgeries {
  std::string heartbeat;
  std::vector<std::string> grants;  // one per generator
  std::vector<std::string> scored;  // to the buffer
  std::vector<uint64_t> group_ids;  // every id a forgery carries
  std::string ring_junk;            // to the learners' gradient ring
};

Forgeries forge(uint64_t tag) {
  Forgeries f;
  cluster::Heartbeat hb;
  hb.role = "learner";
  hb.worker_id = 0;
  hb.epoch = uint64_t{1} << 62;  // newer than any real process, so epoch fencing would not stop it
  hb.step = kForgedStep;
  hb.timestamp_ms = 1;
  f.heartbeat = cluster::encode(hb);
  const uint64_t base = kForgedGroupBase + tag * 1000;
  for (int g = 0; g < kGenerators; ++g) {
    cluster::LeaseGrant grant;
    grant.worker_id = static_cast<uint64_t>(g);
    cluster::PromptLease lease;
    lease.group_id = base + static_cast<uint64_t>(g);
    lease.prompt_index = lease.group_id;
    lease.prompt = "999+999=";  // a prompt the generators can tokenize: an accepted grant is generated
    lease.answer = "1998";
    lease.group_size = 4;
    lease.seed = 7;
    lease.sampling.max_new_tokens = 8;
    grant.leases.push_back(lease);
    f.grants.push_back(cluster::encode(grant));
    f.group_ids.push_back(lease.group_id);
  }
  for (uint64_t i = 0; i < 3; ++i) {
    cluster::ScoredGroup sg;
    sg.rollout.group_id = base + 100 + i;
    sg.rollout.prompt = "999+999=";
    sg.rollout.answer = "1998";
    sg.rollout.prompt_ids = {1, 2, 3};
    for (int c = 0; c < 4; ++c) {
      cluster::Completion comp;
      comp.token_ids = {4, 5, 6};
      comp.logprobs = {-1.f, -1.f, -1.f};
      comp.versions = {1000, 1000, 1000};  // newer than any real version: never evicted as stale
      comp.text = "1998";
      comp.finished = true;
      sg.rollout.completions.push_back(comp);
      cluster::RewardBreakdown r;
      r.total = c;  // unequal rewards: a learning signal if it were trained on
      sg.rewards.push_back(r);
    }
    f.scored.push_back(cluster::encode(sg));
    f.group_ids.push_back(sg.rollout.group_id);
  }
  f.ring_junk = std::string(64, static_cast<char>(0x5a));
  return f;
}

// Sends one stranger's forgeries at the coordinator, the generators and the buffer; the outboxes
// are returned so that they keep retrying their handshakes while the test looks at the logs.
std::vector<std::unique_ptr<cluster::Outbox>> attack(const std::shared_ptr<cluster::Transport>& transport,
                                                     const std::string& dir, const cluster::SecurityOptions& security,
                                                     const Forgeries& f) {
  cluster::OutboxOptions o;
  o.security = security;
  o.send_timeout_ms = 0;  // a refused peer never drains the queue: do not wait on it
  o.linger_ms = 0;
  std::vector<std::unique_ptr<cluster::Outbox>> out;
  auto send = [&](const std::string& to, const std::string& bytes) {
    auto box = cluster::Outbox::connect(transport, to, o);
    EXPECT_TRUE(box.ok()) << box.status().to_string();
    if (!box.ok()) return;
    EXPECT_TRUE((*box)->send(bytes).ok()) << to;
    out.push_back(std::move(box).value());
  };
  send(endpoint(dir, "coordinator", 0), f.heartbeat);
  for (int g = 0; g < kGenerators; ++g) send(endpoint(dir, "generator", g), f.grants[static_cast<size_t>(g)]);
  for (const auto& sg : f.scored) send(endpoint(dir, "buffer", 0), sg);
  for (int rank = 0; rank < 2; ++rank) send(endpoint(dir, "learner-ring", rank), f.ring_junk);
  return out;
}

TEST(ClusterSecurityTest, StrangersWithoutTheClusterSecretCannotForgeMessages) {
  ASSERT_TRUE(cluster::curve_supported()) << "this libzmq lacks CURVE";
  cluster::test_util::TempDir tmp("sec");
  const std::string dir = tmp.path();
  const std::string keys = dir + "/keys";
  auto kg = run_program(app_binary("grpoctl"), {"keygen", "--out", keys}, dir + "/keygen.log");
  ASSERT_EQ(kg.exit_code, 0) << kg.output;
  auto cluster_keys = cluster::read_key_file(keys + "/cluster.key");
  auto admin_keys = cluster::read_key_file(keys + "/admin.key");
  ASSERT_TRUE(cluster_keys.ok() && admin_keys.ok());
  auto random_keys = cluster::generate_curve_keypair();
  ASSERT_TRUE(random_keys.ok());

  const std::string logs = dir + "/run/logs/";
  const std::vector<std::string> target_logs = {logs + "coordinator-0.log", logs + "buffer-0.log",
                                                logs + "generator-0.log",   logs + "generator-1.log",
                                                logs + "learner-1.log",     dir + "/up.log"};  // learner 0
  auto transport = cluster::Transport::create();
  std::vector<std::unique_ptr<cluster::Outbox>> held;
  std::vector<uint64_t> forged_ids;
  bool attacked = false, forged_done = false, control_seen = false, admin_refused = false;
  int metrics_before_attack = -1, metrics_after_attack = -1;
  const auto started = std::chrono::steady_clock::now();
  auto r = run_grpo(run_args(dir, keys), dir + "/up.log", [&](pid_t up) {
    if (contains(read_file(logs + "coordinator-0.log"), "learner step " + std::to_string(kForgedStep))) {
      forged_done = true;  // the forgery got in: the run would never finish
      kill(up, SIGTERM);
      return false;
    }
    if (std::chrono::steady_clock::now() - started > std::chrono::seconds(150)) {
      kill(up, SIGTERM);
      return false;
    }
    if (attacked) return true;
    // The coordinator is up: attack now. The other targets may still be starting; ZeroMQ holds
    // the forgeries and tries the handshake when they bind.
    if (!contains(read_file(logs + "coordinator-0.log"), ": up")) return true;
    attacked = true;
    const auto t0 = std::chrono::steady_clock::now();
    metrics_before_attack = lines_of(dir + "/run/metrics.jsonl");
    // Control: a member (cluster keypair) gets through; the coordinator counts the junk it sent.
    cluster::OutboxOptions member;
    member.security = cluster::cluster_security(*cluster_keys);
    auto control = cluster::Outbox::connect(transport, endpoint(dir, "coordinator", 0), member);
    EXPECT_TRUE(control.ok() && (*control)->send("member junk").ok());
    control_seen = wait_for_logs({logs + "coordinator-0.log"}, "coordinator: dropped a malformed message",
                                 std::chrono::seconds(15));
    // (c) the admin keypair first: each target's first refusal is logged with the refused key.
    const Forgeries by_admin = forge(1);
    for (auto& o : attack(transport, dir, cluster::admin_client_security(*admin_keys, cluster_keys->public_key), by_admin))
      held.push_back(std::move(o));
    admin_refused = wait_for_logs(target_logs, "with key " + admin_keys->public_key, std::chrono::seconds(20));
    // (b) a fresh keypair presented to the cluster's (public) server key; (a) plain sockets.
    const Forgeries by_random = forge(2);
    for (auto& o : attack(transport, dir, cluster::admin_client_security(*random_keys, cluster_keys->public_key), by_random))
      held.push_back(std::move(o));
    const Forgeries by_plain = forge(3);
    for (auto& o : attack(transport, dir, cluster::SecurityOptions{}, by_plain)) held.push_back(std::move(o));
    for (const Forgeries* f : {&by_admin, &by_random, &by_plain})
      forged_ids.insert(forged_ids.end(), f->group_ids.begin(), f->group_ids.end());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // their handshakes are tried meanwhile
    metrics_after_attack = lines_of(dir + "/run/metrics.jsonl");
    std::printf("attack: %.1f s from the coordinator's start, metrics lines %d -> %d\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), metrics_before_attack,
                metrics_after_attack);
    return true;
  });
  held.clear();

  ASSERT_TRUE(attacked) << r.output;
  EXPECT_FALSE(forged_done) << "the forged learner heartbeat ended the run:\n" << read_file(logs + "coordinator-0.log");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_LT(metrics_after_attack, kSteps) << "the attack came after the run had finished";
  char last[64];
  std::snprintf(last, sizeof(last), "step %4d/%d", kSteps, kSteps);
  EXPECT_TRUE(contains(r.output, last)) << r.output;
  EXPECT_EQ(lines_of(dir + "/run/metrics.jsonl"), kSteps);
  EXPECT_FALSE(contains(r.output, "restarting it")) << r.output;
  EXPECT_TRUE(control_seen) << read_file(logs + "coordinator-0.log");
  EXPECT_TRUE(admin_refused);
  for (const auto& f : target_logs) {
    const std::string text = read_file(f);
    EXPECT_TRUE(contains(text, "refused a CURVE client")) << f << ":\n" << text;
    EXPECT_TRUE(contains(text, admin_keys->public_key)) << f << ":\n" << text;
  }

  // No forged group reached the rollout store (the buffer has exited, so its lock is free). It is
  // opened with the run's shard count, as the resolved config records it.
  storage::RolloutStoreOptions store_options;
  const std::string resolved = read_file(dir + "/run/config.resolved.toml");
  if (size_t at = resolved.find("buffer.shards = "); at != std::string::npos)
    store_options.shards = std::atoi(resolved.c_str() + at + 16);
  auto store = storage::RolloutStore::open(dir + "/run/buffer", store_options);
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  const auto stats = (*store)->stats();
  EXPECT_GE(stats.consumed, static_cast<uint64_t>(kSteps * 2));  // the real groups are there
  auto max_id = (*store)->max_group_id();
  ASSERT_TRUE(max_id.ok());
  EXPECT_LT(*max_id, kForgedGroupBase);
  ASSERT_EQ(forged_ids.size(), 3u * (kGenerators + 3));
  for (uint64_t id : forged_ids) {
    auto info = (*store)->lookup(id);
    EXPECT_EQ(info.status().code(), StatusCode::kNotFound) << "forged group " << id << " is in the store";
  }
}

// Key files are read with the config: a bad one fails `grpo up` (and `grpo serve`) with exit 2 and a
// message naming the key and the file, before any service starts.
TEST(ClusterSecurityTest, BadKeyFilesFailTheConfig) {
  cluster::test_util::TempDir tmp("seckeys");
  const std::string dir = tmp.path();
  const std::string keys = dir + "/keys";
  auto kg = run_program(app_binary("grpoctl"), {"keygen", "--out", keys}, dir + "/keygen.log");
  ASSERT_EQ(kg.exit_code, 0) << kg.output;

  auto expect_config_error = [&](const std::string& keys_dir, const std::vector<std::string>& needles) {
    auto r = run_grpo(run_args(dir, keys_dir), dir + "/bad.log");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "security.keys_dir")) << r.output;
    for (const auto& n : needles) EXPECT_TRUE(contains(r.output, n)) << "missing '" << n << "' in\n" << r.output;
    EXPECT_FALSE(contains(r.output, "grpo up: ")) << "services were started:\n" << r.output;
    EXPECT_FALSE(fs::exists(dir + "/run/logs")) << r.output;
  };
  // Missing cluster keypair.
  const std::string no_cluster = dir + "/no-cluster";
  fs::create_directories(no_cluster);
  fs::copy_file(keys + "/admin.pub", no_cluster + "/admin.pub");
  expect_config_error(no_cluster, {no_cluster + "/cluster.key", "does not exist"});
  // Malformed cluster keypair: the secret does not belong to the public key.
  const std::string mixed = dir + "/mixed";
  fs::create_directories(mixed);
  auto cluster_keys = cluster::read_key_file(keys + "/cluster.key");
  auto admin_keys = cluster::read_key_file(keys + "/admin.key");
  ASSERT_TRUE(cluster_keys.ok() && admin_keys.ok());
  ASSERT_TRUE(cluster::write_public_key_file(mixed + "/admin.pub", admin_keys->public_key).ok());
  {
    std::ofstream out(mixed + "/cluster.key");
    out << "public = \"" << cluster_keys->public_key << "\"\nsecret = \"" << admin_keys->secret_key << "\"\n";
  }
  fs::permissions(mixed + "/cluster.key", fs::perms::owner_read | fs::perms::owner_write);
  expect_config_error(mixed, {mixed + "/cluster.key", "does not belong to the secret key"});
  // Garbage in the cluster keypair file: the line is named.
  {
    std::ofstream out(mixed + "/cluster.key");
    out << "# keys\npublic = not quoted\n";
  }
  expect_config_error(mixed, {mixed + "/cluster.key line 2", "quoted"});
  // Missing admin public key.
  const std::string no_admin = dir + "/no-admin";
  fs::create_directories(no_admin);
  fs::copy_file(keys + "/cluster.key", no_admin + "/cluster.key");
  expect_config_error(no_admin, {no_admin + "/admin.pub", "does not exist"});
  // The admin key must not be the cluster's own key (an admin would pass as a member).
  ASSERT_TRUE(cluster::write_public_key_file(no_admin + "/admin.pub", cluster_keys->public_key).ok());
  expect_config_error(no_admin, {no_admin + "/admin.pub", "cluster's own public key"});
  // A keys_dir that does not exist.
  expect_config_error(dir + "/nowhere", {dir + "/nowhere", "does not exist"});
  // `grpo serve` reads the same keys.
  auto s = run_grpo({"serve", "--config", source_dir() + "/configs/cluster-local.toml", "--role", "buffer",
                     "run.dir=" + dir + "/run", "run.endpoint_prefix=ipc://" + dir + "/sock",
                     "security.keys_dir=" + no_cluster},
                    dir + "/serve.log");
  EXPECT_EQ(s.exit_code, 2) << s.output;
  EXPECT_TRUE(contains(s.output, no_cluster + "/cluster.key")) << s.output;
}

// An embedded run talks over inproc://, which ZeroMQ never secures: with keys it still trains, and
// says once that it does not encrypt.
TEST(ClusterSecurityTest, EmbeddedRunWarnsOnceThatItDoesNotEncrypt) {
  cluster::test_util::TempDir tmp("secemb");
  const std::string dir = tmp.path();
  auto kg = run_program(app_binary("grpoctl"), {"keygen", "--out", dir + "/keys"}, dir + "/keygen.log");
  ASSERT_EQ(kg.exit_code, 0) << kg.output;
  auto r = run_grpo({"train", "--config", source_dir() + "/configs/local.toml", "run.dir=" + dir + "/run",
                     "security.keys_dir=" + dir + "/keys", "model.dim=32", "model.layers=1", "model.ffn_hidden=64",
                     "sft.steps=2", "sft.batch_size=8", "grpo.steps=2", "grpo.group_size=4", "grpo.groups_per_step=2",
                     "generator.batch_groups=1", "task.eval_prompts=4", "task.eval_samples=1"},
                    dir + "/train.log");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string warning = "embedded mode does not authenticate or encrypt";
  const size_t first = r.output.find(warning);
  EXPECT_NE(first, std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(warning, first + 1), std::string::npos) << "warned more than once:\n" << r.output;
  EXPECT_EQ(lines_of(dir + "/run/metrics.jsonl"), 2);
}

}  // namespace
}  // namespace grpo
