// Generator: holds policy weights of one version and samples G completions per leased prompt group.
//
// State machine:
//   waiting_for_weights --(first complete weight version)--> leasing
//   leasing --(LeaseGrant)--> generating (blocking, one batch) --(groups sent)--> leasing
// Weights arrive as a manifest plus checksummed chunks along the broadcaster's chain
// (cluster/weight_relay.h). They never wait for this actor: the mailbox's receive thread hands them
// to a WeightRelay, which verifies each chunk, forwards it to the next generator of the chain at
// once (even mid-batch), asks the broadcaster again for a corrupt one, and assembles the version.
// The complete version reaches the actor as weights_atom and is applied between batches, so every
// token of a completion carries the version that produced it. Runs detached: generation blocks its
// own thread, not the scheduler's.
#include "actors/roles.h"
#include "actors/wire.h"
#include "cluster/weight_relay.h"
#include "runtime/policy.h"
#include "runtime/recipe.h"

namespace grpo::actors {
namespace {

struct GeneratorState {
  RoleContext ctx;
  int id = 0;
  // Shared with the mailbox's receive thread, whose callback keeps it alive until the mailbox closes.
  std::shared_ptr<cluster::WeightRelay> relay;
  std::unique_ptr<cluster::Mailbox> mailbox;
  std::unique_ptr<Peers> peers;
  std::unique_ptr<runtime::Policy> policy;
  runtime::TaskTokenizer tokenizer;
  int64_t version = -1;  // -1: no weights yet
  bool request_outstanding = false;
  bool requested_before = false;  // false until the first lease request of this generator
  uint64_t bad_messages = 0;
  uint64_t groups_done = 0;  // leased groups finished and sent to a verifier (leases completed)
  int64_t in_flight = 0;     // groups of the grant being generated
  int verifiers = 1;         // verifiers in service (the coordinator's latest grant says)
  bool retired = false;
  uint64_t requested_at_ms = 0;  // when the outstanding lease request was sent
  static inline const char* name = "generator";
};

using Self = caf::stateful_actor<GeneratorState>;

// A lease request unanswered this long is sent again (marked as a retry). The coordinator answers
// at once when it can; a request it parks is answered when admission allows, so a parked
// generator's retries only refresh its place.
constexpr uint64_t kLeaseRetryMs = 5000;

std::string coordinator_endpoint(const GeneratorState& s) {
  return endpoint_of(s.ctx.settings.endpoint_prefix, "coordinator", 0);
}

void request_leases(Self* self, bool retry = false) {
  auto& s = self->state;
  if (s.version < 0) return;
  cluster::LeaseRequest req;
  req.worker_id = static_cast<uint64_t>(s.id);
  req.policy_version = static_cast<uint64_t>(s.version);
  req.max_groups = s.ctx.settings.generator_batch_groups;
  req.restarted = !s.requested_before;
  req.epoch = s.ctx.epoch;
  req.retry = retry;
  s.requested_before = true;
  Status st = s.peers->send_msg(coordinator_endpoint(s), req);
  if (send_failed(st)) GRPO_LOG(kWarn) << "generator " << s.id << ": lease request not sent: " << st;
  s.request_outstanding = true;
  s.requested_at_ms = now_ms();
}

void apply_weights(Self* self) {
  auto& s = self->state;
  auto done = s.relay->take_completed();
  if (!done) return;  // taken already
  if (static_cast<int64_t>(done->manifest.version) <= s.version) return s.relay->recycle(std::move(done->blob));
  const cluster::WeightManifest& manifest = done->manifest;
  runtime::WeightBlob blob;
  blob.version = manifest.version;
  blob.bytes = std::move(done->blob);
  for (const auto& t : manifest.tensors)
    blob.tensors.push_back({t.name, t.shape, t.dtype, t.offset, t.nbytes});
  Status st = s.policy->load_weights(blob);
  s.relay->recycle(std::move(blob.bytes));  // the next version is assembled into this buffer
  if (!st.ok()) {
    GRPO_LOG(kWarn) << "generator " << s.id << ": rejected weights v" << manifest.version << ": " << st;
    return;
  }
  bool first = s.version < 0;
  s.version = static_cast<int64_t>(manifest.version);
  GRPO_LOG(kDebug) << "generator " << s.id << ": now at weights v" << s.version;
  // A parked request carries the old version; renew it so admission sees the new one.
  if (first || s.request_outstanding) request_leases(self);
}

// Every second: liveness, weight version and progress to the coordinator (membership, lease
// deadlines) and to the broadcaster (which re-sends the latest weights to a generator behind).
void heartbeat(Self* self) {
  auto& s = self->state;
  cluster::Heartbeat hb;
  hb.role = "generator";
  hb.worker_id = static_cast<uint64_t>(s.id);
  hb.epoch = s.ctx.epoch;
  hb.policy_version = s.version < 0 ? 0 : static_cast<uint64_t>(s.version);
  hb.in_flight = s.version < 0 ? -1 : s.in_flight;
  hb.leases_completed = s.groups_done;
  hb.timestamp_ms = now_ms();
  const std::string bytes = cluster::encode(hb);
  (void)s.peers->send(coordinator_endpoint(s), bytes);
  // The broadcaster wants to know what has arrived, not what is applied: a version assembled while
  // a batch runs, or one the policy refused, must not be sent again.
  const int64_t held = s.relay ? s.relay->held_version() : -1;
  if (held > s.version) {
    hb.policy_version = static_cast<uint64_t>(held);
    hb.in_flight = std::max<int64_t>(hb.in_flight, 0);
  }
  (void)s.peers->send(endpoint_of(s.ctx.settings.endpoint_prefix, "broadcaster", 0),
                      held > s.version ? cluster::encode(hb) : bytes);
}

void generate(Self* self, const cluster::LeaseGrant& grant) {
  auto& s = self->state;
  if (grant.worker_id != static_cast<uint64_t>(s.id)) {
    // Not ours (a misrouted or forged grant): doing its work would duplicate another generator's.
    report_bad_message("generator", invalid_argument("lease grant for generator " + std::to_string(grant.worker_id)), &s.bad_messages);
    return;
  }
  if (grant.leases.size() > static_cast<size_t>(s.ctx.settings.generator_batch_groups)) {
    // More than this generator asks for: not the coordinator's (its grants never exceed a request).
    report_bad_message("generator", invalid_argument("lease grant of " + std::to_string(grant.leases.size()) + " groups"), &s.bad_messages);
    return;
  }
  s.request_outstanding = false;
  if (grant.retire) {
    // Scaled away: the grant before this one is complete (that is why we asked), so nothing is lost.
    GRPO_LOG(kInfo) << "generator " << s.id << ": retired by the coordinator after " << s.groups_done << " groups";
    s.retired = true;
    self->send(s.ctx.supervisor, done_atom::value, std::string("generator"), std::string("retired"));
    return self->quit();
  }
  if (grant.verifiers > 0) s.verifiers = grant.verifiers;
  if (grant.leases.empty()) return request_leases(self);
  s.in_flight = static_cast<int64_t>(grant.leases.size());
  const auto& sampling = grant.leases.front().sampling;
  std::vector<runtime::GenerationRequest> requests;
  std::vector<const cluster::PromptLease*> accepted;
  for (const auto& lease : grant.leases) {
    auto ids = runtime::prompt_ids(s.tokenizer, lease.prompt);
    // The decode batch and its KV cache are sized by the samples asked for: a group larger than
    // the run's grpo.group_size (a damaged or forged lease) would exhaust memory, so it is refused.
    const bool size_ok = lease.group_size >= 1 && lease.group_size <= s.ctx.settings.group_size;
    if (!ids.ok() || !size_ok) {
      GRPO_LOG(kWarn) << "generator " << s.id << ": skipped group " << lease.group_id << ": "
                      << (ids.ok() ? "group size " + std::to_string(lease.group_size) + " is outside [1, grpo.group_size " +
                                         std::to_string(s.ctx.settings.group_size) + "]"
                                   : ids.status().message());
      continue;
    }
    requests.push_back({std::move(ids).value(), lease.group_size});
    accepted.push_back(&lease);
  }
  runtime::SamplingOptions opts;
  opts.temperature = sampling.temperature;
  opts.top_p = sampling.top_p;
  opts.top_k = sampling.top_k;
  opts.max_new_tokens = sampling.max_new_tokens;
  opts.eos_id = runtime::TaskTokenizer::kEos;
  auto out = s.policy->generate(requests, opts, grant.leases.front().seed);
  if (!out.ok()) {
    GRPO_LOG(kError) << "generator " << s.id << ": generation failed: " << out.status();
    return request_leases(self);
  }
  for (size_t i = 0; i < accepted.size(); ++i) {
    const auto& lease = *accepted[i];
    cluster::RolloutGroup group;
    group.group_id = lease.group_id;
    group.generator_id = static_cast<uint64_t>(s.id);
    group.prompt = lease.prompt;
    group.answer = lease.answer;
    group.prompt_ids = requests[i].prompt_ids;
    for (auto& sample : (*out)[i]) {
      cluster::Completion c;
      c.text = runtime::response_text(s.tokenizer, sample.ids);
      c.token_ids = std::move(sample.ids);
      c.logprobs = std::move(sample.logprobs);
      c.versions = sample.versions;
      c.finished = sample.finished;
      group.completions.push_back(std::move(c));
    }
    int verifier = static_cast<int>(lease.group_id % static_cast<uint64_t>(std::max(1, s.verifiers)));
    Status st = s.peers->send_msg(endpoint_of(s.ctx.settings.endpoint_prefix, "verifier", verifier), group);
    if (send_failed(st)) GRPO_LOG(kWarn) << "generator " << s.id << ": group " << group.group_id << " not sent: " << st;
    ++s.groups_done;
  }
  s.in_flight = 0;
  request_leases(self);
}

void on_wire(Self* self, const std::string& bytes) {
  auto& s = self->state;
  auto kind = cluster::peek_kind(bytes);
  if (!kind.ok()) return report_bad_message("generator", kind.status(), &s.bad_messages);
  switch (*kind) {
    // WeightManifest and WeightChunk never get here: the relay takes them on the receive thread.
    case cluster::MessageKind::kLeaseGrant: {
      cluster::LeaseGrant g;
      if (!decode_or_report("generator", bytes, &g, &s.bad_messages)) return;
      generate(self, g);
      break;
    }
    default:
      report_bad_message("generator", invalid_argument(std::string("unexpected ") + cluster::message_kind_name(*kind)), &s.bad_messages);
  }
}

// open_endpoint, except that weight messages are taken by the relay on the mailbox's receive
// thread (so the chain moves on while this actor generates); everything else reaches the actor as
// (wire_atom, bytes).
bool open_relay_endpoint(Self* self) {
  auto& s = self->state;
  const cluster::SecurityOptions security = s.ctx.settings.member_security();
  const std::string own = endpoint_of(s.ctx.settings.endpoint_prefix, "generator", s.id);
  s.peers = std::make_unique<Peers>(s.ctx.transport, s.ctx.stopping, security);
  caf::weak_actor_ptr weak = caf::actor_cast<caf::weak_actor_ptr>(self->ctrl());
  cluster::WeightRelayOptions options;
  options.worker_id = static_cast<uint64_t>(s.id);
  options.self_endpoint = own;
  options.repair_endpoint = endpoint_of(s.ctx.settings.endpoint_prefix, "broadcaster", 0);
  options.security = security;
  auto relay = cluster::WeightRelay::create(s.ctx.transport, options, [weak](uint64_t) {
    if (auto strong = weak.lock()) caf::anon_send(caf::actor_cast<caf::actor>(strong), weights_atom::value);
  });
  Status st = relay.status();
  if (relay.ok()) {
    s.relay = std::move(relay).value();
    cluster::MailboxOptions mailbox_options;
    mailbox_options.security = security;
    auto bound = cluster::Mailbox::bind(
        s.ctx.transport, own,
        [weak, relay = s.relay](std::string bytes) {
          if (relay->handle(bytes)) return;
          if (auto strong = weak.lock())
            caf::anon_send(caf::actor_cast<caf::actor>(strong), wire_atom::value, std::move(bytes));
        },
        std::move(mailbox_options));
    if (bound.ok()) s.mailbox = std::move(bound).value();
    else st = bound.status();
  }
  if (!st.ok()) {
    self->send(s.ctx.supervisor, done_atom::value, std::string("generator"), "failed: " + st.to_string());
    return false;
  }
  return true;
}

caf::behavior generator_actor(Self* self, RoleContext ctx, int id) {
  auto& s = self->state;
  s.ctx = std::move(ctx);
  s.id = id;
  s.verifiers = s.ctx.settings.verifiers;
  s.policy = runtime::Policy::create(s.ctx.settings.model, s.ctx.settings.seed);
  if (Status st = s.policy->to_device(s.ctx.settings.generator_device); !st.ok()) {
    // settings_from_config checked the device; a failure here is the machine's, not the config's.
    GRPO_LOG(kError) << "generator " << id << ": " << st;
    self->quit();
    return {};
  }
  if (!open_relay_endpoint(self)) {
    self->quit();
    return {};
  }
  // Ask the broadcaster for the latest weights (a late or restarted generator catches up this way).
  cluster::Heartbeat hb;
  hb.role = "generator";
  hb.worker_id = static_cast<uint64_t>(id);
  hb.in_flight = -1;  // holds no weights
  hb.epoch = s.ctx.epoch;
  hb.timestamp_ms = now_ms();
  (void)s.peers->send_msg(endpoint_of(s.ctx.settings.endpoint_prefix, "broadcaster", 0), hb);
  GRPO_LOG(kInfo) << "generator " << id << ": up, waiting for weights";
  self->delayed_send(self, std::chrono::seconds(1), tick_atom::value);
  return {
      [self](wire_atom, const std::string& bytes) { on_wire(self, bytes); },
      [self](weights_atom) { apply_weights(self); },
      [self](tick_atom) {
        heartbeat(self);
        // A request or its grant can be lost on the wire, e.g. while the coordinator restarts.
        auto& s = self->state;
        if (s.request_outstanding && now_ms() > s.requested_at_ms + kLeaseRetryMs) request_leases(self, /*retry=*/true);
        self->delayed_send(self, std::chrono::seconds(1), tick_atom::value);
      },
  };
}

}  // namespace

caf::actor spawn_generator(caf::actor_system& sys, const RoleContext& ctx, int id) {
  return sys.spawn<caf::detached>(generator_actor, ctx, id);
}

}  // namespace grpo::actors
