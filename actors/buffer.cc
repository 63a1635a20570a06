// Buffer: the sharded RocksDB rollout store (storage/rollout_store.h) behind a mailbox.
//
// Scored groups are stored idempotently by group id in shard id % buffer.shards (a duplicate is a
// no-op, across restarts too), under their behaviour version (the oldest weight version among their
// tokens). A TrainBatchRequest for step s is served when enough pending groups are at least
// min_version, lowest ids first across the shards: the store logs "step s = these groups", marks
// them consumed in every shard and then moves its cursor to s, and only then is the batch sent
// (exactly once; a commit cut short by a crash is replayed with the same groups). A request for a
// step already served (a learner restarted from a checkpoint) gets the same groups again. A request
// that cannot be served yet is parked until enough groups arrive. Groups older than the window are
// evicted and reported to the coordinator so that admission accounts for them.
// Acknowledgement and retention: the request for step s says the learner trained every step before
// s; the payloads of batches up to min(s - 1, the newest checkpoint's step) are deleted then, since a
// restarted learner asks for the step after its checkpoint and never for an older one.
// Dynamic sampling (grpo.dynamic_sampling, DAPO): a group whose rewards are all equal has zero
// advantage everywhere and teaches nothing, so on arrival it is discarded (evicted, reported to the
// coordinator as retired, which lets admission lease a fresh prompt in its place) until
// grpo.max_dropped x groups_per_step have been dropped since the last batch was served; past that
// cap such groups are kept and fill the batch. The batch tells the learner how many were dropped
// (a batch served again after a restart reports those dropped since the restart).
// Heartbeat: every second (and on every eviction) the coordinator hears the groups retired since
// start and the unique scored groups ever stored (persisted: the shards keep every id they accepted).
// Storage acknowledgement (the coordinator counts a lease completed only when its group is stored
// here; see actors/coordinator.cc): the ids of the groups put, new or duplicate (a re-issued copy's
// lease is waiting too), go to the coordinator in a heartbeat kReportDelay after the first of them
// (batched: at most a few reports a second, yet a lease completes promptly) or with the periodic
// heartbeat, at most cluster::kMaxReportedGroupIds per heartbeat, longer lists in several. A
// heartbeat can be lost, so the coordinator asks (StoredQuery) about ids it has waited on for a
// while; the answer is an immediate heartbeat listing those the store holds (pending, consumed or
// evicted: ids stay as tombstones), which survives restarts of either side.
//
// State machine: idle --(TrainBatchRequest)--> parked --(enough groups | replay)--> idle (batch sent);
// a parked request is retried on every stored group and every heartbeat tick.
#include <algorithm>
#include <chrono>
#include <optional>
#include <vector>

#include "actors/roles.h"
#include "actors/wire.h"
#include "runtime/checkpoint.h"

