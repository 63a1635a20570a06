#include "actors/wire.h"

#include "actors/roles.h"

#include <chrono>

namespace grpo::actors {

namespace {

// Port offsets of the roles under a tcp://HOST:PORT prefix (ids add to them).
int role_port_offset(const std::string& role) {
  if (role == "coordinator") return 0;
  if (role == "buffer") return 1;
  if (role == "broadcaster") return 10;
  if (role == "learner") return 20;
  if (role == "learner-ring") return 60;
  if (role == "generator") return 100;
  if (role == "verifier") return 600;
  return 1100;
}

}  // namespace

std::string endpoint_of(const std::string& prefix, const std::string& role, int id) {
  if (prefix.rfind("tcp://", 0) == 0) {
    const size_t colon = prefix.rfind(':');
    if (colon != std::string::npos && colon > 5) {
      try {
        const int base = std::stoi(prefix.substr(colon + 1));
        return prefix.substr(0, colon + 1) + std::to_string(base + role_port_offset(role) + id);
      } catch (const std::exception&) {
      }
    }
  }
  return prefix + "." + role + "." + std::to_string(id);
}

StatusOr<std::unique_ptr<cluster::Mailbox>> bind_mailbox(caf::local_actor* self,
                                                         std::shared_ptr<cluster::Transport> transport,
                                                         const std::string& endpoint) {
  caf::weak_actor_ptr weak = caf::actor_cast<caf::weak_actor_ptr>(self->ctrl());
  return cluster::Mailbox::bind(std::move(transport), endpoint, [weak](std::string bytes) {
    if (auto strong = weak.lock())
      caf::anon_send(caf::actor_cast<caf::actor>(strong), wire_atom::value, std::move(bytes));
  });
}

Status Peers::send(const std::string& endpoint, std::string_view bytes) {
  if (stopping_ && stopping_->load()) return cancelled("shutting down");
  auto it = outboxes_.find(endpoint);
  if (it == outboxes_.end()) {
    GRPO_ASSIGN_OR_RETURN(auto outbox, cluster::Outbox::connect(transport_, endpoint));
    it = outboxes_.emplace(endpoint, std::move(outbox)).first;
  }
  return it->second->send(bytes);
}

void report_bad_message(const std::string& role, const Status& status, uint64_t* counter) {
  ++*counter;
  if (*counter <= 10 || (*counter & (*counter - 1)) == 0)
    GRPO_LOG(kWarn) << role << ": dropped a malformed message (" << *counter
                    << " so far): " << status.message();
}

bool open_endpoint(caf::event_based_actor* self, const RoleContext& ctx, const std::string& role, int id,
                   std::unique_ptr<cluster::Mailbox>* mailbox, std::unique_ptr<Peers>* peers) {
  *peers = std::make_unique<Peers>(ctx.transport, ctx.stopping);
  auto bound = bind_mailbox(self, ctx.transport, endpoint_of(ctx.settings.endpoint_prefix, role, id));
  if (!bound.ok()) {
    self->send(ctx.supervisor, done_atom::value, role, "failed: " + bound.status().to_string());
    return false;
  }
  *mailbox = std::move(bound).value();
  return true;
}

uint64_t now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace grpo::actors
