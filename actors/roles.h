// Spawn functions of the six roles. Each role is a CAF actor that owns its runtime/storage/cluster
// objects and a Mailbox at its endpoint (actors/wire.h); roles talk only through encoded messages.
//
// Message flow (embedded mode, all on inproc:// endpoints):
//   generator --LeaseRequest--> coordinator --LeaseGrant--> generator
//   generator --RolloutGroup--> verifier --ScoredGroup--> buffer
//   learner --TrainBatchRequest--> buffer --TrainBatch--> learner
//   learner --WeightManifest/WeightChunk--> broadcaster --> generator a --> generator b --> ...
//     (a chain: each generator forwards every verified chunk to the next as it arrives)
//   generator --WeightChunkRequest--> broadcaster --WeightChunk--> generator (a corrupt chunk)
//   learner, buffer, generators --Heartbeat--> coordinator; generator --Heartbeat--> broadcaster
//     (chain membership; a generator behind gets the latest version directly)
// When a role finishes or fails it sends (done_atom, role, detail) to the supervisor actor.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "actors/atoms.h"
#include "actors/run_config.h"
#include "actors/wire.h"
#include "cluster/transport.h"
#include "runtime/task.h"
#include "runtime/trainer.h"
#include "storage/rollout_store.h"
#include "storage/state_store.h"

namespace grpo::actors {

struct RoleContext {
  RunSettings settings;
  std::shared_ptr<cluster::Transport> transport;
  caf::actor supervisor;
  // Set by the process when it shuts down: roles stop sending (actors/wire.h Peers).
  std::shared_ptr<std::atomic<bool>> stopping = std::make_shared<std::atomic<bool>>(false);
  // This process's epoch: its start time in ms since the Unix epoch, carried by its heartbeats and
  // lease requests. A member that restarts comes back with a larger epoch; the coordinator fences
  // (drops) messages of an older epoch than the newest it has seen from that member.
  uint64_t epoch = now_ms();
};

// Binds the mailbox of `role` number `id` and creates its outboxes. On failure the supervisor hears
// (done_atom, role, "failed: ...") and false is returned; the caller then quits.
bool open_endpoint(caf::event_based_actor* self, const RoleContext& ctx, const std::string& role, int id,
                   std::unique_ptr<cluster::Mailbox>* mailbox, std::unique_ptr<Peers>* peers);

// Generator and verifier ids a run may be scaled to (grpoctl scale): 0 .. kMaxScaledWorkers - 1.
// tcp:// endpoints give each role 400+ ports (actors/wire.h), so this bound keeps them apart.
constexpr int kMaxScaledWorkers = 400;

struct CoordinatorStart {
  uint64_t learner_step = 0;     // step of the checkpoint the learner resumes from
  uint64_t pending_groups = 0;   // scored groups waiting in the buffer at start
  std::vector<runtime::Problem> dataset;  // training problems; empty = synthetic stream
  // run.deterministic: the buffer's largest group id + 1. Leases issued after it were lost with the
  // previous process; the coordinator issues them again (same ids, prompts and seeds), so a resumed
  // run sees the data a straight run would have seen. 0: continue from the persisted counters.
  uint64_t reissue_from_group_id = 0;
  // Cluster mode (`grpo serve`): the coordinator may restart alone while the other services keep
  // working, so it restores the pipeline from its store (issued count, outstanding grants, the
  // re-issue queue, the learner step) instead of deriving it from the checkpoint. Embedded runs
  // restart every role together and leave this false.
  bool restore_pipeline = false;
};

caf::actor spawn_coordinator(caf::actor_system& sys, const RoleContext& ctx,
                             std::shared_ptr<storage::StateStore> state, CoordinatorStart start);
caf::actor spawn_generator(caf::actor_system& sys, const RoleContext& ctx, int id);
caf::actor spawn_verifier(caf::actor_system& sys, const RoleContext& ctx, int id);
caf::actor spawn_buffer(caf::actor_system& sys, const RoleContext& ctx,
                        std::shared_ptr<storage::RolloutStore> store);
// The learner resumes from `trainer` as restored (step = its GRPO step count).
caf::actor spawn_learner(caf::actor_system& sys, const RoleContext& ctx, int id,
                         std::shared_ptr<runtime::Trainer> trainer, uint64_t step,
                         double sft_pass_at_1);
caf::actor spawn_broadcaster(caf::actor_system& sys, const RoleContext& ctx, int id);

}  // namespace grpo::actors
