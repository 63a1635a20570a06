// Socket-level helpers of cluster/security.h for the socket owners of cluster/ (transport.cc,
// allreduce.cc). Internal to cluster/. Sockets are raw ZeroMQ handles (zmq_socket's void*).
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "cluster/security.h"

namespace grpo::cluster::internal {

// The 32 raw bytes of a Z85 key (which must have passed check_curve_key).
std::string curve_key_bytes(const std::string& z85);

// The raw client keys a server socket admits (SecurityOptions::allowed_client_keys, or the own
// public key when that is empty).
std::vector<std::string> allowed_client_key_bytes(const SecurityOptions& options);

// Makes `socket` a CURVE server with the own secret key whose handshakes are checked by the ZAP
// handler under `zap_domain`. Call before bind. `what` names the socket in errors.
Status set_curve_server(void* socket, const SecurityOptions& options,
                        const std::string& zap_domain, const std::string& what);

// Makes `socket` a CURVE client (own keypair, server public key). Call before connect.
Status set_curve_client(void* socket, const SecurityOptions& options, const std::string& what);

}  // namespace grpo::cluster::internal