namespace grpo::actors {
namespace {

struct BufferState {
  RoleContext ctx;
  std::shared_ptr<storage::RolloutStore> store;
  std::unique_ptr<cluster::Mailbox> mailbox;
  std::unique_ptr<Peers> peers;
  std::optional<cluster::TrainBatchRequest> parked;
  uint64_t evicted = 0;
  uint64_t dropped = 0;             // by dynamic sampling, since start
  uint64_t dropped_this_step = 0;   // since the last served batch
  uint64_t duplicates = 0;
  uint64_t bad_messages = 0;
  std::vector<uint64_t> stored_ids;  // put since the last heartbeat, not yet reported
  bool report_scheduled = false;     // a flush_atom is on its way
  static inline const char* name = "buffer";
};

using Self = caf::stateful_actor<BufferState>;

constexpr auto kHeartbeatInterval = std::chrono::seconds(1);
// How long the ids of stored groups wait for company before they are reported.
constexpr auto kReportDelay = std::chrono::milliseconds(100);

// Sends a heartbeat carrying `ids` (stored group ids), split into several when they exceed the
// wire's limit. `ids` is consumed.
void send_heartbeat(Self* self, std::vector<uint64_t>* ids) {
  auto& s = self->state;
  cluster::Heartbeat hb;
  hb.role = "buffer";
  hb.epoch = s.ctx.epoch;
  hb.groups_retired = s.evicted + s.dropped;
  hb.groups_stored = s.store->stats().accepted;
  const std::string coordinator = endpoint_of(s.ctx.settings.endpoint_prefix, "coordinator", 0);
  size_t at = 0;
  do {
    const size_t n = std::min(cluster::kMaxReportedGroupIds, ids->size() - at);
    hb.stored_ids.assign(ids->begin() + static_cast<std::ptrdiff_t>(at), ids->begin() + static_cast<std::ptrdiff_t>(at + n));
    at += n;
    hb.timestamp_ms = now_ms();
    (void)s.peers->send_msg(coordinator, hb);
  } while (at < ids->size());
  ids->clear();
}

// The periodic heartbeat (and the one after an eviction): reports the ids stored since the last.
void send_heartbeat(Self* self) { send_heartbeat(self, &self->state.stored_ids); }

// The coordinator asks which of `q.ids` are stored: the answer is a heartbeat listing those held.
void answer_query(Self* self, const cluster::StoredQuery& q) {
  auto& s = self->state;
  std::vector<uint64_t> held;
  for (uint64_t id : q.ids) {
    auto info = s.store->lookup(id);
    if (info.ok()) {
      held.push_back(id);
    } else if (info.status().code() != StatusCode::kNotFound) {
      GRPO_LOG(kWarn) << "buffer: cannot look up group " << id << " for the coordinator: " << info.status();
    }
  }
  send_heartbeat(self, &held);
}

bool rewards_all_equal(const cluster::ScoredGroup& g) {
  for (const auto& r : g.rewards)
    if (r.total != g.rewards.front().total) return false;
  return true;
}

// Dynamic sampling: drops a freshly stored group without learning signal, within the step's cap.
void maybe_drop(Self* self, const cluster::ScoredGroup& sg) {
  auto& s = self->state;
  const auto& st = s.ctx.settings;
  if (!st.dynamic_sampling || sg.rewards.empty() || !rewards_all_equal(sg)) return;
  const uint64_t cap = static_cast<uint64_t>(st.max_dropped) * static_cast<uint64_t>(st.groups_per_step);
  if (s.dropped_this_step >= cap) return;
  auto n = s.store->discard({sg.rollout.group_id});
  if (!n.ok()) {
    GRPO_LOG(kError) << "buffer: discarding group " << sg.rollout.group_id << " failed: " << n.status();
    return;
  }
  if (*n == 0) return;
  ++s.dropped;
  ++s.dropped_this_step;
  send_heartbeat(self);
}

// Retention after the request for `step`: see the top of this file.
void retain(Self* self, uint64_t step) {
  auto& s = self->state;
  uint64_t checkpointed = 0;
  try {
    auto latest = runtime::latest_checkpoint(s.ctx.settings.run_dir);
    if (!latest.ok() || !latest->has_value()) return;  // no checkpoint yet: keep everything
    checkpointed = static_cast<uint64_t>(std::max<int64_t>(0, (*latest)->step));
  } catch (const std::exception& e) {  // a malformed meta.json must not take the buffer down
    GRPO_LOG(kWarn) << "buffer: cannot read the newest checkpoint, nothing pruned: " << e.what();
    return;
  }
  const uint64_t through = std::min(step - 1, checkpointed);
  if (through <= s.store->stats().pruned_through) return;
  Status st = s.store->prune_consumed(through);
  if (!st.ok()) GRPO_LOG(kWarn) << "buffer: pruning the batches through step " << through << " failed: " << st;
}

void try_serve(Self* self) {
  auto& s = self->state;
  if (!s.parked) return;
  const cluster::TrainBatchRequest req = *s.parked;
  auto evicted = s.store->evict_stale(req.min_version);
  if (!evicted.ok()) {
    GRPO_LOG(kError) << "buffer: evicting groups older than version " << req.min_version << " failed: " << evicted.status();
  } else if (*evicted > 0) {
    s.evicted += *evicted;
    GRPO_LOG(kInfo) << "buffer: evicted " << *evicted << " groups older than version " << req.min_version;
    send_heartbeat(self);
  }
  auto taken = s.store->take_batch(req.step, req.min_version, static_cast<size_t>(req.num_groups));
  if (!taken.ok()) {
    // Only a storage failure may pass (it is retried on the next group or tick); a request the store
    // refuses (a pruned or never-served step, corrupt records) would fail the same way forever.
    GRPO_LOG(kError) << "buffer: batch for step " << req.step << ": " << taken.status();
    if (taken.status().code() != StatusCode::kUnavailable) s.parked.reset();
    return;
  }
  if (!taken->has_value()) return;
  cluster::TrainBatch batch;
  batch.step = req.step;
  batch.dropped = s.dropped_this_step;
  for (const auto& g : **taken) {
    cluster::ScoredGroup sg;
    Status st = cluster::decode(g.payload, &sg);
    if (!st.ok()) {  // its bytes decoded when it was stored: the disk changed them
      GRPO_LOG(kError) << "buffer: stored group " << g.group_id << " is unreadable and left out of step " << req.step
                       << ": " << st;
      continue;
    }
    batch.groups.push_back(std::move(sg));
  }
  s.parked.reset();
  s.dropped_this_step = 0;
  Status st = s.peers->send_msg(endpoint_of(s.ctx.settings.endpoint_prefix, "learner", static_cast<int>(req.learner_id)), batch);
  if (send_failed(st)) GRPO_LOG(kError) << "buffer: batch for step " << req.step << " not sent: " << st;
  retain(self, req.step);
}

void on_wire(Self* self, const std::string& bytes) {
  auto& s = self->state;
  auto kind = cluster::peek_kind(bytes);
  if (!kind.ok()) return report_bad_message("buffer", kind.status(), &s.bad_messages);
  if (*kind == cluster::MessageKind::kScoredGroup) {
    cluster::ScoredGroup sg;
    if (!decode_or_report("buffer", bytes, &sg, &s.bad_messages)) return;
    uint64_t version = UINT64_MAX;
    for (const auto& c : sg.rollout.completions)
      for (uint64_t v : c.versions) version = std::min(version, v);
    if (version == UINT64_MAX) version = 0;
    auto stored = s.store->put(sg.rollout.group_id, version, bytes);
    if (!stored.ok()) {
      GRPO_LOG(kError) << "buffer: put of group " << sg.rollout.group_id << " failed: " << stored.status();
      return;
    }
    // Reported soon (duplicates too): the first id of a batch schedules the report.
    if (s.stored_ids.empty() && !s.report_scheduled) {
      s.report_scheduled = true;
      self->delayed_send(self, kReportDelay, flush_atom::value);
    }
    s.stored_ids.push_back(sg.rollout.group_id);
    if (!*stored) ++s.duplicates;
    else maybe_drop(self, sg);
    try_serve(self);
  } else if (*kind == cluster::MessageKind::kTrainBatchRequest) {
    cluster::TrainBatchRequest req;
    if (!decode_or_report("buffer", bytes, &req, &s.bad_messages)) return;
    if (req.num_groups < 1) return report_bad_message("buffer", invalid_argument("batch request for no groups"), &s.bad_messages);
    s.parked = req;
    try_serve(self);
  } else if (*kind == cluster::MessageKind::kStoredQuery) {
    cluster::StoredQuery q;
    if (!decode_or_report("buffer", bytes, &q, &s.bad_messages)) return;
    answer_query(self, q);
  } else {
    report_bad_message("buffer", invalid_argument(std::string("unexpected ") + cluster::message_kind_name(*kind)), &s.bad_messages);
  }
}

caf::behavior buffer_actor(Self* self, RoleContext ctx, std::shared_ptr<storage::RolloutStore> store) {
  auto& s = self->state;
  s.ctx = std::move(ctx);
  s.store = std::move(store);
  if (!open_endpoint(self, s.ctx, "buffer", 0, &s.mailbox, &s.peers)) {
    self->quit();
    return {};
  }
  auto stats = s.store->stats();
  GRPO_LOG(kInfo) << "buffer: up, " << stats.shards << " shard(s), " << stats.pending << " pending and "
                  << stats.consumed << " consumed groups on disk (" << stats.accepted
                  << " stored ever), cursor at step " << stats.cursor
                  << (stats.logged_through > stats.cursor
                          ? ", batches of steps up to " + std::to_string(stats.logged_through) + " wait for replay"
                          : std::string());
  self->delayed_send(self, kHeartbeatInterval, caf::tick_atom_v);
  return {
      [self](wire_atom, const std::string& bytes) { on_wire(self, bytes); },
      [self](flush_atom) {
        self->state.report_scheduled = false;
        if (!self->state.stored_ids.empty()) send_heartbeat(self);
      },
      [self](caf::tick_atom) {
        send_heartbeat(self);
        try_serve(self);
        self->delayed_send(self, kHeartbeatInterval, caf::tick_atom_v);
      },
  };
}

}  // namespace

caf::actor spawn_buffer(caf::actor_system& sys, const RoleContext& ctx,
                        std::shared_ptr<storage::RolloutStore> store) {
  return sys.spawn(buffer_actor, ctx, std::move(store));
}

}  // namespace grpo::actors
