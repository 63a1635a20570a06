// 10,000 malformed frames at each service of a running `grpo up` cluster (coordinator, buffer,
// broadcaster, every generator and verifier, the learner) leave every one of them serving: none
// crashes or is restarted, the run completes all its steps, and each service counts the frames
// it dropped (report_bad_message in actors/wire.cc logs the count at powers of two).
//
// The frames are a mix of random bytes (0..8 KiB, empty included), valid encodes of every message
// kind cut at a random point, and valid encodes with random bits flipped. A flipped frame that
// still decodes is a well-formed message, not a malformed one: it is flipped again (or cut) until
// it no longer decodes, so every frame sent is one a service must drop. (Well-formed forgeries
// are what CURVE keeps out: tests/apps/cluster_security_test.cc.) The cluster runs without keys:
// the fuzzer is then an ordinary peer, and the frames reach the services' decoders.
// Real processes, real sockets.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cluster/codec.h"
#include "cluster/transport.h"
#include "tests/apps/run_grpo.h"
#include "tests/cluster/test_util.h"

namespace grpo {
namespace {
namespace fs = std::filesystem;
using cluster::MessageKind;
using testing::lines_of;
using testing::read_file;
using testing::run_grpo;
using testing::source_dir;

constexpr int kSteps = 100;  // long enough to go on well after the fuzzing (a step takes ~0.1 s here)
constexpr int kFramesPerService = 10000;
constexpr size_t kMaxRandomBytes = 8192;

std::vector<std::string> run_args(const std::string& dir) {
  return {"up", "--config", source_dir() + "/configs/cluster-local.toml", "run.dir=" + dir + "/run",
          "run.endpoint_prefix=ipc://" + dir + "/sock", "model.dim=32", "model.layers=1", "model.ffn_hidden=64",
          "sft.steps=3", "sft.batch_size=8", "grpo.steps=" + std::to_string(kSteps), "grpo.group_size=4",
          "grpo.groups_per_step=2", "generator.batch_groups=1", "task.eval_prompts=8", "task.eval_samples=1",
          "checkpoint.every=50"};
}

bool contains(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }


// One valid encode of every message kind, with every field and list filled so that cuts and flips
// land in all parts of a message (pointers, lists, text, numbers).
std::vector<std::string> samples() {
  std::vector<std::string> out;
  cluster::SamplingParams sampling{0.7, 0.9, 5, 32};
  cluster::LeaseRequest req;
  req.worker_id = 3;
  req.policy_version = 4;
  req.max_groups = 8;
  req.restarted = true;
  req.epoch = 99;
  out.push_back(cluster::encode(req));
  cluster::PromptLease lease;
  lease.group_id = 17;
  lease.prompt_index = 16;
  lease.prompt = "357+468=";
  lease.answer = "825";
  lease.group_size = 4;
  lease.min_version = 2;
  lease.deadline_ms = 123456789;
  lease.seed = 42;
  lease.sampling = sampling;
  out.push_back(cluster::encode(lease));
  cluster::LeaseGrant grant;
  grant.worker_id = 1;
  grant.leases = {lease, lease};
  out.push_back(cluster::encode(grant));
  cluster::Completion completion;
  completion.token_ids = {5, 6, 7, 8};
  completion.logprobs = {-0.5f, -1.f, -2.f, -0.1f};
  completion.versions = {3, 3, 4, 4};
  completion.text = "<think>7+8=15</think><answer>825</answer>";
  completion.finished = true;
  cluster::RolloutGroup group;
  group.group_id = 17;
  group.generator_id = 1;
  group.prompt = lease.prompt;
  group.answer = lease.answer;
  group.prompt_ids = {1, 2, 3, 4, 5, 6, 7, 8};
  group.completions = {completion, completion};
  out.push_back(cluster::encode(group));
  cluster::ScoredGroup scored;
  scored.rollout = group;
  scored.rewards = {cluster::RewardBreakdown{1.1, 1, 0.1, 0, 0, true}, cluster::RewardBreakdown{0.1, 0, 0.1, 0, -0.5, false}};
  scored.verifier_id = 1;
  out.push_back(cluster::encode(scored));
  out.push_back(cluster::encode(cluster::TrainBatchRequest{0, 5, 3, 2}));
  cluster::TrainBatch batch;
  batch.step = 5;
  batch.groups = {scored, scored};
  batch.dropped = 1;
  out.push_back(cluster::encode(batch));
  const std::string blob(3000, 'w');
  cluster::WeightManifest manifest;
  std::vector<cluster::WeightChunk> chunks = cluster::make_chunks(7, blob, 1024, &manifest);
  manifest.tensors = {cluster::TensorMeta{"model.embed_tokens.weight", {25, 30}, "f32", 0, 3000}};
  out.push_back(cluster::encode(manifest));
  out.push_back(cluster::encode(chunks.front()));
  cluster::Heartbeat hb;
  hb.role = "generator";
  hb.worker_id = 1;
  hb.epoch = 5;
  hb.policy_version = 3;
  hb.timestamp_ms = 123456789;
  hb.in_flight = 2;
  hb.step = 3;
  hb.groups_retired = 4;
  hb.groups_stored = 9;
  hb.leases_completed = 6;
  out.push_back(cluster::encode(hb));
  cluster::AdminRequest admin;
  admin.command = "scale";
  admin.role = "generator";
  admin.count = 3;
  out.push_back(cluster::encode(admin));
  cluster::AdminReply reply;
  reply.ok = true;
  reply.run_state = "running";
  reply.learner_step = 3;
  reply.total_steps = 10;
  cluster::MemberInfo member;
  member.role = "generator";
  member.worker_id = 1;
  member.epoch = 5;
  member.state = "up";
  member.last_seen_ms_ago = 100;
  member.policy_version = 3;
  member.in_flight = 2;
  member.leases_completed = 6;
  reply.members = {member, member};
  reply.message = "ok";
  out.push_back(cluster::encode(reply));
  cluster::WeightChunkRequest missing;
  missing.version = 7;
  missing.worker_id = 1;
  missing.indices = {0, 2};
  out.push_back(cluster::encode(missing));
  cluster::StoredQuery query;
  query.ids = {3, 4, 9};
  out.push_back(cluster::encode(query));
  return out;
}

template <typename Msg>
bool decodes_as(std::string_view bytes) {
  Msg m;
  return cluster::decode(bytes, &m).ok();
}

// True when `bytes` is a well-formed message of the kind its envelope names.
bool decodes(std::string_view bytes) {
  auto kind = cluster::peek_kind(bytes);
  if (!kind.ok()) return false;
  switch (*kind) {
    case MessageKind::kLeaseRequest: return decodes_as<cluster::LeaseRequest>(bytes);
    case MessageKind::kPromptLease: return decodes_as<cluster::PromptLease>(bytes);
    case MessageKind::kRolloutGroup: return decodes_as<cluster::RolloutGroup>(bytes);
    case MessageKind::kScoredGroup: return decodes_as<cluster::ScoredGroup>(bytes);
    case MessageKind::kTrainBatchRequest: return decodes_as<cluster::TrainBatchRequest>(bytes);
    case MessageKind::kTrainBatch: return decodes_as<cluster::TrainBatch>(bytes);
    case MessageKind::kWeightManifest: return decodes_as<cluster::WeightManifest>(bytes);
    case MessageKind::kWeightChunk: return decodes_as<cluster::WeightChunk>(bytes);
    case MessageKind::kHeartbeat: return decodes_as<cluster::Heartbeat>(bytes);
    case MessageKind::kLeaseGrant: return decodes_as<cluster::LeaseGrant>(bytes);
    case MessageKind::kAdminRequest: return decodes_as<cluster::AdminRequest>(bytes);
    case MessageKind::kAdminReply: return decodes_as<cluster::AdminReply>(bytes);
    case MessageKind::kWeightChunkRequest: return decodes_as<cluster::WeightChunkRequest>(bytes);
    case MessageKind::kStoredQuery: return decodes_as<cluster::StoredQuery>(bytes);
    case MessageKind::kNcclGroupRequest: return decodes_as<cluster::NcclGroupRequest>(bytes);
    case MessageKind::kNcclGroup: return decodes_as<cluster::NcclGroup>(bytes);
  }
  return true;  // a kind added later: treat it as well formed, so it is not sent
}

struct FrameCounts {
  int random = 0, cut = 0, flipped = 0;
};

// The malformed frames, from a seeded generator (the seed is printed on failure).
class Fuzzer {
 public:
  explicit Fuzzer(uint64_t seed) : rng_(seed), samples_(samples()) {}

