// Coordinator: leases prompt groups to generators under the staleness bound.
//
// State machine:  running --(learner reached grpo.steps)--> done
// Admission follows actors/admission.h. A request that cannot be served now is parked and served when the
// learner advances or the generator reports newer weights; admission is paced at lease time and never
// discards finished rollouts. The prompt cursor and group-id counter persist in the state store, so a
// resumed run continues the prompt stream instead of repeating it.
#include <map>

#include "actors/admission.h"
#include "actors/roles.h"
#include "actors/wire.h"

namespace grpo::actors {
namespace {

struct CoordinatorState {
  RoleContext ctx;
  std::shared_ptr<storage::StateStore> store;
  CoordinatorStart start;
  std::unique_ptr<cluster::Mailbox> mailbox;
  std::unique_ptr<Peers> peers;
  runtime::AdditionTask task{3};
  uint64_t prompt_cursor = 0;
  uint64_t next_group_id = 1;
  uint64_t issued = 0;          // groups in the pipeline's history: retired + in flight
  uint64_t learner_step = 0;
  uint64_t buffer_evicted = 0;  // since start
  std::map<uint64_t, cluster::LeaseRequest> parked;  // by worker id
  // The last grant of each generator, until its next request says it was completed. A generator
  // that restarted (crash, kill -9) gets the same leases again (same group ids, prompts and seeds;
  // the buffer's idempotent puts drop any duplicate).
  std::map<uint64_t, std::vector<cluster::PromptLease>> outstanding;  // by worker id
  uint64_t bad_messages = 0;
  bool done = false;
  static inline const char* name = "coordinator";
};

using Self = caf::stateful_actor<CoordinatorState>;

uint64_t retired(const CoordinatorState& s) {
  return s.learner_step * static_cast<uint64_t>(s.ctx.settings.groups_per_step) + s.buffer_evicted;
}

void try_grant(Self* self, uint64_t worker) {
  auto& s = self->state;
  auto it = s.parked.find(worker);
  if (it == s.parked.end() || s.done) return;
  const auto& st = s.ctx.settings;
  const cluster::LeaseRequest req = it->second;
  AdmissionState adm;
  adm.learner_step = s.learner_step;
  adm.issued = s.issued;
  adm.retired = retired(s);
  adm.groups_per_step = st.groups_per_step;
  adm.max_staleness = st.max_staleness;
  adm.total_steps = st.grpo_steps;
  cluster::LeaseGrant grant;
  grant.worker_id = worker;
  for (uint64_t consumed_at : admit(adm, req.policy_version, req.max_groups)) {
    cluster::PromptLease lease;
    lease.group_id = s.next_group_id++;
    lease.prompt_index = s.prompt_cursor++;
    runtime::Problem p = s.start.dataset.empty()
                             ? s.task.problem(st.train_seed, lease.prompt_index)
                             : s.start.dataset[lease.prompt_index % s.start.dataset.size()];
    lease.prompt = p.prompt;
    lease.answer = p.answer;
    lease.group_size = st.group_size;
    lease.min_version = static_cast<uint64_t>(
        std::max<int64_t>(0, static_cast<int64_t>(consumed_at) - st.max_staleness));
    lease.deadline_ms = now_ms() + 600000;
    lease.seed = runtime::mix64(st.seed ^ (lease.group_id * 0x9e3779b97f4a7c15ULL));
    lease.sampling.temperature = st.temperature;
    lease.sampling.top_p = st.top_p;
    lease.sampling.max_new_tokens = st.max_new_tokens;
    grant.leases.push_back(std::move(lease));
    ++s.issued;
  }
  if (grant.leases.empty()) return;  // stays parked
  Status persisted = s.store->write({{"prompt_cursor", storage::StateStore::encode_u64(s.prompt_cursor)},
                                     {"next_group_id", storage::StateStore::encode_u64(s.next_group_id)}});
  if (!persisted.ok()) GRPO_LOG(kError) << "coordinator: cannot persist the prompt cursor: " << persisted;
  s.parked.erase(it);
  s.outstanding[worker] = grant.leases;
  Status sent = s.peers->send_msg(endpoint_of(st.endpoint_prefix, "generator", static_cast<int>(worker)), grant);
  if (send_failed(sent)) GRPO_LOG(kWarn) << "coordinator: lease grant to generator " << worker << " not sent: " << sent;
}

void grant_all(Self* self) {
  std::vector<uint64_t> workers;
  for (const auto& [w, r] : self->state.parked) workers.push_back(w);
  for (uint64_t w : workers) try_grant(self, w);
}

void on_wire(Self* self, const std::string& bytes) {
  auto& s = self->state;
  auto kind = cluster::peek_kind(bytes);
  if (!kind.ok()) return report_bad_message("coordinator", kind.status(), &s.bad_messages);
  switch (*kind) {
    case cluster::MessageKind::kLeaseRequest: {
      cluster::LeaseRequest req;
      if (!decode_or_report("coordinator", bytes, &req, &s.bad_messages)) return;
      if (req.worker_id >= static_cast<uint64_t>(s.ctx.settings.generators) || req.max_groups < 1)
        return report_bad_message("coordinator", invalid_argument("lease request from unknown worker " + std::to_string(req.worker_id)), &s.bad_messages);
      auto held = s.outstanding.find(req.worker_id);
      if (held != s.outstanding.end() && !held->second.empty() && req.restarted && !s.done) {
        cluster::LeaseGrant grant;
        grant.worker_id = req.worker_id;
        grant.leases = held->second;
        for (auto& l : grant.leases) l.deadline_ms = now_ms() + 600000;
        GRPO_LOG(kInfo) << "coordinator: generator " << req.worker_id << " restarted; re-issuing its "
                        << grant.leases.size() << " lost lease(s)";
        Status sent = s.peers->send_msg(endpoint_of(s.ctx.settings.endpoint_prefix, "generator",
                                                    static_cast<int>(req.worker_id)), grant);
        if (send_failed(sent)) GRPO_LOG(kWarn) << "coordinator: re-issued grant not sent: " << sent;
        break;
      }
      s.outstanding.erase(req.worker_id);  // its previous grant is done
      s.parked[req.worker_id] = req;
      try_grant(self, req.worker_id);
      break;
    }
    case cluster::MessageKind::kHeartbeat: {
      cluster::Heartbeat hb;
      if (!decode_or_report("coordinator", bytes, &hb, &s.bad_messages)) return;
      if (hb.role == "learner") {
        s.learner_step = std::max(s.learner_step, hb.step);
        if (s.learner_step >= static_cast<uint64_t>(s.ctx.settings.grpo_steps) && !s.done) {
          s.done = true;
          GRPO_LOG(kInfo) << "coordinator: run state running -> done at learner step " << s.learner_step;
        }
      } else if (hb.role == "buffer") {
        s.buffer_evicted = std::max(s.buffer_evicted, hb.groups_retired);
      }
      grant_all(self);
      break;
    }
    default:
      report_bad_message("coordinator", invalid_argument(std::string("unexpected ") + cluster::message_kind_name(*kind)), &s.bad_messages);
  }
}

caf::behavior coordinator_actor(Self* self, RoleContext ctx, std::shared_ptr<storage::StateStore> store,
                                CoordinatorStart start) {
  auto& s = self->state;
  s.ctx = std::move(ctx);
  s.store = std::move(store);
  s.start = std::move(start);
  s.task = runtime::AdditionTask(s.ctx.settings.digits);
  s.prompt_cursor = s.store->get_u64("prompt_cursor", 0).value();
  s.next_group_id = s.store->get_u64("next_group_id", 1).value();
  if (s.start.reissue_from_group_id > 0 && s.start.reissue_from_group_id < s.next_group_id) {
    // Group ids and prompt indices advance together (prompt index = group id - 1).
    GRPO_LOG(kInfo) << "coordinator: deterministic resume: re-issuing leases " << s.start.reissue_from_group_id
                    << ".." << (s.next_group_id - 1) << " lost with the previous process";
    s.prompt_cursor -= s.next_group_id - s.start.reissue_from_group_id;
    s.next_group_id = s.start.reissue_from_group_id;
  }
  s.learner_step = s.start.learner_step;
  s.issued = s.learner_step * static_cast<uint64_t>(s.ctx.settings.groups_per_step) + s.start.pending_groups;
  if (!open_endpoint(self, s.ctx, "coordinator", 0, &s.mailbox, &s.peers)) {
    self->quit();
    return {};
  }
  GRPO_LOG(kInfo) << "coordinator: up, prompt cursor " << s.prompt_cursor << ", learner step "
                  << s.learner_step << ", " << s.start.pending_groups << " groups waiting in the buffer";
  return {
      [self](wire_atom, const std::string& bytes) { on_wire(self, bytes); },
  };
}

}  // namespace

caf::actor spawn_coordinator(caf::actor_system& sys, const RoleContext& ctx,
                             std::shared_ptr<storage::StateStore> state, CoordinatorStart start) {
  return sys.spawn(coordinator_actor, ctx, std::move(state), std::move(start));
}

}  // namespace grpo::actors
