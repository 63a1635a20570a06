// Learner: turns scored groups into new weight versions.
//
// State machine:
//   publishing v(step) --> waiting for batch(step+1) --(TrainBatch)--> training --> publishing ...
//   any state --(stop_atom)--> checkpoint, report done           (SIGINT path)
//   training --(step == grpo.steps)--> checkpoint, report done
// Per step: group-normalised advantages (kernels/), the GRPO loss against the generators' behaviour
// logprobs and the frozen SFT reference, AdamW; then version step+1 goes to the broadcaster as a
// manifest plus checksummed chunks, the coordinator hears the new step, a progress line is logged
// and a JSONL record appended to <run_dir>/metrics.jsonl. Detached: a step blocks its own thread.
//
// Data parallelism (learner.replicas = L > 1): learner 0 asks the buffer for each batch and
// forwards it to learners 1..L-1. Every learner computes the advantages and the whole batch's
// normalisers, takes its share of the samples (a deterministic partition balanced by tokens), and
// runs the step with its gradients summed across the L by a ring all-reduce over ZeroMQ
// (cluster/allreduce.h), so all L apply the same update and stay identical. Learner 0 alone
// publishes weights, writes metrics and checkpoints.
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "actors/roles.h"
#include "actors/wire.h"
#include "cluster/allreduce.h"
#include "kernels/cpu/advantages.h"
#include "runtime/checkpoint.h"

