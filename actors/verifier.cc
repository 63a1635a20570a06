// Verifier: scores every completion of a rollout group and forwards the scored group, with its
// per-sample breakdown, to the buffer.
//
// The reward is chosen by reward.kind:
//   demo       the embedded addition task (runtime/reward.h: integer in <answer>, strict template),
//              accuracy_weight * accuracy + format_weight * format, exactly as before this option.
//   math       runtime::score(kMath): RolloutGroup.answer is the gold answer or a \boxed{} solution.
//   gsm8k      runtime::score(kGsm8k): the answer is a GSM8K answer text ("... #### N") or a number.
//   countdown  runtime::score(kCountdown): the answer is a JSON string {"target": N, "nums": [..]}.
//   code       runtime::score(kCode) with a HumanEval scorer in a bubblewrap SandboxPool: the answer
//              is a JSON string {"prompt": .., "test": .., "entry_point": ..}.
// Every kind adds reward.language_weight * language consistency of the reasoning (computed only
// when that weight is not 0) and reward.length_weight * DAPO overlong shaping on the completion's
// token count (only when reward.max_length > 0), and reports both terms in the breakdown.
//
// Robustness: samples are scored on a runtime::ScoringService (verifier.threads threads) with a
// per-sample deadline (verifier.timeout_seconds), retries of sandbox infrastructure faults
// (verifier.max_retries) and quarantine of samples that keep timing out or crashing
// (verifier.quarantine_after). A sample that times out, crashes, exhausts its retries or is
// quarantined scores 0 on every term; the group is still forwarded. Model output never fails a
// group, and neither does a malformed gold answer (its samples score 0; logged). The sandbox pool
// is created on the first code group; if that fails the error is logged once and code samples
// score 0 as infrastructure errors. Timeouts, crashes, infrastructure errors and quarantines are
// logged at warn level with the group id and counted.
#include <memory>
#include <algorithm>

#include <nlohmann/json.hpp>

#include "actors/roles.h"
#include "actors/wire.h"
#include "runtime/code_sandbox.h"
#include "runtime/reward.h"
#include "runtime/rewards.h"
#include "runtime/scoring_service.h"

