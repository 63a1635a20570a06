// Implementation of cluster/security.h and cluster/security_internal.h over libzmq's C API.
#include "cluster/security.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <utility>
#include <zmq.h>

#include "base/log.h"
#include "cluster/security_internal.h"

namespace grpo::cluster {
namespace {

constexpr std::string_view kZ85Alphabet =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
constexpr size_t kMaxKeyFileBytes = 64 * 1024;

Status errno_status(const std::string& what, int err) {
  const std::string message = what + ": " + std::strerror(err);
  if (err == ENOENT) return not_found(message);
  if (err == EACCES || err == EPERM) return failed_precondition(message);
  return internal_error(message);
}

// Writes `content` to `path` with `mode` atomically: a temporary file in the same folder, synced,
// then renamed over the target.
Status write_file_atomically(const std::string& path, const std::string& content, mode_t mode) {
  std::string tmpl = path + ".tmp.XXXXXX";
  const int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd < 0) return errno_status("write key file " + path + ": create temporary file", errno);
  auto fail = [&](const std::string& step) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmpl.c_str());
    return errno_status("write key file " + path + ": " + step, err);
  };
  if (::fchmod(fd, mode) != 0) return fail("chmod");
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("fsync");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmpl.c_str());
    return errno_status("write key file " + path + ": close", err);
  }
  if (::rename(tmpl.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmpl.c_str());
    return errno_status("write key file " + path + ": rename into place", err);
  }
  return ok_status();
}

std::string trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r");
  return std::string(s.substr(b, e - b + 1));
}

// Parses a key file into name -> value. Errors name the file and line.
StatusOr<std::map<std::string, std::string>> parse_key_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return not_found("key file " + path + " does not exist");
    return errno_status("key file " + path, err);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return invalid_argument("key file " + path + " is not a regular file");
  }
  std::string content;
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return errno_status("key file " + path + ": read", err);
    }
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
    if (content.size() > kMaxKeyFileBytes) {
      ::close(fd);
      return invalid_argument("key file " + path + " is too large to be a key file");
    }
  }
  ::close(fd);

  std::map<std::string, std::string> values;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos <= content.size()) {
    size_t end = content.find('\n', pos);
    if (end == std::string::npos) end = content.size();
    const std::string line = trim(std::string_view(content).substr(pos, end - pos));
    pos = end + 1;
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    const std::string where = "key file " + path + " line " + std::to_string(line_no);
    const size_t eq = line.find('=');
    if (eq == std::string::npos) {
      return invalid_argument(where + ": expected `name = \"value\"`");
    }
    const std::string name = trim(std::string_view(line).substr(0, eq));
    std::string rest = trim(std::string_view(line).substr(eq + 1));
    if (name != "public" && name != "secret") {
      return invalid_argument(where + ": unknown key `" + name +
                              "` (expected `public` or `secret`)");
    }
    if (rest.size() < 2 || rest[0] != '"') {
      return invalid_argument(where + ": the value of `" + name + "` must be a quoted string");
    }
    const size_t close = rest.find('"', 1);
    if (close == std::string::npos) {
      return invalid_argument(where + ": unterminated string for `" + name + "`");
    }
    const std::string after = trim(std::string_view(rest).substr(close + 1));
    if (!after.empty() && after[0] != '#') {
      return invalid_argument(where + ": unexpected text after the value of `" + name + "`");
    }
    if (values.count(name) != 0) return invalid_argument(where + ": `" + name + "` given twice");
    std::string value = rest.substr(1, close - 1);
    GRPO_RETURN_IF_ERROR(check_curve_key(value, where + ": `" + name + "` key"));
    values.emplace(name, std::move(value));
  }
  return values;
}

}  // namespace

bool curve_supported() { return zmq_has("curve") != 0; }

StatusOr<CurveKeyPair> generate_curve_keypair() {
  if (!curve_supported()) {
    return unimplemented(
        "generate CURVE keypair: this libzmq was built without CURVE support (zmq_has(\"curve\") "
        "is false); rebuild or install libzmq with libsodium");
  }
  char pub[kCurveKeyZ85Chars + 1] = {};
  char sec[kCurveKeyZ85Chars + 1] = {};
  if (zmq_curve_keypair(pub, sec) != 0) {
    return internal_error(std::string("zmq_curve_keypair: ") + zmq_strerror(zmq_errno()));
  }
  return CurveKeyPair{std::string(pub, kCurveKeyZ85Chars), std::string(sec, kCurveKeyZ85Chars)};
}