  std::string next(FrameCounts* counts) {
    switch (rng_() % 3) {
      case 0: ++counts->random; return random_bytes();
      case 1: ++counts->cut; return cut();
      default: {
        const std::string& s = pick();
        for (int attempt = 0; attempt < 32; ++attempt) {
          std::string f = s;
          const int flips = 1 + static_cast<int>(rng_() % 8);
          for (int i = 0; i < flips; ++i) f[rng_() % f.size()] ^= static_cast<char>(1u << (rng_() % 8));
          if (!decodes(f)) {
            ++counts->flipped;
            return f;
          }
        }
        ++counts->cut;
        return cut();
      }
    }
  }

 private:
  const std::string& pick() { return samples_[rng_() % samples_.size()]; }
  std::string random_bytes() {
    // One frame in 64 is empty; the rest are uniform in length.
    const size_t n = rng_() % 64 == 0 ? 0 : rng_() % (kMaxRandomBytes + 1);
    std::string f(n, '\0');
    for (char& c : f) c = static_cast<char>(rng_());
    return decodes(f) ? std::string() : f;  // (random bytes that decode would be a miracle)
  }
  std::string cut() {
    const std::string& s = pick();
    return s.substr(0, rng_() % s.size());  // 0 .. size-1 bytes: never the whole message
  }