namespace grpo::actors {
namespace {

using runtime::SampleOutcome;

struct VerifierState {
  RoleContext ctx;
  int id = 0;
  std::unique_ptr<cluster::Mailbox> mailbox;
  std::unique_ptr<Peers> peers;
  std::unique_ptr<runtime::ScoringService> scoring;
  std::shared_ptr<runtime::SandboxPool> sandbox;  // kind "code" only, created on first use
  bool sandbox_failed = false;
  std::string sandbox_error;
  uint64_t bad_messages = 0;
  uint64_t scored = 0;          // groups
  uint64_t timeouts = 0;        // samples
  uint64_t crashes = 0;
  uint64_t infra_errors = 0;
  uint64_t quarantined = 0;     // submissions answered from quarantine
  uint64_t newly_quarantined = 0;  // samples put in quarantine
  uint64_t refused = 0;         // samples the reward could not score (bad gold)
  uint64_t handled = 0;         // messages taken from the mailbox (scored or rejected)
  static inline const char* name = "verifier";
};

using Self = caf::stateful_actor<VerifierState>;

// The language and length terms of the demo reward (runtime::score adds them for other kinds).
void add_shaping(const std::string& text, int64_t tokens, bool finished,
                 const runtime::RewardConfig& cfg, runtime::RewardBreakdown* b) {
  if (cfg.language_weight != 0) {
    b->language = runtime::language_consistency(text, cfg.language);
    b->total += cfg.language_weight * b->language;
  }
  if (cfg.overlong.max_length > 0) {
    b->length = runtime::overlong_reward(tokens, cfg.overlong, !finished);
    b->total += cfg.length_weight * b->length;
  }
}

// Parses the JSON gold of countdown and code groups into `sample`; false with *error set when the
// gold is malformed.
bool parse_gold(runtime::RewardKind kind, const std::string& gold, runtime::RewardSample* sample,
                std::string* error) {
  try {
    auto j = nlohmann::json::parse(gold);
    if (kind == runtime::RewardKind::kCountdown) {
      sample->countdown.target = j.at("target").get<int64_t>();
      sample->countdown.nums = j.at("nums").get<std::vector<int64_t>>();
    } else {
      sample->code.prompt = j.at("prompt").get<std::string>();
      sample->code.test = j.at("test").get<std::string>();
      sample->code.entry_point = j.at("entry_point").get<std::string>();
    }
    return true;
  } catch (const std::exception& e) {
    *error = std::string("gold answer is not the JSON of a ") + runtime::reward_kind_name(kind) +
             " task: " + e.what();
    return false;
  }
}

// The sandbox pool, created on first use; null (and logged once) when it cannot be created.
std::shared_ptr<runtime::SandboxPool> sandbox(Self* self) {
  auto& s = self->state;
  if (s.sandbox || s.sandbox_failed) return s.sandbox;
  runtime::SandboxPoolOptions o;
  o.slots = s.ctx.settings.scoring.threads;
  auto pool = runtime::SandboxPool::create(o);
  if (!pool.ok()) {
    s.sandbox_failed = true;
    s.sandbox_error = "code sandbox unavailable: " + pool.status().to_string();
    GRPO_LOG(kError) << "verifier " << s.id << ": " << s.sandbox_error
                     << "; code samples score 0 (infra_error)";
    return nullptr;
  }
  s.sandbox = std::shared_ptr<runtime::SandboxPool>(std::move(*pool));
  GRPO_LOG(kInfo) << "verifier " << s.id << ": code sandbox up (" << s.sandbox->slots() << " slots)";
  return s.sandbox;
}

// One job per completion. Jobs own copies of what they read: a job that times out keeps running
// on an abandoned thread after the group has moved on (runtime/scoring_service.h).
std::vector<runtime::ScoreJob> make_jobs(Self* self, const cluster::RolloutGroup& group,
                                         std::vector<SampleOutcome>* preset) {
  auto& s = self->state;
  const RunSettings& st = s.ctx.settings;
  const runtime::RewardKind kind = st.reward_kind;
  const runtime::RewardConfig cfg = st.reward_config;
  std::vector<runtime::ScoreJob> jobs;
  if (kind == runtime::RewardKind::kDemo) {
    const runtime::RewardWeights w = st.reward;
    for (const auto& c : group.completions) {
      jobs.push_back([text = c.text, finished = c.finished, gold = group.answer, w, cfg,
                      tokens = static_cast<int64_t>(c.token_ids.size())] {
        runtime::Reward r = runtime::score_response(text, finished, gold, w);
        runtime::ScoreAttempt a;
        a.breakdown.total = r.total;
        a.breakdown.accuracy = r.accuracy;
        a.breakdown.format = r.format;
        a.breakdown.correct = r.correct;
        add_shaping(text, tokens, finished, cfg, &a.breakdown);
        return a;
      });
    }
    return jobs;
  }

  runtime::RewardSample base;
  std::string gold_error;
  if (kind == runtime::RewardKind::kCountdown || kind == runtime::RewardKind::kCode) {
    if (!parse_gold(kind, group.answer, &base, &gold_error)) {
      for (auto& o : *preset) {
        o.breakdown.error = gold_error;
        o.error = gold_error;
      }
      return {};
    }
  } else {
    base.gold = group.answer;
  }
  std::shared_ptr<runtime::SandboxPool> pool;
  if (kind == runtime::RewardKind::kCode) {
    pool = sandbox(self);
    if (!pool) {
      for (auto& o : *preset) {
        o.status = SampleOutcome::Status::kInfraError;
        o.error = s.sandbox_error;
      }
      return {};
    }
  }
  runtime::SandboxLimits limits;
  limits.wall_seconds = std::min(limits.wall_seconds, std::max(0.01, 0.9 * st.scoring.timeout_seconds));
  limits.cpu_seconds = std::min(limits.cpu_seconds, limits.wall_seconds);
  for (const auto& c : group.completions) {
    runtime::RewardSample sample = base;
    sample.response = c.text;
    sample.length = static_cast<int64_t>(c.token_ids.size());
    sample.truncated = !c.finished;
    jobs.push_back([kind, cfg, sample = std::move(sample), pool, limits] {
      runtime::ScoreAttempt a;
      std::string infra;
      runtime::CodeScorer scorer;
      if (pool) {
        scorer = [&pool, &limits, &infra](const std::string& completion, const runtime::CodeTask& t) {
          runtime::CodeScore cs =
              runtime::score_humaneval(*pool, t.prompt, completion, t.test, t.entry_point, limits);
          runtime::CodeOutcome o;
          switch (cs.verdict) {
            case runtime::CodeVerdict::kPass:
              o.passed = true;
              o.pass_rate = 1;
              break;
            case runtime::CodeVerdict::kFail: o.detail = "fail"; break;
            case runtime::CodeVerdict::kTimeout: o.detail = "timeout"; break;
            case runtime::CodeVerdict::kError:
              infra = cs.run.error.empty() ? "sandbox error" : cs.run.error;
              o.error = infra;
              break;
          }
          return o;
        };
      }
      a.breakdown = runtime::score(kind, sample, cfg, scorer);
      if (!infra.empty()) {
        a.infra_error = true;
        a.error = "code sandbox: " + infra;
      }
      // The language term counts (and is reported) only when it is weighted.
      if (cfg.language_weight == 0) a.breakdown.language = 0;
      return a;
    });
  }
  return jobs;
}

// Every second (and once at start): liveness, epoch and queue length to the coordinator, which
// retires a verifier scaled away once its queue is empty, and re-issues the unstored groups of one
// that restarted.
void heartbeat(Self* self) {
  auto& s = self->state;
  cluster::Heartbeat hb;
  hb.role = "verifier";
  hb.worker_id = static_cast<uint64_t>(s.id);
  hb.epoch = s.ctx.epoch;
  hb.in_flight = static_cast<int64_t>(s.mailbox->received() - std::min(s.mailbox->received(), s.handled));
  hb.timestamp_ms = now_ms();
  (void)s.peers->send_msg(endpoint_of(s.ctx.settings.endpoint_prefix, "coordinator", 0), hb);
}

void on_wire(Self* self, const std::string& bytes) {
  auto& s = self->state;
  ++s.handled;
  auto kind = cluster::peek_kind(bytes);
  if (kind.ok() && *kind == cluster::MessageKind::kLeaseGrant) {
    // The coordinator's retirement notice (grpoctl scale): the queue is empty, nothing is lost.
    cluster::LeaseGrant notice;
    if (!decode_or_report("verifier", bytes, &notice, &s.bad_messages)) return;
    if (!notice.retire || notice.worker_id != static_cast<uint64_t>(s.id))
      return report_bad_message("verifier", invalid_argument("unexpected LeaseGrant"), &s.bad_messages);
    GRPO_LOG(kInfo) << "verifier " << s.id << ": retired by the coordinator after " << s.scored << " groups";
    self->send(s.ctx.supervisor, done_atom::value, std::string("verifier"), std::string("retired"));
    return self->quit();
  }
  cluster::RolloutGroup group;
  if (!decode_or_report("verifier", bytes, &group, &s.bad_messages)) return;
  const size_t n = group.completions.size();
  std::vector<SampleOutcome> outcomes(n);
  std::vector<uint64_t> keys;
  try {
    std::vector<runtime::ScoreJob> jobs = make_jobs(self, group, &outcomes);
    if (!jobs.empty()) {
      for (const auto& c : group.completions) keys.push_back(runtime::sample_key(c.text, group.answer));
      outcomes = s.scoring->score_group(jobs, keys);
    }
  } catch (const std::exception& e) {
    // Not expected (allocation failure): score the group 0 rather than kill the role.
    GRPO_LOG(kError) << "verifier " << s.id << ": group " << group.group_id << " not scored: " << e.what();
    outcomes.assign(n, SampleOutcome());
    for (auto& o : outcomes) {
      o.status = SampleOutcome::Status::kCrashed;
      o.error = e.what();
    }
    keys.clear();
  }

  cluster::ScoredGroup scored;
  scored.verifier_id = static_cast<uint64_t>(s.id);
  uint64_t refused = 0;
  std::string first_refusal;
  for (size_t i = 0; i < n; ++i) {
    const SampleOutcome& o = outcomes[i];
    cluster::RewardBreakdown b;
    if (o.status == SampleOutcome::Status::kScored && o.breakdown.error.empty()) {
      b.total = o.breakdown.total;
      b.accuracy = o.breakdown.accuracy;
      b.format = o.breakdown.format;
      b.language = o.breakdown.language;
      b.length = o.breakdown.length;
      b.correct = o.breakdown.correct;
    }
    switch (o.status) {
      case SampleOutcome::Status::kScored:
        if (!o.breakdown.error.empty() || !o.error.empty()) {
          if (refused++ == 0) first_refusal = o.error.empty() ? o.breakdown.error : o.error;
        }
        break;
      case SampleOutcome::Status::kTimeout: ++s.timeouts; break;
      case SampleOutcome::Status::kCrashed: ++s.crashes; break;
      case SampleOutcome::Status::kInfraError: ++s.infra_errors; break;
      case SampleOutcome::Status::kQuarantined: ++s.quarantined; break;
    }
    if (o.status != SampleOutcome::Status::kScored) {
      bool now_quarantined = !keys.empty() &&
                             (o.status == SampleOutcome::Status::kTimeout ||
                              o.status == SampleOutcome::Status::kCrashed) &&
                             s.scoring->is_quarantined(keys[i]);
      if (now_quarantined) ++s.newly_quarantined;
      GRPO_LOG(kWarn) << "verifier " << s.id << ": group " << group.group_id << " sample " << i << ": "
                      << runtime::sample_status_name(o.status) << " after " << o.attempts
                      << " attempt(s), scored 0: " << o.error
                      << (now_quarantined ? " (sample now quarantined)" : "") << " [totals: timeouts "
                      << s.timeouts << ", crashes " << s.crashes << ", infra " << s.infra_errors
                      << ", quarantined " << s.quarantined << "]";
    }
    scored.rewards.push_back(b);
  }
  if (refused > 0) {
    s.refused += refused;
    GRPO_LOG(kWarn) << "verifier " << s.id << ": group " << group.group_id << ": " << refused
                    << " sample(s) not scorable, scored 0: " << first_refusal;
  }
  scored.rollout = std::move(group);
  Status st = s.peers->send_msg(endpoint_of(s.ctx.settings.endpoint_prefix, "buffer", 0), scored);
  if (send_failed(st)) GRPO_LOG(kWarn) << "verifier " << s.id << ": scored group not sent: " << st;
  ++s.scored;
}

caf::behavior verifier_actor(Self* self, RoleContext ctx, int id) {
  auto& s = self->state;
  s.ctx = std::move(ctx);
  s.id = id;
  if (!open_endpoint(self, s.ctx, "verifier", id, &s.mailbox, &s.peers)) {
    self->quit();
    return {};
  }
  s.scoring = std::make_unique<runtime::ScoringService>(s.ctx.settings.scoring);
  GRPO_LOG(kInfo) << "verifier " << id << ": up (reward " << runtime::reward_kind_name(s.ctx.settings.reward_kind)
                  << ", " << s.ctx.settings.scoring.threads << " scoring thread(s), timeout "
                  << s.ctx.settings.scoring.timeout_seconds << " s)";
  // At once, not a second later: the coordinator learns this process's epoch before any group can
  // reach it, so that a restart (a newer epoch) is recognised and the leases of the groups that died
  // with the previous process are re-issued (actors/coordinator.cc).
  heartbeat(self);
  self->delayed_send(self, std::chrono::seconds(1), tick_atom::value);
  return {
      [self](wire_atom, const std::string& bytes) { on_wire(self, bytes); },
      [self](tick_atom) {
        heartbeat(self);
        self->delayed_send(self, std::chrono::seconds(1), tick_atom::value);
      },
  };
}

}  // namespace

caf::actor spawn_verifier(caf::actor_system& sys, const RoleContext& ctx, int id) {
  return sys.spawn<caf::detached>(verifier_actor, ctx, id);
}

}  // namespace grpo::actors
