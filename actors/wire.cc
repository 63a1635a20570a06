#include "actors/wire.h"

#include "actors/roles.h"
#include "base/log_every.h"

#include <chrono>
#include <mutex>
#include <sstream>
#include <vector>

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

const std::vector<std::string>& host_roles() {
  static const std::vector<std::string> roles = {"coordinator", "buffer", "broadcaster", "learner", "generator",
                                                 "verifier"};
  return roles;
}

std::mutex g_hosts_mu;
std::map<std::string, std::string>& role_hosts() {
  static std::map<std::string, std::string> hosts;
  return hosts;
}

// The host of role `role` `id` from the table, or "" when it is not listed.
std::string host_of(const std::string& role, int id) {
  const std::string r = role == "learner-ring" ? "learner" : role;
  std::lock_guard<std::mutex> lock(g_hosts_mu);
  const auto& hosts = role_hosts();
  if (hosts.empty()) return "";
  auto it = hosts.find(r + "." + std::to_string(id));
  if (it == hosts.end()) it = hosts.find(r);
  return it == hosts.end() ? "" : it->second;
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

}  // namespace

std::string prefix_for(const std::string& prefix, const std::string& role, int id) {
  if (prefix.rfind("tcp://", 0) != 0) return prefix;
  const size_t colon = prefix.rfind(':');
  if (colon == std::string::npos || colon <= 5) return prefix;
  const std::string host = host_of(role, id);
  if (host.empty()) return prefix;
  return "tcp://" + host + prefix.substr(colon);
}

std::string endpoint_of(const std::string& prefix_in, const std::string& role, int id) {
  if (prefix_in.rfind("tcp://", 0) == 0) {
    const std::string prefix = prefix_for(prefix_in, role, id);
    const size_t colon = prefix.rfind(':');
    if (colon != std::string::npos && colon > 5) {
      try {
        const int base = std::stoi(prefix.substr(colon + 1));
        return prefix.substr(0, colon + 1) + std::to_string(base + role_port_offset(role) + id);
      } catch (const std::exception&) {
      }
    }
  }
  return prefix_in + "." + role + "." + std::to_string(id);
}

StatusOr<std::map<std::string, std::string>> parse_role_hosts(const std::string& spec) {
  std::map<std::string, std::string> hosts;
  if (trim(spec).empty()) return hosts;
  std::stringstream ss(spec);
  std::string entry;
  while (std::getline(ss, entry, ',')) {
    const std::string e = trim(entry);
    const size_t eq = e.find('=');
    if (eq == std::string::npos)
      return invalid_argument("bad entry '" + e + "': expected ROLE=HOST or ROLE.ID=HOST");
    const std::string key = trim(e.substr(0, eq));
    const std::string host = trim(e.substr(eq + 1));
    if (host.empty() || host.find_first_of(":/ \t") != std::string::npos)
      return invalid_argument("bad entry '" + e + "': the host must be a plain host name or IPv4 address");
    std::string role = key;
    const size_t dot = key.find('.');
    if (dot != std::string::npos) {
      role = key.substr(0, dot);
      const std::string id = key.substr(dot + 1);
      if (id.empty() || id.size() > 6 || id.find_first_not_of("0123456789") != std::string::npos)
        return invalid_argument("bad entry '" + e + "': the id after '" + role + ".' must be a number");
    }
    bool known = false;
    for (const auto& r : host_roles()) known = known || r == role;
    if (!known)
      return invalid_argument("bad entry '" + e + "': unknown role '" + role +
                              "' (roles: coordinator, buffer, broadcaster, learner, generator, verifier)");
    const std::string norm = dot == std::string::npos ? role : role + "." + std::to_string(std::stoi(key.substr(dot + 1)));
    if (hosts.count(norm)) return invalid_argument("bad entry '" + e + "': '" + norm + "' is listed twice");
    hosts[norm] = host;
  }
  return hosts;
}

void set_role_hosts(std::map<std::string, std::string> hosts) {
  std::lock_guard<std::mutex> lock(g_hosts_mu);
  role_hosts() = std::move(hosts);
}

StatusOr<std::unique_ptr<cluster::Mailbox>> bind_mailbox(caf::local_actor* self,
                                                         std::shared_ptr<cluster::Transport> transport,
                                                         const std::string& endpoint,
                                                         const cluster::SecurityOptions& security) {
  caf::weak_actor_ptr weak = caf::actor_cast<caf::weak_actor_ptr>(self->ctrl());
  cluster::MailboxOptions options;
  options.security = security;
  return cluster::Mailbox::bind(
      std::move(transport), endpoint,
      [weak](std::string bytes) {
        if (auto strong = weak.lock())
          caf::anon_send(caf::actor_cast<caf::actor>(strong), wire_atom::value, std::move(bytes));
      },
      std::move(options));
}

Status Peers::send(const std::string& endpoint, std::string_view bytes) {
  if (stopping_ && stopping_->load()) return cancelled("shutting down");
  auto it = outboxes_.find(endpoint);
  if (it == outboxes_.end()) {
    cluster::OutboxOptions options;
    options.security = security_;
    GRPO_ASSIGN_OR_RETURN(auto outbox, cluster::Outbox::connect(transport_, endpoint, std::move(options)));
    it = outboxes_.emplace(endpoint, std::move(outbox)).first;
  }
  return it->second->send(bytes);
}

void report_bad_message(const std::string& role, const Status& status, uint64_t* counter) {
  ++*counter;
  if (log::worth_logging(*counter))
    GRPO_LOG(kWarn) << role << ": dropped a malformed message (" << *counter
                    << " so far): " << status.message();
}

bool open_endpoint(caf::event_based_actor* self, const RoleContext& ctx, const std::string& role, int id,
                   std::unique_ptr<cluster::Mailbox>* mailbox, std::unique_ptr<Peers>* peers) {
  if (ctx.settings.secured() && !ctx.settings.member_security().enabled) {
    // Every role of an embedded run opens an endpoint; one warning per process is enough.
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true))
      GRPO_LOG(kWarn) << "security.keys_dir is set but run.endpoint_prefix '" << ctx.settings.endpoint_prefix
                      << "' is in-process: embedded mode does not authenticate or encrypt (ZeroMQ never "
                         "secures inproc://); the keys apply to ipc:// and tcp:// runs";
  }
  const cluster::SecurityOptions security = ctx.settings.member_security();
  *peers = std::make_unique<Peers>(ctx.transport, ctx.stopping, security);
  auto bound = bind_mailbox(self, ctx.transport, endpoint_of(ctx.settings.endpoint_prefix, role, id), security);
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