Status check_curve_key(std::string_view key, const std::string& what) {
  if (key.empty()) return invalid_argument(what + " is empty");
  if (key.size() != kCurveKeyZ85Chars) {
    return invalid_argument(what + " has " + std::to_string(key.size()) +
                            " characters; a Z85 CURVE key has 40");
  }
  for (size_t i = 0; i < key.size(); ++i) {
    if (kZ85Alphabet.find(key[i]) == std::string_view::npos) {
      return invalid_argument(what + " is not valid Z85: bad character at position " +
                              std::to_string(i));
    }
  }
  const std::string text(key);
  uint8_t bytes[32];
  if (zmq_z85_decode(bytes, text.c_str()) == nullptr) {
    return invalid_argument(what + " is not valid Z85 (a 5-character group overflows 32 bits)");
  }
  return ok_status();
}

Status check_curve_keypair(const CurveKeyPair& pair, const std::string& what) {
  GRPO_RETURN_IF_ERROR(check_curve_key(pair.public_key, what + ": public key"));
  GRPO_RETURN_IF_ERROR(check_curve_key(pair.secret_key, what + ": secret key"));
  if (!curve_supported()) {
    return unimplemented(what + ": this libzmq was built without CURVE support");
  }
  char derived[kCurveKeyZ85Chars + 1] = {};
  if (zmq_curve_public(derived, pair.secret_key.c_str()) != 0) {
    return invalid_argument(what + ": cannot derive the public key from the secret key");
  }
  if (pair.public_key != std::string(derived, kCurveKeyZ85Chars)) {
    return invalid_argument(what + ": the public key does not belong to the secret key");
  }
  return ok_status();
}

Status write_key_file(const std::string& path, const CurveKeyPair& pair) {
  GRPO_RETURN_IF_ERROR(check_curve_keypair(pair, "write key file " + path));
  const std::string content =
      "# GRPO Cluster CURVE key pair. SECRET: keep this file private (mode 0600).\n"
      "public = \"" + pair.public_key + "\"\n"
      "secret = \"" + pair.secret_key + "\"\n";
  return write_file_atomically(path, content, 0600);
}

Status write_public_key_file(const std::string& path, const std::string& public_key) {
  GRPO_RETURN_IF_ERROR(check_curve_key(public_key, "write public key file " + path + ": key"));
  const std::string content =
      "# GRPO Cluster CURVE public key (may be shared).\n"
      "public = \"" + public_key + "\"\n";
  return write_file_atomically(path, content, 0644);
}

StatusOr<CurveKeyPair> read_key_file(const std::string& path) {
  GRPO_ASSIGN_OR_RETURN(auto values, parse_key_file(path));
  if (values.count("secret") == 0) {
    return invalid_argument("key file " + path +
                            " has no `secret` key (is it a public key file?)");
  }
  if (values.count("public") == 0) {
    return invalid_argument("key file " + path + " has no `public` key");
  }
  CurveKeyPair pair{values["public"], values["secret"]};
  GRPO_RETURN_IF_ERROR(check_curve_keypair(pair, "key file " + path));
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    GRPO_LOG(kWarn) << "key file " << path << " holds a secret key but can be read by group or "
                    << "others (mode 0" << std::oct << (st.st_mode & 0777) << std::dec
                    << "); chmod 600 it";
  }
  return pair;
}

StatusOr<std::string> read_public_key_file(const std::string& path) {
  GRPO_ASSIGN_OR_RETURN(auto values, parse_key_file(path));
  if (values.count("public") == 0) {
    return invalid_argument("key file " + path + " has no `public` key");
  }
  return values["public"];
}

SecurityOptions cluster_security(const CurveKeyPair& cluster) {
  SecurityOptions o;
  o.enabled = true;
  o.own = cluster;
  o.server_public_key = cluster.public_key;
  o.allowed_client_keys = {cluster.public_key};
  return o;
}

