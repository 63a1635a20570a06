// Buffer: the RocksDB rollout store behind a mailbox.
//
// Scored groups are stored idempotently by group id (a duplicate is a no-op), under their behaviour
// version (the oldest weight version among their tokens). A TrainBatchRequest for step s is served
// when enough pending groups are at least min_version: they are marked consumed by step s in the
// same write batch that advances the cursor to s (exactly once), then sent. A request that cannot be
// served yet is parked until enough groups arrive. Groups older than the window are evicted and
// reported to the coordinator so that admission accounts for them.
// Dynamic sampling (grpo.dynamic_sampling, DAPO): a group whose rewards are all equal has zero
// advantage everywhere and teaches nothing, so on arrival it is discarded (evicted, reported to the
// coordinator as retired, which lets admission lease a fresh prompt in its place) until
// grpo.max_dropped x groups_per_step have been dropped since the last batch was served; past that
// cap such groups are kept and fill the batch. The batch tells the learner how many were dropped.
#include <optional>

#include "actors/roles.h"
#include "actors/wire.h"

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
  static inline const char* name = "buffer";
};

using Self = caf::stateful_actor<BufferState>;

void report_retired(Self* self) {
  auto& s = self->state;
  cluster::Heartbeat hb;
  hb.role = "buffer";
  hb.groups_retired = s.evicted + s.dropped;
  hb.timestamp_ms = now_ms();
  (void)s.peers->send_msg(endpoint_of(s.ctx.settings.endpoint_prefix, "coordinator", 0), hb);
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
  report_retired(self);
}

void try_serve(Self* self) {
  auto& s = self->state;
  if (!s.parked) return;
  const cluster::TrainBatchRequest req = *s.parked;
  auto evicted = s.store->evict_stale(req.min_version);
  if (evicted.ok() && *evicted > 0) {
    s.evicted += *evicted;
    GRPO_LOG(kInfo) << "buffer: evicted " << *evicted << " groups older than version " << req.min_version;
    report_retired(self);
  }
  auto groups = s.store->peek(req.min_version, static_cast<size_t>(req.num_groups));
  if (!groups.ok()) {
    GRPO_LOG(kError) << "buffer: read failed: " << groups.status();
    return;
  }
  if (static_cast<int32_t>(groups->size()) < req.num_groups) return;
  cluster::TrainBatch batch;
  batch.step = req.step;
  batch.dropped = s.dropped_this_step;
  std::vector<uint64_t> ids;
  for (const auto& g : *groups) {
    cluster::ScoredGroup sg;
    Status st = cluster::decode(g.payload, &sg);
    if (!st.ok()) {
      GRPO_LOG(kError) << "buffer: stored group " << g.group_id << " is unreadable: " << st;
      continue;
    }
    ids.push_back(g.group_id);
    batch.groups.push_back(std::move(sg));
  }
  Status st = s.store->consume(req.step, ids);
  if (!st.ok()) {
    GRPO_LOG(kError) << "buffer: consume for step " << req.step << " failed: " << st;
    return;
  }
  s.parked.reset();
  s.dropped_this_step = 0;
  st = s.peers->send_msg(endpoint_of(s.ctx.settings.endpoint_prefix, "learner", static_cast<int>(req.learner_id)), batch);
  if (send_failed(st)) GRPO_LOG(kError) << "buffer: batch for step " << req.step << " not sent: " << st;
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
    if (!*stored) ++s.duplicates;
    else maybe_drop(self, sg);
    try_serve(self);
  } else if (*kind == cluster::MessageKind::kTrainBatchRequest) {
    cluster::TrainBatchRequest req;
    if (!decode_or_report("buffer", bytes, &req, &s.bad_messages)) return;
    if (req.num_groups < 1) return report_bad_message("buffer", invalid_argument("batch request for no groups"), &s.bad_messages);
    s.parked = req;
    try_serve(self);
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
  GRPO_LOG(kInfo) << "buffer: up, " << stats.pending << " pending and " << stats.consumed
                  << " consumed groups on disk, cursor at step " << stats.cursor;
  return {
      [self](wire_atom, const std::string& bytes) { on_wire(self, bytes); },
  };
}

}  // namespace

caf::actor spawn_buffer(caf::actor_system& sys, const RoleContext& ctx,
                        std::shared_ptr<storage::RolloutStore> store) {
  return sys.spawn(buffer_actor, ctx, std::move(store));
}

}  // namespace grpo::actors
