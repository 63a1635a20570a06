// Coordinator: membership, prompt leases under the staleness bound, the run state and the admin API.
//
// Run states (AdminReply.run_state):
//   running  --grpoctl pause-->  paused  --grpoctl resume-->  running
//   running  --(every group the run needs is leased)-->  draining  --(learner at grpo.steps)-->  done
// paused and draining grant no new leases; leases in flight finish either way.
//
// Leases. Admission follows actors/admission.h. A request that cannot be served now is parked and
// served when the learner advances, a generator reports newer weights or the run resumes; admission
// is paced at lease time and never discards finished rollouts. The last grant of each generator is
// outstanding until that generator's next request says it is done; its leases then await storage
// (below) and count as completed once the buffer has their scored groups. A generator that
// restarted (LeaseRequest.restarted, or a newer epoch) gets its lost grant again: same group ids,
// prompts and seeds, so the buffer's idempotent puts drop any duplicate. A generator silent for
// longer than coordinator.member_timeout_seconds is `lost`, and a grant older than
// coordinator.lease_timeout_seconds has expired: either way its leases go to a re-issue queue that
// the next requesting generators drain before any new prompt is leased.
//
// Storage acknowledgement. A finished group travels generator --> verifier (group id mod the
// verifier count of its grant; for a grant restored by a restarted coordinator, the current desired
// count) --> buffer without replies, so a verifier that dies with groups in
// its queue, or a dropped message, loses them. Hence every lease of a finished grant waits in
// `awaiting` (by group id, with its generator, its verifier and since when) until the buffer reports
// the id stored: buffer heartbeats carry the ids put since the last one (Heartbeat.stored_ids, new
// or duplicate; sent about 0.1 s after a put, actors/buffer.cc). A lease is completed (leases_completed, and its generator's count) exactly once,
// when its id is first reported, wherever the lease is then: awaiting, or, for a re-issued copy whose
// original arrived after all, in the re-issue queue or a generator's grant (it leaves them: no
// needless regeneration). An id reported again is ignored; an id never issued (0, or not below the
// id counter) is counted and logged, never trusted. A heartbeat can be lost (e.g. while this
// coordinator restarts), so every kQueryEveryMs the coordinator asks the buffer (StoredQuery) about
// up to kMaxReportedGroupIds ids awaiting for over kQueryAfterMs, rotating through them; the buffer
// answers with a heartbeat listing those it holds. A lease awaiting storage goes to the re-issue
// queue when its verifier is lost or restarts (a new epoch: its queue died with it), when its
// generator is lost or restarts (the group may have died in the generator's outbox, after the
// request that finished the grant went out), or when it stays unconfirmed past
// coordinator.store_timeout_seconds (the backstop for everything else, e.g. a group skipped by its
// generator or dropped on the wire). Re-issued leases keep their group ids and
// seeds; a duplicate of a group that was stored after all is dropped by the buffer.
//   issued --grant--> outstanding --next request--> awaiting --stored--> completed
//   outstanding --generator lost / lease expired--> re-issue queue --grant--> outstanding
//   awaiting --its verifier or generator lost or restarted / store timeout--> re-issue queue
//   (a lease anywhere --stored--> completed)
// So leases_issued = leases_completed + in flight (outstanding + awaiting + re-issue), and once
// nothing is in flight, leases_completed equals the buffer's count of stored groups.
//
// Membership. Every member sends Heartbeats carrying its epoch (its process start time). The
// coordinator keeps, per (role, id), the newest epoch seen and fences messages from older epochs
// (a restarted or partitioned member's stale traffic). Scaling (grpoctl scale) changes the desired
// generator and verifier counts: `grpo up` starts the new ones; a generator above the new count is
// retired when it asks for work (its in-flight grant completes first: draining), a verifier above
// it once no grant routes groups to it and it reports an empty queue.
//
// Durability. The prompt cursor, group-id counter, lease counters, outstanding grants, the leases
// awaiting storage, the re-issue queue, the pause flag and the desired counts live in the state
// store (RocksDB), written in one atomic batch after every change, so a restarted coordinator
// continues the run where it was (its awaiting leases wait afresh, and the buffer is asked about
// them after kQueryAfterMs).
#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "actors/admission.h"
#include "actors/roles.h"
#include "actors/wire.h"
#include "cluster/admin.h"

