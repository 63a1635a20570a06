// Glue between CAF actors and the cluster/ transport.
//
// Every role owns one Mailbox bound at its endpoint; what arrives there is forwarded into the actor
// as (wire_atom, bytes), so a handler sees network messages in its own mailbox, serialised with all
// its other messages. Peers keeps one Outbox per destination endpoint. Both are owned by the actor's
// state and used only from the actor's handlers.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>

#include "actors/atoms.h"
#include "base/log.h"
#include "base/status.h"
#include "cluster/codec.h"
#include "cluster/transport.h"

namespace grpo::actors {

// "inproc://grpo" + "generator" + 2 -> "inproc://grpo.generator.2" (likewise ipc://PATH);
// "tcp://HOST:7000" + "generator" + 2 -> "tcp://HOST:7102": every role and id has its own port,
// PORT + the role's offset (coordinator 0, buffer 1, broadcaster 10, learner 20, learner-ring 60,
// generator 100, verifier 600) + id.
// With a role host table set (set_role_hosts, from run.hosts), a tcp prefix's HOST is replaced by
// the host of `role` (or of "role.id", which wins over "role"; "learner-ring" follows "learner");
// roles not in the table keep the prefix's HOST. ipc:// and inproc:// prefixes ignore the table.
std::string endpoint_of(const std::string& prefix, const std::string& role, int id);

// The tcp prefix with the HOST of `role` `id` from the host table ("tcp://10.1.0.3:7000"); other
// prefixes unchanged. E.g. the coordinator derives its admin endpoint from its own host's prefix.
std::string prefix_for(const std::string& prefix, const std::string& role, int id);

// Parses run.hosts: "coordinator=10.1.0.1,buffer=10.1.0.2,generator.0=10.1.0.4" (comma-separated
// ROLE=HOST or ROLE.ID=HOST; "" is an empty table). Errors name the bad entry.
StatusOr<std::map<std::string, std::string>> parse_role_hosts(const std::string& spec);

// The process-wide host table endpoint_of uses. Set once per process from run.hosts by
// settings_from_config (actors/run_config.cc), which every process (grpo serve, grpo up, embedded
// runs) goes through before it opens a socket; an empty table restores the prefix-only endpoints.
void set_role_hosts(std::map<std::string, std::string> hosts);

// Binds `endpoint` and forwards each message to `self` as (wire_atom, bytes). The callback holds
// only a weak reference, so the mailbox never keeps a dead actor alive. With `security` enabled
// (RunSettings::member_security) only peers holding the cluster secret get a message through.
StatusOr<std::unique_ptr<cluster::Mailbox>> bind_mailbox(caf::local_actor* self,
                                                         std::shared_ptr<cluster::Transport> transport,
                                                         const std::string& endpoint,
                                                         const cluster::SecurityOptions& security = {});

class Peers {
 public:
  // `stopping` (may be null) is set when the process shuts down; sends then fail at once with
  // Cancelled instead of waiting for peers that are already gone.
  // `security` is applied to every outbox (RunSettings::member_security).
  Peers(std::shared_ptr<cluster::Transport> transport, std::shared_ptr<std::atomic<bool>> stopping,
        cluster::SecurityOptions security = {})
      : transport_(std::move(transport)), stopping_(std::move(stopping)), security_(std::move(security)) {}
  // Sends bytes to the mailbox at `endpoint`, connecting on first use. Errors are returned and
  // logged by the caller; nothing is retried here.
  Status send(const std::string& endpoint, std::string_view bytes);
  template <typename Msg>
  Status send_msg(const std::string& endpoint, const Msg& msg) {
    return send(endpoint, cluster::encode(msg));
  }

 private:
  std::shared_ptr<cluster::Transport> transport_;
  std::shared_ptr<std::atomic<bool>> stopping_;
  cluster::SecurityOptions security_;
  std::map<std::string, std::unique_ptr<cluster::Outbox>> outboxes_;
};

// Logs (the first ten, then at powers of two) and counts a message that could not be used.
void report_bad_message(const std::string& role, const Status& status, uint64_t* counter);

// Decodes `bytes` into `out`; a malformed message is reported and counted, and false returned.
template <typename Msg>
bool decode_or_report(const std::string& role, const std::string& bytes, Msg* out, uint64_t* counter) {
  Status st = cluster::decode(bytes, out);
  if (!st.ok()) report_bad_message(role, st, counter);
  return st.ok();
}

uint64_t now_ms();

// True when a send failed for a reason worth logging (not the Cancelled of a shutdown).
inline bool send_failed(const Status& st) { return !st.ok() && st.code() != StatusCode::kCancelled; }

}  // namespace grpo::actors
