// ZeroMQ CURVE authentication and encryption for the cluster's sockets: keys, key files and the
// per-socket SecurityOptions that Mailbox, Outbox (cluster/transport.h) and RingAllReduce
// (cluster/allreduce.h) take. No ZeroMQ type appears in this header.
//
// Trust model (two keypairs, made by `grpoctl keygen`):
//   - The CLUSTER keypair is held, secret included, by every member process. Every secured server
//     socket (a Mailbox, a ring rank's receive socket) uses it as its CURVE server key, and every
//     secured client socket (an Outbox, a ring rank's send socket) presents it as its own client
//     key. Servers admit only clients whose CURVE-proven public key is on their allow-list, by
//     default just the cluster public key: a process without the cluster secret cannot complete
//     the handshake, cannot inject messages and cannot read traffic (CURVE encrypts everything).
//   - The ADMIN keypair is held by operators (grpoctl). An admin server socket still uses the
//     cluster keypair as its server key but sets allowed_client_keys = {admin public key}: only a
//     client proving the admin secret gets in; cluster members holding only the cluster key are
//     refused. An admin client presents the admin keypair and the cluster public key as server
//     key (it needs no cluster secret).
//   - Enforcement: every secured server socket gets its own ZAP domain (ZeroMQ Authentication
//     Protocol, RFC 27) whose allow-list the Transport's ZAP handler thread checks for each CURVE
//     handshake; see Transport. Clients using another mechanism (no security) fail the handshake
//     before ZAP is asked. Refused peers' messages never reach the socket.
//   - inproc:// endpoints are never authenticated or encrypted (ZeroMQ skips security on inproc);
//     they only reach sockets of the same process, which holds the keys anyway.
//
// Keys are Z85 text (ZeroMQ's base-85 encoding): 40 characters for 32 bytes.
//
// Key file format (text, UTF-8, one `name = "value"` per line; blank lines and lines starting
// with `#` are ignored; a valid TOML subset):
//     # GRPO Cluster CURVE key pair. SECRET: keep this file private (mode 0600).
//     public = "<40 Z85 characters>"
//     secret = "<40 Z85 characters>"
// A public key file (for distributing a server's or an admin's public key) has only the
// `public` line. Secret key files are written with mode 0600, public ones with 0644, both
// atomically (a temporary file in the same folder renamed into place).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace grpo::cluster {

inline constexpr size_t kCurveKeyZ85Chars = 40;  // Z85 text of a 32-byte CURVE key

struct CurveKeyPair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters
};

// True when libzmq was built with CURVE support (libsodium / tweetnacl).
bool curve_supported();

// A fresh random keypair. Unimplemented when libzmq lacks CURVE support.
StatusOr<CurveKeyPair> generate_curve_keypair();

// OK when `key` is 40 characters of the Z85 alphabet that decode to 32 bytes; otherwise
// InvalidArgument naming `what` and the problem (wrong length, bad character).
Status check_curve_key(std::string_view key, const std::string& what);

// OK when both keys are well formed and the public key belongs to the secret key.
Status check_curve_keypair(const CurveKeyPair& pair, const std::string& what);

// Writes the pair (public and secret lines) to `path`, mode 0600, atomically, replacing any
// existing file. InvalidArgument for a malformed pair; Internal (naming the file and errno) for
// I/O errors.
Status write_key_file(const std::string& path, const CurveKeyPair& pair);

// Writes a public-only key file, mode 0644, atomically.
Status write_public_key_file(const std::string& path, const std::string& public_key);

// Reads a key file holding a secret (written by write_key_file) and checks the pair. NotFound
// when the file is missing; InvalidArgument (naming the file, the line and the problem) for a
// malformed file, a missing secret, or a public key that does not belong to the secret. Logs a
// warning when the file can be read by group or others.
StatusOr<CurveKeyPair> read_key_file(const std::string& path);

// Reads the public key of a public key file, or of a full key file (its secret is then ignored).
StatusOr<std::string> read_public_key_file(const std::string& path);

// Security of one socket. Disabled by default (no authentication, no encryption).
struct SecurityOptions {
  bool enabled = false;
  // This process's keypair: the server key of a server socket, the client key of a client
  // socket. Normally the cluster keypair; the admin keypair for an admin client.
  CurveKeyPair own;
  // Client sockets: the server's public key. Empty = own.public_key (cluster member talking to
  // a cluster member).
  std::string server_public_key;
  // Server sockets: the client public keys admitted. Empty = {own.public_key}, i.e. any client
  // holding the cluster secret.
  std::vector<std::string> allowed_client_keys;
};

// The options of a cluster member's sockets (servers and clients alike).
SecurityOptions cluster_security(const CurveKeyPair& cluster);
// An admin server socket: cluster keypair as server key, only the admin key admitted.
SecurityOptions admin_server_security(const CurveKeyPair& cluster, std::string admin_public_key);
// An admin client socket (grpoctl): presents the admin keypair to a cluster server.
SecurityOptions admin_client_security(const CurveKeyPair& admin, std::string cluster_public_key);

// Checks an enabled SecurityOptions for a server (is_server) or client socket: well-formed keys,
// a matching own pair. InvalidArgument naming `what` otherwise; OK when disabled. Unimplemented
// when security is enabled but libzmq lacks CURVE.
Status check_security_options(const SecurityOptions& options, bool is_server,
                              const std::string& what);

}  // namespace grpo::cluster