namespace grpo::actors {
namespace {

kernels::AdvantageMode advantage_mode(const std::string& name) {
  if (name == "mean_only") return kernels::AdvantageMode::kMeanOnly;
  if (name == "rloo") return kernels::AdvantageMode::kRloo;
  return kernels::AdvantageMode::kGroupNorm;
}

struct LearnerState {
  RoleContext ctx;
  int id = 0;
  std::shared_ptr<runtime::Trainer> trainer;
  std::unique_ptr<cluster::Mailbox> mailbox;
  std::unique_ptr<Peers> peers;
  std::shared_ptr<cluster::RingAllReduce> ring;  // L > 1 only
  uint64_t step = 0;
  int64_t last_checkpoint = -1;
  double sft_pass_at_1 = -1;
  std::ofstream metrics;
  std::chrono::steady_clock::time_point last_step_end;
  uint64_t bad_messages = 0;
  bool finished = false;
  static inline const char* name = "learner";
};

using Self = caf::stateful_actor<LearnerState>;

void publish(Self* self) {
  auto& s = self->state;
  runtime::WeightBlob blob = s.trainer->export_weights();
  cluster::WeightManifest manifest;
  auto chunks = cluster::make_chunks(s.step, blob.bytes, s.ctx.settings.chunk_bytes, &manifest);
  for (const auto& t : blob.tensors) manifest.tensors.push_back({t.name, t.shape, t.dtype, t.offset, t.nbytes});
  std::string endpoint = endpoint_of(s.ctx.settings.endpoint_prefix, "broadcaster", 0);
  Status st = s.peers->send_msg(endpoint, manifest);
  for (const auto& c : chunks)
    if (st.ok()) st = s.peers->send_msg(endpoint, c);
  if (send_failed(st)) GRPO_LOG(kError) << "learner: weights v" << s.step << " not published: " << st;
}

void announce(Self* self) {
  auto& s = self->state;
  cluster::Heartbeat hb;
  hb.role = "learner";
  hb.worker_id = static_cast<uint64_t>(s.id);
  hb.policy_version = s.step;
  hb.step = s.step;
  hb.groups_retired = s.step * static_cast<uint64_t>(s.ctx.settings.groups_per_step);
  hb.epoch = s.ctx.epoch;
  hb.timestamp_ms = now_ms();
  Status st = s.peers->send_msg(endpoint_of(s.ctx.settings.endpoint_prefix, "coordinator", 0), hb);
  if (send_failed(st)) GRPO_LOG(kWarn) << "learner: heartbeat not sent: " << st;
}

void request_batch(Self* self) {
  auto& s = self->state;
  cluster::TrainBatchRequest req;
  req.learner_id = static_cast<uint64_t>(s.id);
  req.step = s.step + 1;
  req.min_version = static_cast<uint64_t>(std::max<int64_t>(0, static_cast<int64_t>(s.step) - s.ctx.settings.max_staleness));
  req.num_groups = s.ctx.settings.groups_per_step;
  Status st = s.peers->send_msg(endpoint_of(s.ctx.settings.endpoint_prefix, "buffer", 0), req);
  if (send_failed(st)) GRPO_LOG(kError) << "learner: batch request not sent: " << st;
}

void checkpoint(Self* self) {
  auto& s = self->state;
  if (static_cast<int64_t>(s.step) == s.last_checkpoint) return;
  runtime::CheckpointInfo info;
  info.step = static_cast<int64_t>(s.step);
  info.sft_pass_at_1 = s.sft_pass_at_1;
  info.buffer_cursor = s.step;  // the buffer's consume cursor is the last learner step
  Status st = runtime::save_checkpoint(*s.trainer, s.ctx.settings.run_dir, info, s.ctx.settings.checkpoint_keep);
  if (!st.ok()) {
    GRPO_LOG(kError) << "learner: checkpoint at step " << s.step << " failed: " << st;
    return;
  }
  s.last_checkpoint = static_cast<int64_t>(s.step);
  GRPO_LOG(kInfo) << "learner: checkpoint written at step " << s.step;
}

void finish(Self* self, const std::string& why) {
  auto& s = self->state;
  if (s.finished) return;
  s.finished = true;
  if (s.id != 0) {  // replicas neither checkpoint nor publish
    self->send(s.ctx.supervisor, done_atom::value, std::string("learner"), why);
    return;
  }
  checkpoint(self);
  self->send(s.ctx.supervisor, done_atom::value, std::string("learner"), why);
}

// This learner's share of a batch: samples sorted longest first go, one by one, to the learner
// with the fewest tokens so far (ties to the lowest id). The same on every learner.
std::vector<runtime::TrainSample> shard_of(const std::vector<runtime::TrainSample>& all, int id, int world) {
  if (world <= 1) return all;
  std::vector<size_t> order(all.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto len = [&](size_t i) { return all[i].prompt_ids.size() + all[i].response_ids.size(); };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return len(a) > len(b); });
  std::vector<size_t> load(static_cast<size_t>(world), 0);
  std::vector<size_t> mine;
  for (size_t i : order) {
    size_t best = 0;
    for (size_t r = 1; r < load.size(); ++r)
      if (load[r] < load[best]) best = r;
    load[best] += len(i);
    if (static_cast<int>(best) == id) mine.push_back(i);
  }
  std::sort(mine.begin(), mine.end());
  std::vector<runtime::TrainSample> out;
  for (size_t i : mine) out.push_back(all[i]);
  return out;
}

void train(Self* self, const cluster::TrainBatch& batch, const std::string& bytes) {
  auto& s = self->state;
  const auto& st = s.ctx.settings;
  if (batch.step != s.step + 1) {
    GRPO_LOG(kWarn) << "learner " << s.id << ": ignoring a batch for step " << batch.step << " at step " << s.step;
    return;
  }
  if (s.id == 0) {  // the other data-parallel learners train on the same batch
    for (int r = 1; r < st.learners; ++r) {
      Status fwd = s.peers->send(endpoint_of(st.endpoint_prefix, "learner", r), bytes);
      if (send_failed(fwd)) GRPO_LOG(kError) << "learner: batch for step " << batch.step << " not forwarded to learner " << r << ": " << fwd;
    }
  }
  // Flatten groups; advantages are computed per group.
  std::vector<runtime::TrainSample> samples;
  double reward_sum = 0, acc_sum = 0, len_sum = 0, fmt_sum = 0, lang_sum = 0, overlong_sum = 0, stale_sum = 0;
  uint64_t stale_max = 0, n = 0;
  std::vector<float> rewards, advantages;
  for (const auto& g : batch.groups) {
    if (g.rewards.size() != g.rollout.completions.size() || g.rollout.completions.empty()) continue;
    size_t first = rewards.size();
    for (size_t i = 0; i < g.rollout.completions.size(); ++i) {
      const auto& c = g.rollout.completions[i];
      rewards.push_back(static_cast<float>(g.rewards[i].total));
      runtime::TrainSample ts;
      ts.prompt_ids = g.rollout.prompt_ids;
      ts.response_ids = c.token_ids;
      ts.behaviour_logprobs = c.logprobs;
      samples.push_back(std::move(ts));
      reward_sum += g.rewards[i].total;
      acc_sum += g.rewards[i].accuracy;
      fmt_sum += g.rewards[i].format;
      lang_sum += g.rewards[i].language;
      overlong_sum += g.rewards[i].length;
      len_sum += static_cast<double>(c.token_ids.size());
      uint64_t v = c.versions.empty() ? s.step : *std::min_element(c.versions.begin(), c.versions.end());
      uint64_t stale = s.step > v ? s.step - v : 0;
      stale_sum += static_cast<double>(stale);
      stale_max = std::max(stale_max, stale);
      ++n;
    }
    advantages.resize(rewards.size());
    kernels::group_advantages(rewards.data() + first, 1, static_cast<int64_t>(rewards.size() - first),
                              advantage_mode(st.advantage), 1e-4f, advantages.data() + first);
  }
  for (size_t i = 0; i < samples.size(); ++i) samples[i].advantage = advantages[i];
  if (samples.empty()) {  // the same on every learner: none of them steps
    GRPO_LOG(kWarn) << "learner " << s.id << ": batch for step " << batch.step << " holds no usable sample";
    if (s.id == 0) request_batch(self);
    return;
  }
  const runtime::BatchTotals totals = runtime::batch_totals(samples);
  auto stats = s.trainer->grpo_step(shard_of(samples, s.id, st.learners), st.grpo, &totals);
  if (!stats.ok()) {
    GRPO_LOG(kError) << "learner " << s.id << ": step " << batch.step << " failed: " << stats.status();
    finish(self, "failed: " + stats.status().to_string());
    return;
  }
  s.step = batch.step;
  if (s.id != 0) return;
  auto now = std::chrono::steady_clock::now();
  double secs = std::chrono::duration<double>(now - s.last_step_end).count();
  s.last_step_end = now;
  double tok_s = secs > 0 ? len_sum / secs : 0;
  double dn = static_cast<double>(std::max<uint64_t>(1, n));
  publish(self);
  announce(self);
  char line[512];
  std::snprintf(line, sizeof(line),
                "step %4llu/%lld | reward %.3f | acc %.3f | len %.1f | kl %.4f | version %llu | "
                "staleness %.2f (max %llu) | %.0f tok/s%s%s",
                static_cast<unsigned long long>(s.step), static_cast<long long>(st.grpo_steps),
                reward_sum / dn, acc_sum / dn, len_sum / dn, stats->kl,
                static_cast<unsigned long long>(s.step), stale_sum / dn,
                static_cast<unsigned long long>(stale_max), tok_s,
                batch.dropped > 0 ? (" | dropped " + std::to_string(batch.dropped) + " equal-reward groups").c_str() : "",
                stats->skipped ? " | SKIPPED (non-finite)" : "");
  GRPO_LOG(kInfo) << line;
  nlohmann::json rec = {{"step", s.step}, {"reward_mean", reward_sum / dn}, {"accuracy", acc_sum / dn},
                        {"format", fmt_sum / dn}, {"language", lang_sum / dn}, {"length_reward", overlong_sum / dn},
                        {"response_length", len_sum / dn}, {"kl", stats->kl},
                        {"loss", stats->loss}, {"entropy", stats->entropy}, {"grad_norm", stats->grad_norm},
                        {"clip_fraction", stats->clip_fraction}, {"ratio_mean", stats->ratio_mean},
                        {"ratio_max", stats->ratio_max}, {"is_weight_mean", stats->weight_mean},
                        {"is_weight_max", stats->weight_max}, {"is_capped_fraction", stats->weight_capped_fraction},
                        {"lr", stats->lr}, {"policy_version", s.step},
                        {"staleness_mean", stale_sum / dn}, {"staleness_max", stale_max},
                        {"tokens_per_s", tok_s}, {"skipped", stats->skipped},
                        {"micro_batches", stats->micro_batches}, {"groups_dropped", batch.dropped},
                        {"learners", st.learners}, {"time_ms", now_ms()}};
  s.metrics << rec.dump() << "\n";
  s.metrics.flush();
  if (s.step >= static_cast<uint64_t>(st.grpo_steps)) return finish(self, "completed");
  if (s.step % static_cast<uint64_t>(st.checkpoint_every) == 0) checkpoint(self);
  request_batch(self);
}

caf::behavior learner_actor(Self* self, RoleContext ctx, int id, std::shared_ptr<runtime::Trainer> trainer,
                            uint64_t step, double sft_pass_at_1) {
  auto& s = self->state;
  s.ctx = std::move(ctx);
  s.id = id;
  s.trainer = std::move(trainer);
  s.step = step;
  s.last_checkpoint = static_cast<int64_t>(step);
  s.sft_pass_at_1 = sft_pass_at_1;
  if (id == 0) s.metrics.open(s.ctx.settings.run_dir + "/metrics.jsonl", std::ios::app);
  if (id == 0 && !s.metrics) {
    self->send(s.ctx.supervisor, done_atom::value, std::string("learner"),
               "failed: cannot open " + s.ctx.settings.run_dir + "/metrics.jsonl");
    self->quit();
    return {};
  }
  if (!open_endpoint(self, s.ctx, "learner", id, &s.mailbox, &s.peers)) {
    self->quit();
    return {};
  }
  if (s.ctx.settings.learners > 1) {
    std::vector<std::string> ring;
    for (int r = 0; r < s.ctx.settings.learners; ++r)
      ring.push_back(endpoint_of(s.ctx.settings.endpoint_prefix, "learner-ring", r));
    cluster::RingOptions ring_options;
    ring_options.security = s.ctx.settings.member_security();
    auto made = cluster::RingAllReduce::create(s.ctx.transport, id, ring, std::move(ring_options));
    if (!made.ok()) {
      self->send(s.ctx.supervisor, done_atom::value, std::string("learner"),
                 "failed: gradient ring of learner " + std::to_string(id) + ": " + made.status().to_string());
      self->quit();
      return {};
    }
    s.ring = std::move(made).value();
    auto ring_ptr = s.ring;
    s.trainer->set_gradient_reducer([ring_ptr](float* data, size_t n) { return ring_ptr->all_reduce_sum(data, n); });
  }
  GRPO_LOG(kInfo) << "learner " << id << ": up at step " << step;
  return {
      [self](start_atom) {
        auto& s = self->state;
        if (s.id != 0) return;  // learners 1..L-1 wait for the batches learner 0 forwards
        s.last_step_end = std::chrono::steady_clock::now();
        publish(self);
        announce(self);
        if (s.step >= static_cast<uint64_t>(s.ctx.settings.grpo_steps)) return finish(self, "completed");
        request_batch(self);
      },
      [self](stop_atom) { finish(self, "interrupted"); },
      [self](wire_atom, const std::string& bytes) {
        auto& s = self->state;
        if (s.finished) return;
        cluster::TrainBatch batch;
        if (!decode_or_report("learner", bytes, &batch, &s.bad_messages)) return;
        train(self, batch, bytes);
      },
  };
}

}  // namespace

caf::actor spawn_learner(caf::actor_system& sys, const RoleContext& ctx, int id,
                         std::shared_ptr<runtime::Trainer> trainer, uint64_t step, double sft_pass_at_1) {
  return sys.spawn<caf::detached>(learner_actor, ctx, id, std::move(trainer), step, sft_pass_at_1);
}

}  // namespace grpo::actors