SecurityOptions admin_server_security(const CurveKeyPair& cluster, std::string admin_public_key) {
  SecurityOptions o;
  o.enabled = true;
  o.own = cluster;
  o.allowed_client_keys = {std::move(admin_public_key)};
  return o;
}

SecurityOptions admin_client_security(const CurveKeyPair& admin, std::string cluster_public_key) {
  SecurityOptions o;
  o.enabled = true;
  o.own = admin;
  o.server_public_key = std::move(cluster_public_key);
  return o;
}

Status check_security_options(const SecurityOptions& options, bool is_server,
                              const std::string& what) {
  if (!options.enabled) return ok_status();
  if (!curve_supported()) {
    return unimplemented(what + ": security is enabled but this libzmq lacks CURVE support");
  }
  GRPO_RETURN_IF_ERROR(check_curve_keypair(options.own, what + ": own keypair"));
  if (is_server) {
    for (size_t i = 0; i < options.allowed_client_keys.size(); ++i) {
      GRPO_RETURN_IF_ERROR(check_curve_key(
          options.allowed_client_keys[i], what + ": allowed client key " + std::to_string(i)));
    }
  } else if (!options.server_public_key.empty()) {
    GRPO_RETURN_IF_ERROR(check_curve_key(options.server_public_key, what + ": server public key"));
  }
  return ok_status();
}

// ---------------------------------------------------------------------------------------------
// internal

namespace internal {

std::string curve_key_bytes(const std::string& z85) {
  uint8_t bytes[32] = {};
  const uint8_t* ok = zmq_z85_decode(bytes, z85.c_str());
  GRPO_CHECK_MSG(ok != nullptr && z85.size() == kCurveKeyZ85Chars, "curve_key_bytes: bad key");
  return std::string(reinterpret_cast<const char*>(bytes), sizeof(bytes));
}

std::vector<std::string> allowed_client_key_bytes(const SecurityOptions& options) {
  std::vector<std::string> out;
  if (options.allowed_client_keys.empty()) {
    out.push_back(curve_key_bytes(options.own.public_key));
  } else {
    for (const std::string& k : options.allowed_client_keys) out.push_back(curve_key_bytes(k));
  }
  return out;
}

namespace {

Status set_option(void* socket, int option, const void* value, size_t size,
                  const std::string& what, const char* name) {
  if (zmq_setsockopt(socket, option, value, size) != 0) {
    return internal_error(what + ": zmq_setsockopt(" + name + "): " + zmq_strerror(zmq_errno()));
  }
  return ok_status();
}

}  // namespace

Status set_curve_server(void* socket, const SecurityOptions& options,
                        const std::string& zap_domain, const std::string& what) {
  const int one = 1;
  const std::string secret = curve_key_bytes(options.own.secret_key);
  GRPO_RETURN_IF_ERROR(
      set_option(socket, ZMQ_CURVE_SERVER, &one, sizeof(one), what, "ZMQ_CURVE_SERVER"));
  GRPO_RETURN_IF_ERROR(set_option(socket, ZMQ_CURVE_SECRETKEY, secret.data(), secret.size(),
                                  what, "ZMQ_CURVE_SECRETKEY"));
  return set_option(socket, ZMQ_ZAP_DOMAIN, zap_domain.data(), zap_domain.size(), what,
                    "ZMQ_ZAP_DOMAIN");
}

Status set_curve_client(void* socket, const SecurityOptions& options, const std::string& what) {
  const std::string server = curve_key_bytes(
      options.server_public_key.empty() ? options.own.public_key : options.server_public_key);
  const std::string pub = curve_key_bytes(options.own.public_key);
  const std::string sec = curve_key_bytes(options.own.secret_key);
  GRPO_RETURN_IF_ERROR(set_option(socket, ZMQ_CURVE_SERVERKEY, server.data(), server.size(), what,
                                  "ZMQ_CURVE_SERVERKEY"));
  GRPO_RETURN_IF_ERROR(set_option(socket, ZMQ_CURVE_PUBLICKEY, pub.data(), pub.size(), what,
                                  "ZMQ_CURVE_PUBLICKEY"));
  return set_option(socket, ZMQ_CURVE_SECRETKEY, sec.data(), sec.size(), what,
                    "ZMQ_CURVE_SECRETKEY");
}

}  // namespace internal
}  // namespace grpo::cluster
