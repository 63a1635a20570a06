// Generator: holds policy weights of one version and samples G completions per leased prompt group.
//
// State machine:
//   waiting_for_weights --(first complete weight version)--> leasing
//   leasing --(LeaseGrant)--> generating (blocking, one batch) --(groups sent)--> leasing
// Weights arrive as a manifest plus checksummed chunks (relayed by the broadcaster); a version is
// applied only when complete, between batches, so every token of a completion carries the version
// that produced it. Runs detached: generation blocks its own thread, not the scheduler's.
#include "actors/roles.h"
#include "actors/wire.h"
#include "runtime/policy.h"
#include "runtime/recipe.h"

namespace grpo::actors {
namespace {

struct GeneratorState {
  RoleContext ctx;
  int id = 0;
  std::unique_ptr<cluster::Mailbox> mailbox;
  std::unique_ptr<Peers> peers;
  std::unique_ptr<runtime::Policy> policy;
  runtime::TaskTokenizer tokenizer;
  cluster::WeightAssembler assembler;
  int64_t version = -1;  // -1: no weights yet
  bool request_outstanding = false;
  bool requested_before = false;  // false until the first lease request of this generator
  uint64_t bad_messages = 0;
  uint64_t groups_done = 0;
  static inline const char* name = "generator";
};

using Self = caf::stateful_actor<GeneratorState>;

std::string coordinator_endpoint(const GeneratorState& s) {
  return endpoint_of(s.ctx.settings.endpoint_prefix, "coordinator", 0);
}

void request_leases(Self* self) {
  auto& s = self->state;
  if (s.version < 0) return;
  cluster::LeaseRequest req;
  req.worker_id = static_cast<uint64_t>(s.id);
  req.policy_version = static_cast<uint64_t>(s.version);
  req.max_groups = s.ctx.settings.generator_batch_groups;
  req.restarted = !s.requested_before;
  s.requested_before = true;
  Status st = s.peers->send_msg(coordinator_endpoint(s), req);
  if (send_failed(st)) GRPO_LOG(kWarn) << "generator " << s.id << ": lease request not sent: " << st;
  s.request_outstanding = true;
}

void apply_weights(Self* self) {
  auto& s = self->state;
  const cluster::WeightManifest manifest = s.assembler.manifest();
  auto blob_bytes = s.assembler.take_blob();
  if (!blob_bytes.ok()) {
    GRPO_LOG(kWarn) << "generator " << s.id << ": weights unusable: " << blob_bytes.status();
    return;
  }
  runtime::WeightBlob blob;
  blob.version = manifest.version;
  blob.bytes = std::move(blob_bytes).value();
  for (const auto& t : manifest.tensors)
    blob.tensors.push_back({t.name, t.shape, t.dtype, t.offset, t.nbytes});
  Status st = s.policy->load_weights(blob);
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

void generate(Self* self, const cluster::LeaseGrant& grant) {
  auto& s = self->state;
  s.request_outstanding = false;
  if (grant.leases.empty()) return request_leases(self);
  const auto& sampling = grant.leases.front().sampling;
  std::vector<runtime::GenerationRequest> requests;
  std::vector<const cluster::PromptLease*> accepted;
  for (const auto& lease : grant.leases) {
    auto ids = runtime::prompt_ids(s.tokenizer, lease.prompt);
    if (!ids.ok() || lease.group_size < 1) {
      GRPO_LOG(kWarn) << "generator " << s.id << ": skipped group " << lease.group_id << ": "
                      << (ids.ok() ? "bad group size" : ids.status().message());
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
    int verifier = static_cast<int>(lease.group_id % static_cast<uint64_t>(s.ctx.settings.verifiers));
    Status st = s.peers->send_msg(endpoint_of(s.ctx.settings.endpoint_prefix, "verifier", verifier), group);
    if (send_failed(st)) GRPO_LOG(kWarn) << "generator " << s.id << ": group " << group.group_id << " not sent: " << st;
    ++s.groups_done;
  }
  request_leases(self);
}

void on_wire(Self* self, const std::string& bytes) {
  auto& s = self->state;
  auto kind = cluster::peek_kind(bytes);
  if (!kind.ok()) return report_bad_message("generator", kind.status(), &s.bad_messages);
  switch (*kind) {
    case cluster::MessageKind::kWeightManifest: {
      cluster::WeightManifest m;
      if (!decode_or_report("generator", bytes, &m, &s.bad_messages)) return;
      if (static_cast<int64_t>(m.version) <= s.version) return;  // already have it or newer
      Status st = s.assembler.begin(m);
      if (!st.ok()) return report_bad_message("generator", st, &s.bad_messages);
      if (s.assembler.complete()) apply_weights(self);
      break;
    }
    case cluster::MessageKind::kWeightChunk: {
      cluster::WeightChunk c;
      if (!decode_or_report("generator", bytes, &c, &s.bad_messages)) return;
      if (!s.assembler.started() || c.version != s.assembler.version()) return;
      Status st = s.assembler.add_chunk(c);
      if (!st.ok()) return report_bad_message("generator", st, &s.bad_messages);
      if (s.assembler.complete()) apply_weights(self);
      break;
    }
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

caf::behavior generator_actor(Self* self, RoleContext ctx, int id) {
  auto& s = self->state;
  s.ctx = std::move(ctx);
  s.id = id;
  s.policy = runtime::Policy::create(s.ctx.settings.model, s.ctx.settings.seed);
  if (Status st = s.policy->to_device(s.ctx.settings.generator_device); !st.ok()) {
    // settings_from_config checked the device; a failure here is the machine's, not the config's.
    GRPO_LOG(kError) << "generator " << id << ": " << st;
    self->quit();
    return {};
  }
  if (!open_endpoint(self, s.ctx, "generator", id, &s.mailbox, &s.peers)) {
    self->quit();
    return {};
  }
  // Ask the broadcaster for the latest weights (a late or restarted generator catches up this way).
  cluster::Heartbeat hb;
  hb.role = "generator";
  hb.worker_id = static_cast<uint64_t>(id);
  hb.in_flight = -1;  // holds no weights
  hb.timestamp_ms = now_ms();
  (void)s.peers->send_msg(endpoint_of(s.ctx.settings.endpoint_prefix, "broadcaster", 0), hb);
  GRPO_LOG(kInfo) << "generator " << id << ": up, waiting for weights";
  return {
      [self](wire_atom, const std::string& bytes) { on_wire(self, bytes); },
  };
}

}  // namespace

caf::actor spawn_generator(caf::actor_system& sys, const RoleContext& ctx, int id) {
  return sys.spawn<caf::detached>(generator_actor, ctx, id);
}

}  // namespace grpo::actors
