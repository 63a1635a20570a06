// Broadcaster: relays each weight version from the learner to every generator.
//
// The manifest and each chunk are forwarded as soon as they arrive and pass their checksum
// (pipelined: a generator starts receiving before the broadcaster has the whole version). The latest
// complete version is kept, so a generator that joins late or restarts gets it on its first
// heartbeat. Chunks of an older version than the one in progress are ignored.
#include "actors/roles.h"
#include "actors/wire.h"

namespace grpo::actors {
namespace {

struct BroadcasterState {
  RoleContext ctx;
  std::unique_ptr<cluster::Mailbox> mailbox;
  std::unique_ptr<Peers> peers;
  cluster::WeightAssembler assembler;
  std::string pending_manifest;               // encoded, version in progress
  std::vector<std::string> pending_chunks;    // encoded
  int64_t latest_version = -1;
  std::string latest_manifest;
  std::vector<std::string> latest_chunks;
  uint64_t bad_messages = 0;
  static inline const char* name = "broadcaster";
};

using Self = caf::stateful_actor<BroadcasterState>;

void fan_out(Self* self, const std::string& bytes) {
  auto& s = self->state;
  for (int g = 0; g < s.ctx.settings.generators; ++g) {
    Status st = s.peers->send(endpoint_of(s.ctx.settings.endpoint_prefix, "generator", g), bytes);
    if (send_failed(st)) GRPO_LOG(kWarn) << "broadcaster: send to generator " << g << " failed: " << st;
  }
}

void on_wire(Self* self, const std::string& bytes) {
  auto& s = self->state;
  auto kind = cluster::peek_kind(bytes);
  if (!kind.ok()) return report_bad_message("broadcaster", kind.status(), &s.bad_messages);
  switch (*kind) {
    case cluster::MessageKind::kWeightManifest: {
      cluster::WeightManifest m;
      if (!decode_or_report("broadcaster", bytes, &m, &s.bad_messages)) return;
      if (static_cast<int64_t>(m.version) <= s.latest_version) return;
      Status st = s.assembler.begin(m);
      if (!st.ok()) return report_bad_message("broadcaster", st, &s.bad_messages);
      s.pending_manifest = bytes;
      s.pending_chunks.clear();
      fan_out(self, bytes);
      break;
    }
    case cluster::MessageKind::kWeightChunk: {
      cluster::WeightChunk c;
      if (!decode_or_report("broadcaster", bytes, &c, &s.bad_messages)) return;
      if (!s.assembler.started() || c.version != s.assembler.version()) return;
      Status st = s.assembler.add_chunk(c);
      if (!st.ok()) return report_bad_message("broadcaster", st, &s.bad_messages);
      s.pending_chunks.push_back(bytes);
      fan_out(self, bytes);
      if (s.assembler.complete()) {
        s.latest_version = static_cast<int64_t>(s.assembler.version());
        s.latest_manifest = std::move(s.pending_manifest);
        s.latest_chunks = std::move(s.pending_chunks);
        s.pending_chunks.clear();
        (void)s.assembler.take_blob();
        GRPO_LOG(kDebug) << "broadcaster: relayed weights v" << s.latest_version;
      }
      break;
    }
    case cluster::MessageKind::kHeartbeat: {
      cluster::Heartbeat hb;
      if (!decode_or_report("broadcaster", bytes, &hb, &s.bad_messages)) return;
      if (hb.role != "generator" || s.latest_version < 0) return;
      if (hb.in_flight >= 0 && static_cast<int64_t>(hb.policy_version) >= s.latest_version) return;
      std::string endpoint = endpoint_of(s.ctx.settings.endpoint_prefix, "generator", static_cast<int>(hb.worker_id));
      (void)s.peers->send(endpoint, s.latest_manifest);
      for (const auto& c : s.latest_chunks) (void)s.peers->send(endpoint, c);
      break;
    }
    default:
      report_bad_message("broadcaster", invalid_argument(std::string("unexpected ") + cluster::message_kind_name(*kind)), &s.bad_messages);
  }
}

caf::behavior broadcaster_actor(Self* self, RoleContext ctx, int id) {
  auto& s = self->state;
  s.ctx = std::move(ctx);
  if (!open_endpoint(self, s.ctx, "broadcaster", id, &s.mailbox, &s.peers)) {
    self->quit();
    return {};
  }
  GRPO_LOG(kInfo) << "broadcaster " << id << ": up, relaying to " << s.ctx.settings.generators << " generators";
  return {
      [self](wire_atom, const std::string& bytes) { on_wire(self, bytes); },
  };
}

}  // namespace

caf::actor spawn_broadcaster(caf::actor_system& sys, const RoleContext& ctx, int id) {
  return sys.spawn(broadcaster_actor, ctx, id);
}

}  // namespace grpo::actors