namespace grpo::actors {
namespace {

struct Member {
  uint64_t epoch = 0;
  uint64_t last_seen_ms = 0;
  uint64_t policy_version = 0;
  int64_t in_flight = 0;
  uint64_t leases_completed = 0;  // its leases whose groups the buffer confirmed stored
  std::string state = "up";       // up | draining | retired | lost
  int idle_beats = 0;             // retiring verifier: consecutive heartbeats with nothing to do
};

// A lease whose generator finished it, until the buffer confirms its scored group stored.
struct Awaiting {
  cluster::PromptLease lease;
  uint64_t worker = 0;    // the generator that finished it
  uint64_t verifier = 0;  // the verifier its group was routed to
  uint64_t since_ms = 0;  // when its generator reported it finished (or this coordinator started)
};

// The buffer is asked about ids awaiting storage longer than kQueryAfterMs (its reports, about 0.1 s
// after each put, normally confirm them well before), at most every kQueryEveryMs.
constexpr uint64_t kQueryAfterMs = 3000;
constexpr uint64_t kQueryEveryMs = 3000;

struct CoordinatorState {
  RoleContext ctx;
  std::shared_ptr<storage::StateStore> store;
  CoordinatorStart start;
  std::unique_ptr<cluster::Mailbox> mailbox;
  std::unique_ptr<cluster::AdminServer> admin;
  std::unique_ptr<Peers> peers;
  runtime::AdditionTask task{3};
  uint64_t prompt_cursor = 0;
  uint64_t next_group_id = 1;
  uint64_t issued = 0;          // groups in the pipeline's history: retired + in flight
  uint64_t leases_issued = 0;   // lease groups granted (new ones), cumulative over the run
  uint64_t leases_completed = 0;
  uint64_t learner_step = 0;
  uint64_t buffer_evicted = 0;  // since the buffer started
  uint64_t groups_stored = 0;   // the buffer's unique scored groups
  bool paused = false;
  int desired_generators = 1;
  int desired_verifiers = 1;
  uint64_t verifiers_scaled_at_ms = 0;
  std::map<uint64_t, cluster::LeaseRequest> parked;  // by worker id
  // The last grant of each generator and when it was granted, until its next request.
  std::map<uint64_t, std::vector<cluster::PromptLease>> outstanding;  // by worker id
  std::map<uint64_t, uint64_t> granted_at_ms;
  std::vector<cluster::PromptLease> reissue;  // leases lost with their generator or verifier, oldest first
  std::map<uint64_t, Awaiting> awaiting;      // finished leases not yet confirmed stored, by group id
  std::map<uint64_t, int32_t> routed_verifiers;  // by worker: the verifier count its last grant carried
  uint64_t last_query_ms = 0;   // when the buffer was last asked about awaiting ids
  uint64_t query_cursor = 0;    // the last id asked about: the next query starts after it
  uint64_t unknown_stored = 0;  // ids reported stored that were never issued
  std::map<std::pair<std::string, uint64_t>, Member> members;
  uint64_t bad_messages = 0;
  uint64_t fenced = 0;  // messages dropped for a stale epoch
  bool done = false;
  static inline const char* name = "coordinator";
};

using Self = caf::stateful_actor<CoordinatorState>;

uint64_t retired(const CoordinatorState& s) {
  return s.learner_step * static_cast<uint64_t>(s.ctx.settings.groups_per_step) + s.buffer_evicted;
}

uint64_t in_flight(const CoordinatorState& s) {
  uint64_t n = s.reissue.size() + s.awaiting.size();
  for (const auto& [w, leases] : s.outstanding) n += leases.size();
  return n;
}

AdmissionState admission_of(const CoordinatorState& s) {
  AdmissionState adm;
  adm.learner_step = s.learner_step;
  adm.issued = s.issued;
  adm.retired = retired(s);
  adm.groups_per_step = s.ctx.settings.groups_per_step;
  adm.max_staleness = s.ctx.settings.max_staleness;
  adm.total_steps = s.ctx.settings.grpo_steps;
  return adm;
}

// When a lease granted now expires.
uint64_t lease_deadline(const CoordinatorState& s) {
  return now_ms() + static_cast<uint64_t>(s.ctx.settings.lease_timeout_seconds * 1000);
}

// All leases the run needs have been issued (only in-flight ones and re-issues remain).
bool all_issued(const CoordinatorState& s) {
  AdmissionState adm = admission_of(s);
  adm.max_staleness = 1 << 30;  // ignore staleness: is there any step left to lease for?
  return admit(adm, UINT64_MAX / 2, 1).empty();
}

std::string run_state(const CoordinatorState& s) {
  if (s.done) return "done";
  if (s.paused) return "paused";
  if (all_issued(s) && s.reissue.empty()) return "draining";
  return "running";
}

std::string encode_leases(const std::vector<cluster::PromptLease>& leases) {
  cluster::LeaseGrant g;
  g.leases = leases;
  return cluster::encode(g);
}

void persist(Self* self) {
  auto& s = self->state;
  using storage::StateStore;
  std::vector<std::pair<std::string, std::string>> kv = {
      {"prompt_cursor", StateStore::encode_u64(s.prompt_cursor)},
      {"next_group_id", StateStore::encode_u64(s.next_group_id)},
      {"issued", StateStore::encode_u64(s.issued)},
      {"leases_issued", StateStore::encode_u64(s.leases_issued)},
      {"leases_completed", StateStore::encode_u64(s.leases_completed)},
      {"learner_step", StateStore::encode_u64(s.learner_step)},
      {"paused", StateStore::encode_u64(s.paused ? 1 : 0)},
      {"desired_generators", StateStore::encode_u64(static_cast<uint64_t>(s.desired_generators))},
      {"desired_verifiers", StateStore::encode_u64(static_cast<uint64_t>(s.desired_verifiers))},
      {"config_generators", StateStore::encode_u64(static_cast<uint64_t>(s.ctx.settings.generators))},
      {"config_verifiers", StateStore::encode_u64(static_cast<uint64_t>(s.ctx.settings.verifiers))},
      {"reissue", encode_leases(s.reissue)},
  };
  // One key holds every outstanding grant, so a grant and the counters move together.
  cluster::LeaseGrant all;
  for (const auto& [w, leases] : s.outstanding)
    for (auto l : leases) {
      l.deadline_ms = w;  // the worker id rides in the (otherwise unused here) deadline field
      all.leases.push_back(std::move(l));
    }
  kv.emplace_back("outstanding", cluster::encode(all));
  // Likewise the leases awaiting storage, their generator and verifier packed into the deadline.
  cluster::LeaseGrant awaiting;
  for (const auto& [id, a] : s.awaiting) {
    cluster::PromptLease l = a.lease;
    l.deadline_ms = (a.worker << 32) | (a.verifier & 0xffffffffULL);
    awaiting.leases.push_back(std::move(l));
  }
  kv.emplace_back("awaiting", cluster::encode(awaiting));
  Status st = s.store->write(kv);
  if (!st.ok()) GRPO_LOG(kError) << "coordinator: cannot persist the run state: " << st;
}

void restore(CoordinatorState& s) {
  auto u64 = [&](const char* key, uint64_t def) {
    auto v = s.store->get_u64(key, def);
    if (!v.ok()) {
      GRPO_LOG(kError) << "coordinator: state key '" << key << "' unreadable (" << v.status() << "); using " << def;
      return def;
    }
    return *v;
  };
  s.prompt_cursor = u64("prompt_cursor", 0);
  s.next_group_id = u64("next_group_id", 1);
  s.leases_issued = u64("leases_issued", 0);
  s.leases_completed = u64("leases_completed", 0);
  s.desired_generators = s.ctx.settings.generators;
  s.desired_verifiers = s.ctx.settings.verifiers;
  if (!s.start.restore_pipeline) return;  // embedded: every role restarts with the config's counts
  s.paused = u64("paused", 0) != 0;
  // The counts grpoctl set survive a coordinator restart, unless the config itself changed since
  // (the operator restarted the cluster with other counts): then the config wins.
  if (u64("config_generators", 0) == static_cast<uint64_t>(s.ctx.settings.generators) &&
      u64("config_verifiers", 0) == static_cast<uint64_t>(s.ctx.settings.verifiers)) {
    s.desired_generators = static_cast<int>(u64("desired_generators", static_cast<uint64_t>(s.desired_generators)));
    s.desired_verifiers = static_cast<int>(u64("desired_verifiers", static_cast<uint64_t>(s.desired_verifiers)));
  }
  s.issued = u64("issued", s.issued);
  s.learner_step = std::max(s.learner_step, u64("learner_step", 0));
  auto decode_grant = [&](const char* key, cluster::LeaseGrant* g) {
    auto bytes = s.store->get(key);
    if (!bytes.ok()) return false;
    Status st = cluster::decode(*bytes, g);
    if (!st.ok()) GRPO_LOG(kError) << "coordinator: stored '" << key << "' unreadable: " << st;
    return st.ok();
  };
  cluster::LeaseGrant g;
  if (decode_grant("reissue", &g)) s.reissue = g.leases;
  cluster::LeaseGrant all;
  if (decode_grant("outstanding", &all)) {
    const uint64_t now = now_ms(), deadline = lease_deadline(s);
    for (auto& l : all.leases) {
      const uint64_t worker = l.deadline_ms;
      l.deadline_ms = deadline;
      s.outstanding[worker].push_back(std::move(l));
      s.granted_at_ms[worker] = now;
    }
  }
  cluster::LeaseGrant awaiting;
  if (decode_grant("awaiting", &awaiting)) {
    const uint64_t now = now_ms();
    for (auto& l : awaiting.leases) {
      Awaiting a;
      a.worker = l.deadline_ms >> 32;
      a.verifier = l.deadline_ms & 0xffffffffULL;
      a.since_ms = now;
      l.deadline_ms = 0;
      a.lease = std::move(l);
      const uint64_t id = a.lease.group_id;
      s.awaiting[id] = std::move(a);
    }
  }
}

std::string generator_endpoint(const CoordinatorState& s, uint64_t worker) {
  return endpoint_of(s.ctx.settings.endpoint_prefix, "generator", static_cast<int>(worker));
}

Member& member(CoordinatorState& s, const std::string& role, uint64_t id) { return s.members[{role, id}]; }

// Accepts a message of (role, id) at `epoch`: false when it is from an older epoch than seen
// (fenced). Records a newer epoch. Epoch 0 (a sender that does not say) is always accepted.
bool admit_epoch(CoordinatorState& s, const std::string& role, uint64_t id, uint64_t epoch, bool* restarted) {
  *restarted = false;
  // Epochs are start times in ms; one from the future (beyond a minute of clock skew) is not a
  // real process's, and accepting it would fence the member's real messages.
  if (epoch > now_ms() + 60000) {
    report_bad_message("coordinator", invalid_argument(role + " " + std::to_string(id) + ": epoch " + std::to_string(epoch) + " lies in the future"), &s.bad_messages);
    return false;
  }
  Member& m = member(s, role, id);
  if (epoch != 0 && epoch < m.epoch) {
    ++s.fenced;
    if ((s.fenced & (s.fenced - 1)) == 0)
      GRPO_LOG(kWarn) << "coordinator: fenced a message from " << role << " " << id << " of epoch " << epoch
                      << " (current " << m.epoch << "); " << s.fenced << " so far";
    return false;
  }
  if (epoch > m.epoch) {
    *restarted = m.epoch != 0;
    m.epoch = epoch;
  }
  m.last_seen_ms = now_ms();
  if (m.state == "lost") m.state = "up";
  return true;
}

void send_grant(Self* self, uint64_t worker, cluster::LeaseGrant grant) {
  auto& s = self->state;
  grant.worker_id = worker;
  grant.verifiers = s.desired_verifiers;
  s.routed_verifiers[worker] = grant.verifiers;  // the generator routes this grant's groups by it
  Status sent = s.peers->send_msg(generator_endpoint(s, worker), grant);
  if (send_failed(sent)) GRPO_LOG(kWarn) << "coordinator: grant to generator " << worker << " not sent: " << sent;
}

void retire_generator(Self* self, uint64_t worker) {
  auto& s = self->state;
  cluster::LeaseGrant grant;
  grant.retire = true;
  member(s, "generator", worker).state = "retired";
  s.parked.erase(worker);
  GRPO_LOG(kInfo) << "coordinator: generator " << worker << " retired (scaled to " << s.desired_generators << ")";
  send_grant(self, worker, grant);
}

void try_grant(Self* self, uint64_t worker) {
  auto& s = self->state;
  auto it = s.parked.find(worker);
  if (it == s.parked.end() || s.done) return;
  if (worker >= static_cast<uint64_t>(s.desired_generators)) return retire_generator(self, worker);
  if (s.paused) return;
  const auto& st = s.ctx.settings;
  const cluster::LeaseRequest req = it->second;
  const uint64_t deadline = lease_deadline(s);
  cluster::LeaseGrant grant;
  // Lost leases first: they are the oldest work of the pipeline.
  for (auto r = s.reissue.begin(); r != s.reissue.end() && static_cast<int32_t>(grant.leases.size()) < req.max_groups;) {
    if (req.policy_version < r->min_version) {
      ++r;
      continue;
    }
    r->deadline_ms = deadline;
    grant.leases.push_back(std::move(*r));
    r = s.reissue.erase(r);
  }
  const AdmissionState adm = admission_of(s);
  const int32_t room = req.max_groups - static_cast<int32_t>(grant.leases.size());
  for (uint64_t consumed_at : room > 0 ? admit(adm, req.policy_version, room) : std::vector<uint64_t>{}) {
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
    lease.deadline_ms = deadline;
    lease.seed = runtime::mix64(st.seed ^ (lease.group_id * 0x9e3779b97f4a7c15ULL));
    lease.sampling.temperature = st.temperature;
    lease.sampling.top_p = st.top_p;
    lease.sampling.max_new_tokens = st.max_new_tokens;
    grant.leases.push_back(std::move(lease));
    ++s.issued;
    ++s.leases_issued;
  }
  if (grant.leases.empty()) return;  // stays parked
  s.parked.erase(it);
  s.outstanding[worker] = grant.leases;
  s.granted_at_ms[worker] = now_ms();
  member(s, "generator", worker).in_flight = static_cast<int64_t>(grant.leases.size());
  persist(self);
  send_grant(self, worker, std::move(grant));
}

void grant_all(Self* self) {
  std::vector<uint64_t> workers;
  for (const auto& [w, r] : self->state.parked) workers.push_back(w);
  for (uint64_t w : workers) try_grant(self, w);
}

// Moves a generator's outstanding grant to the re-issue queue (its leases were lost).
void requeue(Self* self, uint64_t worker, const std::string& why) {
  auto& s = self->state;
  auto held = s.outstanding.find(worker);
  if (held == s.outstanding.end() || held->second.empty()) return;
  GRPO_LOG(kWarn) << "coordinator: generator " << worker << " " << why << "; its " << held->second.size()
                  << " lease(s) go to other generators";
  for (auto& l : held->second) s.reissue.push_back(std::move(l));
  s.outstanding.erase(held);
  s.granted_at_ms.erase(worker);
  persist(self);
  grant_all(self);
}

// A finished grant of `worker`: its leases await the buffer's confirmation that their groups are
// stored. Each group went to the verifier its id picks among the grant's verifier count.
void await_storage(CoordinatorState& s, uint64_t worker, std::vector<cluster::PromptLease> leases) {
  auto routed = s.routed_verifiers.find(worker);
  const uint64_t verifiers =
      static_cast<uint64_t>(std::max<int32_t>(1, routed != s.routed_verifiers.end() ? routed->second : s.desired_verifiers));
  const uint64_t now = now_ms();
  for (auto& l : leases) {
    Awaiting a;
    a.worker = worker;
    a.verifier = l.group_id % verifiers;
    a.since_ms = now;
    a.lease = std::move(l);
    const uint64_t id = a.lease.group_id;
    s.awaiting[id] = std::move(a);
  }
}

// Counts `n` leases completed, for the generator `worker` when it is known (a lease from the
// re-issue queue has none).
void complete_leases(CoordinatorState& s, const uint64_t* worker, uint64_t n) {
  s.leases_completed += n;
  if (worker == nullptr) return;
  // Only members already heard from: an entry made here would count as silent since forever.
  auto m = s.members.find({"generator", *worker});
  if (m != s.members.end()) m->second.leases_completed += n;
}

// The buffer holds the groups `ids` (its heartbeat): their leases are completed, once.
void on_stored(Self* self, const std::vector<uint64_t>& ids) {
  auto& s = self->state;
  uint64_t completed = 0, unknown = 0;
  std::set<uint64_t> elsewhere;  // not awaiting: re-issued copies, or reported before
  for (uint64_t id : ids) {
    if (id == 0 || id >= s.next_group_id) {
      ++unknown;
      continue;
    }
    auto a = s.awaiting.find(id);
    if (a == s.awaiting.end()) {
      elsewhere.insert(id);
      continue;
    }
    complete_leases(s, &a->second.worker, 1);
    s.awaiting.erase(a);
    ++completed;
  }
  if (!elsewhere.empty()) {
    // A re-issued lease whose original group reached the buffer after all: it needs no generator.
    for (auto r = s.reissue.begin(); r != s.reissue.end();) {
      if (elsewhere.erase(r->group_id) == 0) {
        ++r;
        continue;
      }
      complete_leases(s, nullptr, 1);
      r = s.reissue.erase(r);
      ++completed;
    }
    for (auto o = s.outstanding.begin(); o != s.outstanding.end() && !elsewhere.empty();) {
      const uint64_t worker = o->first;
      auto& leases = o->second;
      uint64_t n = 0;
      for (auto l = leases.begin(); l != leases.end();) {
        if (elsewhere.erase(l->group_id) == 0) {
          ++l;
          continue;
        }
        l = leases.erase(l);
        ++n;
      }
      if (n > 0) {
        complete_leases(s, &worker, n);
        completed += n;
        auto m = s.members.find({"generator", worker});
        if (m != s.members.end()) m->second.in_flight = std::max<int64_t>(0, m->second.in_flight - static_cast<int64_t>(n));
      }
      if (n > 0 && leases.empty()) {
        s.granted_at_ms.erase(worker);
        o = s.outstanding.erase(o);
      } else {
        ++o;
      }
    }
    // What is left was reported before (heartbeats and query answers overlap): nothing to do.
  }
  if (unknown > 0) {
    const uint64_t before = s.unknown_stored;
    s.unknown_stored += unknown;
    // Logged the first time and whenever the total crosses a power of two.
    if (before == 0 || (64 - __builtin_clzll(before)) != (64 - __builtin_clzll(s.unknown_stored)))
      GRPO_LOG(kWarn) << "coordinator: the buffer reported " << unknown << " stored group id(s) never issued (id counter at "
                      << s.next_group_id << "); ignored, " << s.unknown_stored << " so far";
  }
  if (completed > 0) persist(self);
}

// Moves the leases awaiting storage that `lost` selects to the re-issue queue; returns how many.
template <typename Pred>
size_t move_awaiting(CoordinatorState& s, Pred lost, const std::string& why) {
  size_t n = 0;
  std::string which;  // the first few, for the log: group id (generator, verifier)
  for (auto a = s.awaiting.begin(); a != s.awaiting.end();) {
    if (!lost(a->second)) {
      ++a;
      continue;
    }
    if (n < 8)
      which += (n > 0 ? ", " : "") + std::to_string(a->first) + " (generator " + std::to_string(a->second.worker) +
               ", verifier " + std::to_string(a->second.verifier) + ")";
    s.reissue.push_back(std::move(a->second.lease));
    a = s.awaiting.erase(a);
    ++n;
  }
  if (n > 0)
    GRPO_LOG(kWarn) << "coordinator: " << why << "; " << n << " finished lease(s) not yet confirmed stored are re-issued: "
                    << which << (n > 8 ? ", ..." : "");
  return n;
}

// move_awaiting, then the change is stored and the re-issued leases go to waiting generators.
template <typename Pred>
void reissue_awaiting(Self* self, Pred lost, const std::string& why) {
  if (move_awaiting(self->state, lost, why) == 0) return;
  persist(self);
  grant_all(self);
}

void reissue_routed_to(Self* self, uint64_t verifier, const std::string& why) {
  reissue_awaiting(self, [verifier](const Awaiting& a) { return a.verifier == verifier; },
                   "verifier " + std::to_string(verifier) + " " + why);
}

// Asks the buffer which of the ids awaiting storage for a while it holds (a heartbeat that carried
// them may have been lost); up to kMaxReportedGroupIds per query, continuing after the last one asked.
void query_buffer(Self* self, uint64_t now) {
  auto& s = self->state;
  if (s.awaiting.empty() || now < s.last_query_ms + kQueryEveryMs) return;
  cluster::StoredQuery q;
  auto consider = [&](const std::pair<const uint64_t, Awaiting>& e) {
    if (now >= e.second.since_ms + kQueryAfterMs) q.ids.push_back(e.first);
    return q.ids.size() < cluster::kMaxReportedGroupIds;
  };
  auto start = s.awaiting.upper_bound(s.query_cursor);
  bool room = true;
  for (auto it = start; it != s.awaiting.end() && room; ++it) room = consider(*it);
  for (auto it = s.awaiting.begin(); it != start && room; ++it) room = consider(*it);
  if (q.ids.empty()) return;
  s.last_query_ms = now;
  s.query_cursor = q.ids.back();
  Status sent = s.peers->send_msg(endpoint_of(s.ctx.settings.endpoint_prefix, "buffer", 0), q);
  if (send_failed(sent)) GRPO_LOG(kWarn) << "coordinator: query of " << q.ids.size() << " stored ids not sent: " << sent;
}

void on_lease_request(Self* self, const cluster::LeaseRequest& req) {
  auto& s = self->state;
  if (req.worker_id >= static_cast<uint64_t>(kMaxScaledWorkers) || req.max_groups < 1)
    return report_bad_message("coordinator", invalid_argument("lease request from unknown worker " + std::to_string(req.worker_id)), &s.bad_messages);
  bool new_epoch = false;
  if (!admit_epoch(s, "generator", req.worker_id, req.epoch, &new_epoch)) return;
  Member& m = member(s, "generator", req.worker_id);
  m.policy_version = req.policy_version;
  // A restarted generator's last groups may have died in its outbox, after the request that
  // finished their grant went out: its leases awaiting storage are re-issued. (Stored below or
  // with the grant; granted by the code below, not here: this request is not handled yet.)
  const bool moved = (req.restarted || new_epoch) &&
                     move_awaiting(s, [w = req.worker_id](const Awaiting& a) { return a.worker == w; },
                                   "generator " + std::to_string(req.worker_id) + " restarted") > 0;
  auto held = s.outstanding.find(req.worker_id);
  // A retry while a grant is outstanding means the generator never got that grant (it would have
  // asked without the retry mark after finishing it): send it again. If it was the completion
  // request that got lost, the generator redoes the grant and the buffer drops the duplicates.
  const bool lost_grant = req.restarted || new_epoch || req.retry;
  if (held != s.outstanding.end() && !held->second.empty() && lost_grant && !s.done) {
    if (req.worker_id >= static_cast<uint64_t>(s.desired_generators)) {
      requeue(self, req.worker_id, "restarted after it was scaled away");
      return retire_generator(self, req.worker_id);
    }
    cluster::LeaseGrant grant;
    grant.leases = held->second;
    for (auto& l : grant.leases) l.deadline_ms = lease_deadline(s);
    s.granted_at_ms[req.worker_id] = now_ms();
    GRPO_LOG(kInfo) << "coordinator: generator " << req.worker_id
                    << (req.retry ? " asked again without its grant" : " restarted") << "; re-issuing its "
                    << grant.leases.size() << " lost lease(s)";
    if (moved) persist(self);
    return send_grant(self, req.worker_id, std::move(grant));
  }
  if (held != s.outstanding.end()) {  // its previous grant is done: its groups are on their way
    await_storage(s, req.worker_id, std::move(held->second));
    s.outstanding.erase(held);
    s.granted_at_ms.erase(req.worker_id);
  }
  m.in_flight = 0;
  if (m.state != "retired") m.state = req.worker_id >= static_cast<uint64_t>(s.desired_generators) ? "draining" : "up";
  s.parked[req.worker_id] = req;
  persist(self);
  try_grant(self, req.worker_id);
}

void on_heartbeat(Self* self, const cluster::Heartbeat& hb) {
  auto& s = self->state;
  if (hb.role != "learner" && hb.role != "buffer" && hb.role != "generator" && hb.role != "verifier" &&
      hb.role != "broadcaster")
    return report_bad_message("coordinator", invalid_argument("heartbeat from unknown role '" + hb.role + "'"), &s.bad_messages);
  if (hb.worker_id >= static_cast<uint64_t>(kMaxScaledWorkers))
    return report_bad_message("coordinator", invalid_argument("heartbeat from " + hb.role + " " + std::to_string(hb.worker_id) + ": id out of range"), &s.bad_messages);
  bool new_epoch = false;
  if (!admit_epoch(s, hb.role, hb.worker_id, hb.epoch, &new_epoch)) return;
  Member& m = member(s, hb.role, hb.worker_id);
  m.policy_version = hb.policy_version;
  if (hb.role != "generator") m.in_flight = hb.in_flight;
  if (hb.role == "learner") {
    if (hb.worker_id == 0) s.learner_step = std::max(s.learner_step, hb.step);
    if (s.learner_step >= static_cast<uint64_t>(s.ctx.settings.grpo_steps) && !s.done) {
      s.done = true;
      GRPO_LOG(kInfo) << "coordinator: run state -> done at learner step " << s.learner_step;
    }
  } else if (hb.role == "buffer") {
    s.buffer_evicted = std::max(s.buffer_evicted, hb.groups_retired);
    s.groups_stored = std::max(s.groups_stored, hb.groups_stored);
    if (!hb.stored_ids.empty()) on_stored(self, hb.stored_ids);
  } else if (hb.role == "verifier" && new_epoch) {
    // Restarted: whatever was in its queue died with the old process.
    reissue_routed_to(self, hb.worker_id, "restarted");
  }
  if (hb.role != "buffer" && !hb.stored_ids.empty())
    report_bad_message("coordinator", invalid_argument(hb.role + " " + std::to_string(hb.worker_id) + " reports stored groups; only the buffer does"), &s.bad_messages);
  if (hb.role == "verifier" && hb.worker_id >= static_cast<uint64_t>(s.desired_verifiers) && m.state != "retired") {
    // A verifier above the desired count retires once nothing can still route groups to it: every
    // outstanding grant was made after the scale-down (grants carry the verifier count), and two
    // heartbeats in a row report an empty queue (the second covers groups still on the wire).
    bool old_grants = false;
    for (const auto& [w, at] : s.granted_at_ms)
      if (at < s.verifiers_scaled_at_ms) old_grants = true;
    m.state = "draining";
    m.idle_beats = (!old_grants && hb.in_flight == 0) ? m.idle_beats + 1 : 0;
    if (m.idle_beats >= 2) {
      cluster::LeaseGrant retire;
      retire.worker_id = hb.worker_id;
      retire.retire = true;
      m.state = "retired";
      GRPO_LOG(kInfo) << "coordinator: verifier " << hb.worker_id << " retired (scaled to " << s.desired_verifiers << ")";
      (void)s.peers->send_msg(endpoint_of(s.ctx.settings.endpoint_prefix, "verifier", static_cast<int>(hb.worker_id)), retire);
    }
  }
  grant_all(self);
}

// Lease deadlines and member liveness.
void on_tick(Self* self) {
  auto& s = self->state;
  const uint64_t now = now_ms();
  const uint64_t member_timeout = static_cast<uint64_t>(s.ctx.settings.member_timeout_seconds * 1000);
  for (auto& [key, m] : s.members) {
    if (m.state == "retired" || m.state == "lost") continue;
    if (now > m.last_seen_ms + member_timeout) {
      m.state = "lost";
      // After the last step members stop as they finish (learner 0 evaluates, then all exit):
      // nothing is left to re-issue and nothing to warn about.
      if (s.done) continue;
      GRPO_LOG(kWarn) << "coordinator: " << key.first << " " << key.second << " is lost (silent for "
                      << (now - m.last_seen_ms) / 1000 << " s)";
      if (key.first == "generator") {
        requeue(self, key.second, "is lost");
        // Groups still in its outbox are lost with it too.
        reissue_awaiting(self, [w = key.second](const Awaiting& a) { return a.worker == w; },
                         "generator " + std::to_string(key.second) + " is lost");
      }
      if (key.first == "verifier") reissue_routed_to(self, key.second, "is lost");
    }
  }
  std::vector<uint64_t> expired;
  for (const auto& [w, leases] : s.outstanding)
    if (!leases.empty() && now > leases.front().deadline_ms) expired.push_back(w);
  for (uint64_t w : expired) requeue(self, w, "missed its lease deadline");
  // Members never heard from since this coordinator started (it restarted while they were gone)
  // are not in the table: their grants expire through the deadline above, and the leases awaiting
  // storage that their groups do not confirm through the store timeout below.
  const uint64_t store_timeout = static_cast<uint64_t>(s.ctx.settings.store_timeout_seconds * 1000);
  reissue_awaiting(self, [&](const Awaiting& a) { return now > a.since_ms + store_timeout; },
                   "the buffer has not confirmed groups within coordinator.store_timeout_seconds");
  query_buffer(self, now);
}

cluster::AdminReply status_reply(const CoordinatorState& s) {
  cluster::AdminReply r;
  r.ok = true;
  r.run_state = run_state(s);
  r.learner_step = s.learner_step;
  r.total_steps = static_cast<uint64_t>(s.ctx.settings.grpo_steps);
  r.leases_issued = s.leases_issued;
  r.leases_completed = s.leases_completed;
  r.leases_in_flight = in_flight(s);
  r.leases_awaiting_storage = s.awaiting.size();
  r.groups_stored = s.groups_stored;
  r.groups_retired = s.buffer_evicted;
  r.desired_generators = s.desired_generators;
  r.desired_verifiers = s.desired_verifiers;
  r.epoch = s.ctx.epoch;
  const uint64_t now = now_ms();
  for (const auto& [key, m] : s.members) {
    cluster::MemberInfo info;
    info.role = key.first;
    info.worker_id = key.second;
    info.epoch = m.epoch;
    info.state = m.state;
    info.last_seen_ms_ago = now > m.last_seen_ms ? now - m.last_seen_ms : 0;
    info.policy_version = m.policy_version;
    info.in_flight = m.in_flight;
    info.leases_completed = m.leases_completed;
    r.members.push_back(std::move(info));
  }
  return r;
}

std::string on_admin(Self* self, const std::string& bytes) {
  auto& s = self->state;
  cluster::AdminRequest req;
  cluster::AdminReply reply;
  Status st = cluster::decode(bytes, &req);
  if (!st.ok()) {
    report_bad_message("coordinator admin", st, &s.bad_messages);
    reply.error = "malformed admin request: " + st.message();
    return cluster::encode(reply);
  }
  if (req.command == "status" || req.command == "members") return cluster::encode(status_reply(s));
  if (req.command == "pause" || req.command == "resume") {
    const bool was = s.paused;
    s.paused = req.command == "pause";
    persist(self);
    GRPO_LOG(kInfo) << "coordinator: " << (s.paused ? "paused by grpoctl" : "resumed by grpoctl");
    if (!s.paused) grant_all(self);
    reply = status_reply(s);
    reply.message = was == s.paused ? std::string("already ") + (s.paused ? "paused" : "running")
                                    : (s.paused ? "paused: no new leases; work in flight finishes"
                                                : "resumed: leasing again");
    return cluster::encode(reply);
  }
  if (req.command == "scale") {
    if (s.ctx.settings.endpoint_prefix.rfind("inproc://", 0) == 0) {
      reply.error = "scale: this is an embedded run (one process); scaling needs cluster mode (grpo up)";
      return cluster::encode(reply);
    }
    if (req.role != "generator" && req.role != "verifier") {
      reply.error = "scale: role must be generator or verifier, not '" + req.role + "'";
      return cluster::encode(reply);
    }
    if (req.count < 1 || req.count > kMaxScaledWorkers) {
      reply.error = "scale: count must be between 1 and " + std::to_string(kMaxScaledWorkers) + ", not " +
                    std::to_string(req.count);
      return cluster::encode(reply);
    }
    int& desired = req.role == "generator" ? s.desired_generators : s.desired_verifiers;
    const int before = desired;
    desired = req.count;
    if (req.role == "verifier") s.verifiers_scaled_at_ms = now_ms();
    persist(self);
    GRPO_LOG(kInfo) << "coordinator: " << req.role << "s scaled " << before << " -> " << desired;
    if (req.role == "generator") {
      for (auto& [key, m] : s.members)
        if (key.first == "generator" && key.second >= static_cast<uint64_t>(desired) && m.state == "up") m.state = "draining";
      grant_all(self);  // parked generators above the count retire now
    }
    reply = status_reply(s);
    reply.message = req.role + "s " + std::to_string(before) + " -> " + std::to_string(desired) +
                    (desired > before ? " (grpo up starts the new ones)"
                                      : desired < before ? " (the extra ones drain their work, then exit)" : "");
    return cluster::encode(reply);
  }
  reply.error = "unknown command '" + req.command + "' (commands: status, members, scale, pause, resume)";
  return cluster::encode(reply);
}

void on_wire(Self* self, const std::string& bytes) {
  auto& s = self->state;
  auto kind = cluster::peek_kind(bytes);
  if (!kind.ok()) return report_bad_message("coordinator", kind.status(), &s.bad_messages);
  switch (*kind) {
    case cluster::MessageKind::kLeaseRequest: {
      cluster::LeaseRequest req;
      if (!decode_or_report("coordinator", bytes, &req, &s.bad_messages)) return;
      on_lease_request(self, req);
      break;
    }
    case cluster::MessageKind::kHeartbeat: {
      cluster::Heartbeat hb;
      if (!decode_or_report("coordinator", bytes, &hb, &s.bad_messages)) return;
      on_heartbeat(self, hb);
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
  s.learner_step = s.start.learner_step;
  s.issued = s.learner_step * static_cast<uint64_t>(s.ctx.settings.groups_per_step) + s.start.pending_groups;
  restore(s);
  if (s.start.reissue_from_group_id > 0 && s.start.reissue_from_group_id < s.next_group_id) {
    // Group ids and prompt indices advance together (prompt index = group id - 1).
    GRPO_LOG(kInfo) << "coordinator: deterministic resume: re-issuing leases " << s.start.reissue_from_group_id
                    << ".." << (s.next_group_id - 1) << " lost with the previous process";
    s.prompt_cursor -= s.next_group_id - s.start.reissue_from_group_id;
    s.next_group_id = s.start.reissue_from_group_id;
  }
  if (!open_endpoint(self, s.ctx, "coordinator", 0, &s.mailbox, &s.peers)) {
    self->quit();
    return {};
  }
  // The admin socket answers grpoctl. Its handler runs on the socket's thread and asks this actor,
  // so every command is serialised with the lease traffic.
  cluster::AdminServerOptions admin_options;
  if (s.ctx.settings.secured())
    admin_options.security = cluster::admin_server_security(s.ctx.settings.cluster_keys, s.ctx.settings.admin_public_key);
  caf::actor me = caf::actor_cast<caf::actor>(self);
  caf::actor_system* sys = &self->home_system();
  auto admin = cluster::AdminServer::bind(
      s.ctx.transport,
      // On the coordinator's own host when run.hosts places it (PORT+2 there).
      cluster::admin_endpoint(prefix_for(s.ctx.settings.endpoint_prefix, "coordinator", 0), s.ctx.settings.run_dir),
      [sys, weak = caf::actor_cast<caf::weak_actor_ptr>(me)](const std::string& request) {
        cluster::AdminReply unavailable;
        unavailable.error = "the coordinator is shutting down";
        auto target = caf::actor_cast<caf::actor>(weak.lock());
        if (!target) return cluster::encode(unavailable);
        std::string reply = cluster::encode(unavailable);
        caf::scoped_actor asker{*sys};
        asker->request(target, std::chrono::seconds(5), admin_atom::value, request)
            .receive([&](const std::string& r) { reply = r; }, [&](const caf::error&) {});
        return reply;
      },
      admin_options);
  if (admin.ok()) {
    s.admin = std::move(admin).value();
  } else {
    // Steering is lost, training is not: the run goes on without an admin socket.
    GRPO_LOG(kWarn) << "coordinator: no admin socket (grpoctl cannot reach this run): " << admin.status();
  }
  self->attach_functor([&s] {
    if (s.admin) s.admin->close();
  });
  if (s.paused) GRPO_LOG(kWarn) << "coordinator: the run is paused (grpoctl resume leases again)";
  GRPO_LOG(kInfo) << "coordinator: up (epoch " << s.ctx.epoch << "), prompt cursor " << s.prompt_cursor
                  << ", learner step " << s.learner_step << ", " << s.leases_issued << " leases issued, "
                  << in_flight(s) << " in flight (" << s.awaiting.size() << " awaiting storage), "
                  << s.start.pending_groups << " groups waiting in the buffer"
                  << (s.admin ? ", admin at " + s.admin->endpoint() : std::string());
  self->delayed_send(self, std::chrono::seconds(1), tick_atom::value);
  return {
      [self](wire_atom, const std::string& bytes) { on_wire(self, bytes); },
      [self](admin_atom, const std::string& bytes) -> std::string { return on_admin(self, bytes); },
      [self](tick_atom) {
        on_tick(self);
        self->delayed_send(self, std::chrono::seconds(1), tick_atom::value);
      },
  };
}

}  // namespace

caf::actor spawn_coordinator(caf::actor_system& sys, const RoleContext& ctx,
                             std::shared_ptr<storage::StateStore> state, CoordinatorStart start) {
  return sys.spawn(coordinator_actor, ctx, std::move(state), std::move(start));
}

}  // namespace grpo::actors
