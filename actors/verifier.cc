// Verifier: scores every completion of a rollout group with the rule-based reward (accuracy +
// format) and forwards the scored group, with its per-sample breakdown, to the buffer. Model output
// never fails a group: malformed text simply scores 0 on the terms it breaks.
#include "actors/roles.h"
#include "actors/wire.h"
#include "runtime/reward.h"

namespace grpo::actors {
namespace {

struct VerifierState {
  RoleContext ctx;
  int id = 0;
  std::unique_ptr<cluster::Mailbox> mailbox;
  std::unique_ptr<Peers> peers;
  uint64_t bad_messages = 0;
  uint64_t scored = 0;
  static inline const char* name = "verifier";
};

using Self = caf::stateful_actor<VerifierState>;

void on_wire(Self* self, const std::string& bytes) {
  auto& s = self->state;
  cluster::RolloutGroup group;
  if (!decode_or_report("verifier", bytes, &group, &s.bad_messages)) return;
  cluster::ScoredGroup scored;
  scored.verifier_id = static_cast<uint64_t>(s.id);
  for (const auto& c : group.completions) {
    runtime::Reward r = runtime::score_response(c.text, c.finished, group.answer, s.ctx.settings.reward);
    cluster::RewardBreakdown b;
    b.total = r.total;
    b.accuracy = r.accuracy;
    b.format = r.format;
    b.correct = r.correct;
    scored.rewards.push_back(b);
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
  GRPO_LOG(kInfo) << "verifier " << id << ": up";
  return {
      [self](wire_atom, const std::string& bytes) { on_wire(self, bytes); },
  };
}

}  // namespace

caf::actor spawn_verifier(caf::actor_system& sys, const RoleContext& ctx, int id) {
  return sys.spawn<caf::detached>(verifier_actor, ctx, id);
}

}  // namespace grpo::actors
