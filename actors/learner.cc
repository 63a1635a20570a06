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
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "actors/roles.h"
#include "actors/wire.h"
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
  checkpoint(self);
  self->send(s.ctx.supervisor, done_atom::value, std::string("learner"), why);
}

void train(Self* self, const cluster::TrainBatch& batch) {
  auto& s = self->state;
  const auto& st = s.ctx.settings;
  if (batch.step != s.step + 1) {
    GRPO_LOG(kWarn) << "learner: ignoring a batch for step " << batch.step << " at step " << s.step;
    return;
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
  if (samples.empty()) {
    GRPO_LOG(kWarn) << "learner: batch for step " << batch.step << " holds no usable sample";
    request_batch(self);
    return;
  }
  auto stats = s.trainer->grpo_step(samples, st.grpo);
  if (!stats.ok()) {
    GRPO_LOG(kError) << "learner: step " << batch.step << " failed: " << stats.status();
    finish(self, "failed: " + stats.status().to_string());
    return;
  }
  s.step = batch.step;
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
                "staleness %.2f (max %llu) | %.0f tok/s%s",
                static_cast<unsigned long long>(s.step), static_cast<long long>(st.grpo_steps),
                reward_sum / dn, acc_sum / dn, len_sum / dn, stats->kl,
                static_cast<unsigned long long>(s.step), stale_sum / dn,
                static_cast<unsigned long long>(stale_max), tok_s, stats->skipped ? " | SKIPPED (non-finite)" : "");
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
                        {"tokens_per_s", tok_s}, {"skipped", stats->skipped}, {"time_ms", now_ms()}};
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
  s.metrics.open(s.ctx.settings.run_dir + "/metrics.jsonl", std::ios::app);
  if (!s.metrics) {
    self->send(s.ctx.supervisor, done_atom::value, std::string("learner"),
               "failed: cannot open " + s.ctx.settings.run_dir + "/metrics.jsonl");
    self->quit();
    return {};
  }
  if (!open_endpoint(self, s.ctx, "learner", id, &s.mailbox, &s.peers)) {
    self->quit();
    return {};
  }
  GRPO_LOG(kInfo) << "learner " << id << ": up at step " << step;
  return {
      [self](start_atom) {
        auto& s = self->state;
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
        train(self, batch);
      },
  };
}

}  // namespace

caf::actor spawn_learner(caf::actor_system& sys, const RoleContext& ctx, int id,
                         std::shared_ptr<runtime::Trainer> trainer, uint64_t step, double sft_pass_at_1) {
  return sys.spawn<caf::detached>(learner_actor, ctx, id, std::move(trainer), step, sft_pass_at_1);
}

}  // namespace grpo::actors