  std::mt19937_64 rng_;
  std::vector<std::string> samples_;
};

TEST(ClusterFuzzTest, TenThousandMalformedFramesAtEachServiceLeaveItServing) {
  // The samples themselves decode, and a cut never does: the generator makes what it claims.
  for (const auto& s : samples()) {
    ASSERT_TRUE(decodes(s));
    for (size_t n = 0; n < s.size(); n += 7) ASSERT_FALSE(decodes(s.substr(0, n))) << n << " of " << s.size();
  }
  ASSERT_EQ(samples().size(), static_cast<size_t>(MessageKind::kStoredQuery) + 1) << "a message kind has no sample";

  cluster::test_util::TempDir tmp("fuzz");
  const std::string dir = tmp.path();
  const std::string logs = dir + "/run/logs/";
  struct Target {
    std::string role;
    int id;
    std::string log;  // where its report_bad_message lines go
  };
  const std::vector<Target> targets = {
      {"coordinator", 0, logs + "coordinator-0.log"}, {"buffer", 0, logs + "buffer-0.log"},
      {"broadcaster", 0, logs + "broadcaster-0.log"}, {"generator", 0, logs + "generator-0.log"},
      {"generator", 1, logs + "generator-1.log"},     {"verifier", 0, logs + "verifier-0.log"},
      {"verifier", 1, logs + "verifier-1.log"},       {"learner", 0, dir + "/up.log"}};

  auto transport = cluster::Transport::create();
  std::vector<std::unique_ptr<cluster::Outbox>> outboxes;  // open until the run ends: nothing is cut short
  const uint64_t seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  FrameCounts counts;
  std::vector<int> sent(targets.size(), 0);
  bool fuzzed = false;
  int metrics_after_fuzz = -1;
  double fuzz_seconds = 0;
  const auto started = std::chrono::steady_clock::now();
  auto r = run_grpo(run_args(dir), dir + "/up.log", [&](pid_t up) {
    if (std::chrono::steady_clock::now() - started > std::chrono::seconds(150)) {
      kill(up, SIGTERM);
      return false;
    }
    if (fuzzed) return true;
    for (const auto& t : targets)
      if (!contains(read_file(t.log), t.role == "learner" ? "learner 0: up" : ": up")) return true;
    fuzzed = true;
    const auto t0 = std::chrono::steady_clock::now();
    Fuzzer fuzzer(seed);
    cluster::OutboxOptions o;
    o.send_hwm = 2000;
    o.send_timeout_ms = 5000;  // a wedged service fails the send instead of blocking the fuzzer
    std::vector<bool> failed(targets.size(), false);
    for (size_t i = 0; i < targets.size(); ++i) {
      const std::string to = "ipc://" + dir + "/sock." + targets[i].role + "." + std::to_string(targets[i].id);
      auto box = cluster::Outbox::connect(transport, to, o);
      EXPECT_TRUE(box.ok()) << box.status().to_string();
      failed[i] = !box.ok();
      outboxes.push_back(box.ok() ? std::move(box).value() : nullptr);
    }
    // Round robin, so every service takes its frames over the same stretch of the run.
    for (int n = 0; n < kFramesPerService; ++n) {
      for (size_t i = 0; i < targets.size(); ++i) {
        if (failed[i]) continue;
        Status st = outboxes[i]->send(fuzzer.next(&counts));
        if (!st.ok()) {
          ADD_FAILURE() << outboxes[i]->endpoint() << ": frame " << n << " not sent: " << st.to_string();
          failed[i] = true;  // a wedged service: stop waiting on it
          continue;
        }
        ++sent[i];
      }
    }
    fuzz_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    metrics_after_fuzz = lines_of(dir + "/run/metrics.jsonl");
    return true;
  });
  outboxes.clear();

  SCOPED_TRACE("fuzz seed " + std::to_string(seed));
  std::printf("fuzz: %d random, %d cut, %d bit-flipped frames in %.1f s (seed %llu), %d of %d steps done by then\n",
              counts.random, counts.cut, counts.flipped, fuzz_seconds, static_cast<unsigned long long>(seed),
              metrics_after_fuzz, kSteps);
  ASSERT_TRUE(fuzzed) << r.output;
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_LT(metrics_after_fuzz, kSteps) << "the run had finished before the fuzzing ended";
  for (size_t i = 0; i < targets.size(); ++i) EXPECT_EQ(sent[i], kFramesPerService) << targets[i].role << " " << targets[i].id;
  EXPECT_GT(counts.random, 0);
  EXPECT_GT(counts.cut, 0);
  EXPECT_GT(counts.flipped, 0);
  // Every service lived through it: none exited or was restarted, and the run trained to the end.
  EXPECT_FALSE(contains(r.output, "exited with status")) << r.output;
  EXPECT_FALSE(contains(r.output, "restarting it")) << r.output;
  char last[64];
  std::snprintf(last, sizeof(last), "step %4d/%d", kSteps, kSteps);
  EXPECT_TRUE(contains(r.output, last)) << r.output;
  EXPECT_EQ(lines_of(dir + "/run/metrics.jsonl"), kSteps);
  // And each counted what it dropped: all 10,000 frames (the count is logged at powers of two).
  for (const auto& t : targets) {
    const std::string text = read_file(t.log);
    EXPECT_TRUE(contains(text, t.role + ": dropped a malformed message (8192 so far)"))
        << t.role << " " << t.id << " (" << t.log << "):\n" << text.substr(0, 4000);
  }
}

}  // namespace
}  // namespace grpo
