// Broadcaster: relays each weight version from learner 0 to every generator along a chain.
//
// A thin actor over cluster::WeightSource (cluster/weight_relay.h), which does the work:
//   - membership: the generators' heartbeats (about every second) say who is live and which
//     version each holds; one silent for member_timeout drops out of the next chain, one that
//     appears (started, restarted, scaled up) joins it. settings.generators is not consulted: the
//     count changes while the run is live (grpoctl scale).
//   - each manifest from the learner starts a version: the live generators, by id, form the chain;
//     the manifest goes to its head with the endpoints of the rest, then every chunk goes to the
//     head as soon as it arrives and passes its checksum (pipelined: the head forwards chunk i while
//     chunk i+1 arrives, and so on down the chain). Chunks of an older version than the one in
//     progress are ignored.
//   - the latest complete version is kept: a generator that was in no chain for it (late joiner,
//     restart) gets it directly on its next heartbeat; one that lacks a version completed over 2 s
//     ago (a hop upstream of it died) gets the latest directly too; a WeightChunkRequest (a chunk that failed its
//     checksum at a generator) is answered with those chunks.
#include <chrono>

#include "actors/roles.h"
#include "actors/wire.h"
#include "cluster/weight_relay.h"

namespace grpo::actors {
namespace {

// Generator ids a heartbeat or chunk request may carry: an id beyond this names no generator the
// cluster could run, so its endpoint is not even computed.
constexpr uint64_t kMaxGeneratorId = 4096;

struct BroadcasterState {
  RoleContext ctx;
  std::unique_ptr<cluster::Mailbox> mailbox;
  std::unique_ptr<Peers> peers;
  std::unique_ptr<cluster::WeightSource> source;
  int64_t published = -1;  // the latest version logged as complete
  uint64_t bad_messages = 0;
  static inline const char* name = "broadcaster";
};

using Self = caf::stateful_actor<BroadcasterState>;

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void on_wire(Self* self, std::string bytes) {
  auto& s = self->state;
  Status st = s.source->on_message(std::move(bytes), steady_ms());
  if (!st.ok()) return report_bad_message("broadcaster", st, &s.bad_messages);
  if (s.source->latest_version() > s.published) {
    s.published = s.source->latest_version();
    const auto& chains = s.source->chains();
    size_t members = 0;
    for (const auto& c : chains) members += c.size();
    GRPO_LOG(kDebug) << "broadcaster: relayed weights v" << s.published << " to " << members
                     << " generator(s) along " << chains.size() << " chain(s)";
  }
}

caf::behavior broadcaster_actor(Self* self, RoleContext ctx, int id) {
  auto& s = self->state;
  s.ctx = std::move(ctx);
  if (!open_endpoint(self, s.ctx, "broadcaster", id, &s.mailbox, &s.peers)) {
    self->quit();
    return {};
  }
  Peers* peers = s.peers.get();
  const std::string prefix = s.ctx.settings.endpoint_prefix;
  s.source = std::make_unique<cluster::WeightSource>(
      [peers](const std::string& endpoint, std::string_view bytes) { return peers->send(endpoint, bytes); },
      [prefix](uint64_t worker) {
        return worker < kMaxGeneratorId ? endpoint_of(prefix, "generator", static_cast<int>(worker)) : std::string();
      });
  GRPO_LOG(kInfo) << "broadcaster " << id << ": up; generators join its chain by heartbeat";
  self->delayed_send(self, std::chrono::seconds(1), tick_atom::value);
  return {
      [self](wire_atom, std::string& bytes) { on_wire(self, std::move(bytes)); },
      [self, id](tick_atom) {
        // Membership: the coordinator lists the broadcaster and the weight version it holds.
        auto& s = self->state;
        cluster::Heartbeat hb;
        hb.role = "broadcaster";
        hb.worker_id = static_cast<uint64_t>(id);
        hb.epoch = s.ctx.epoch;
        hb.policy_version = s.published < 0 ? 0 : static_cast<uint64_t>(s.published);
        hb.timestamp_ms = now_ms();
        (void)s.peers->send_msg(endpoint_of(s.ctx.settings.endpoint_prefix, "coordinator", 0), hb);
        self->delayed_send(self, std::chrono::seconds(1), tick_atom::value);
      },
  };
}

}  // namespace

caf::actor spawn_broadcaster(caf::actor_system& sys, const RoleContext& ctx, int id) {
  return sys.spawn(broadcaster_actor, ctx, id);
}

}  // namespace grpo::actors
