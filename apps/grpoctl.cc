// grpoctl: the GRPO Cluster operator's tool. Commands:
//   grpoctl keygen --out DIR [--force]
//       Makes the cluster's CURVE keys (cluster/security.h has the trust model): DIR/cluster.key
//       (cluster keypair, secret, mode 0600: give it to every cluster member), DIR/cluster.pub,
//       DIR/admin.key (admin keypair, secret, 0600: keep it with the operators) and
//       DIR/admin.pub (given to members so their admin sockets admit it). Creates DIR (mode
//       0700) when missing; refuses to replace existing keys unless --force.
//   grpoctl [--endpoint E | --config FILE] [--keys DIR] [--json] [--timeout-ms N] COMMAND
//     status             run state, learner step, lease and buffer counters, desired counts
//     members            every member the coordinator has heard from: role, id, state, epoch, ...
//     scale ROLE N       set the number of generators or verifiers of a running cluster; `grpo up`
//                        starts new ones, the coordinator retires extra ones after they drain
//     pause | resume     stop / restart leasing new prompt groups (work in flight finishes)
//   The coordinator's admin endpoint comes from --endpoint, or from the run config's
//   run.endpoint_prefix (and run.dir) as cluster/admin.h admin_endpoint() derives it; default:
//   the example cluster's, configs/cluster-local.toml. A secured cluster answers only the admin
//   key: --keys DIR (or the config's security.keys_dir) with DIR/admin.key and DIR/cluster.pub.
// Exit status: 0 success, 1 failure while running (coordinator unreachable, command refused), 2
// bad arguments or input.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "cluster/admin.h"
#include "cluster/codec.h"
#include "cluster/security.h"

namespace {

int fail(int code, const std::string& message) {
  std::cerr << "error: " << message << "\n";
  return code;
}

// Creates `dir` and its missing parents (the last one with mode 0700).
bool make_dirs(const std::string& dir, std::string* error) {
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    partial = dir.substr(0, pos);
    if (partial.empty()) continue;
    struct stat st {};
    if (::stat(partial.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) {
        *error = partial + " exists and is not a folder";
        return false;
      }
      continue;
    }
    if (::mkdir(partial.c_str(), pos == std::string::npos ? 0700 : 0755) != 0 &&
        errno != EEXIST) {
      *error = "cannot create folder " + partial + ": " + std::strerror(errno);
      return false;
    }
  }
  return true;
}

int keygen(std::string dir, bool force) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.empty()) return fail(2, "keygen: --out must not be empty");
  std::string error;
  if (!make_dirs(dir, &error)) return fail(1, "keygen: " + error);

  const std::string cluster_key = dir + "/cluster.key";
  const std::string cluster_pub = dir + "/cluster.pub";
  const std::string admin_key = dir + "/admin.key";
  const std::string admin_pub = dir + "/admin.pub";
  std::vector<std::string> existing;
  for (const std::string& path : {cluster_key, cluster_pub, admin_key, admin_pub}) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) existing.push_back(path);
  }
  if (!existing.empty() && !force) {
    std::string list;
    for (const std::string& path : existing) list += (list.empty() ? "" : ", ") + path;
    return fail(1, "keygen: " + list + (existing.size() == 1 ? " exists" : " exist") +
                       " already; pass --force to replace the keys (every cluster member then "
                       "needs the new ones)");
  }

  auto cluster = grpo::cluster::generate_curve_keypair();
  if (!cluster.ok()) return fail(1, "keygen: " + cluster.status().message());
  auto admin = grpo::cluster::generate_curve_keypair();
  if (!admin.ok()) return fail(1, "keygen: " + admin.status().message());

  for (const grpo::Status& s : {grpo::cluster::write_key_file(cluster_key, *cluster),
                                grpo::cluster::write_public_key_file(cluster_pub,
                                                                     cluster->public_key),
                                grpo::cluster::write_key_file(admin_key, *admin),
                                grpo::cluster::write_public_key_file(admin_pub,
                                                                     admin->public_key)}) {
    if (!s.ok()) return fail(1, "keygen: " + s.message());
  }
  std::cout << "wrote " << cluster_key << " (cluster keypair, secret, mode 0600: give it to every "
            << "cluster member)\n"
            << "wrote " << cluster_pub << " (cluster public key " << cluster->public_key << ")\n"
            << "wrote " << admin_key << " (admin keypair, secret, mode 0600: keep it with the "
            << "operators)\n"
            << "wrote " << admin_pub << " (admin public key " << admin->public_key << ")\n";
  return 0;
}

// ---- admin commands ------------------------------------------------------------------------

constexpr const char* kDefaultConfig = "configs/cluster-local.toml";

struct Target {
  std::string endpoint;
  std::string keys_dir;
};

// Reads run.endpoint_prefix, run.dir and security.keys_dir of a run config (no other key matters
// here, so grpoctl does not need the full run schema).
bool target_from_config(const std::string& path, Target* t, std::string* error) {
  toml::table tbl;
  try {
    tbl = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    *error = where.line == 0 ? path + ": cannot read the run config (" + std::string(e.description()) +
                                   "); give --config FILE or --endpoint E"
                             : path + ":" + std::to_string(where.line) + ":" + std::to_string(where.column) +
                                   ": " + std::string(e.description());
    return false;
  }
  auto prefix = tbl["run"]["endpoint_prefix"].value<std::string>();
  if (!prefix) {
    *error = path + ": run.endpoint_prefix is missing (or not a string)";
    return false;
  }
  const std::string dir = tbl["run"]["dir"].value_or(std::string("runs/local"));
  t->endpoint = grpo::cluster::admin_endpoint(*prefix, dir);
  if (t->keys_dir.empty()) t->keys_dir = tbl["security"]["keys_dir"].value_or(std::string());
  return true;
}

std::string ago(uint64_t ms) {
  if (ms < 1000) return std::to_string(ms) + " ms";
  if (ms < 120000) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms / 60000) + " min";
}

nlohmann::json to_json(const grpo::cluster::AdminReply& r) {
  nlohmann::json j;
  j["run_state"] = r.run_state;
  j["learner_step"] = r.learner_step;
  j["total_steps"] = r.total_steps;
  j["leases_issued"] = r.leases_issued;
  j["leases_completed"] = r.leases_completed;
  j["leases_in_flight"] = r.leases_in_flight;
  j["leases_awaiting_storage"] = r.leases_awaiting_storage;
  j["groups_stored"] = r.groups_stored;
  j["groups_retired"] = r.groups_retired;
  j["desired"] = {{"generator", r.desired_generators}, {"verifier", r.desired_verifiers}};
  j["coordinator_epoch"] = r.epoch;
  if (!r.message.empty()) j["message"] = r.message;
  j["members"] = nlohmann::json::array();
  for (const auto& m : r.members) {
    j["members"].push_back({{"role", m.role},
                            {"id", m.worker_id},
                            {"state", m.state},
                            {"epoch", m.epoch},
                            {"last_seen_ms_ago", m.last_seen_ms_ago},
                            {"policy_version", m.policy_version},
                            {"in_flight", m.in_flight},
                            {"leases_completed", m.leases_completed}});
  }
  return j;
}

void print_status(const grpo::cluster::AdminReply& r) {
  std::printf("run state         %s\n", r.run_state.c_str());
  std::printf("learner step      %llu / %llu\n", static_cast<unsigned long long>(r.learner_step),
              static_cast<unsigned long long>(r.total_steps));
  std::printf("leases            %llu issued, %llu completed (stored), %llu in flight (%llu awaiting storage)\n",
              static_cast<unsigned long long>(r.leases_issued),
              static_cast<unsigned long long>(r.leases_completed),
              static_cast<unsigned long long>(r.leases_in_flight),
              static_cast<unsigned long long>(r.leases_awaiting_storage));
  std::printf("buffer            %llu scored groups stored, %llu evicted or dropped\n",
              static_cast<unsigned long long>(r.groups_stored),
              static_cast<unsigned long long>(r.groups_retired));
  int up_generators = 0, up_verifiers = 0;
  for (const auto& m : r.members) {
    if (m.state != "up") continue;
    if (m.role == "generator") ++up_generators;
    if (m.role == "verifier") ++up_verifiers;
  }
  std::printf("generators        %d up, %d wanted\n", up_generators, r.desired_generators);
  std::printf("verifiers         %d up, %d wanted\n", up_verifiers, r.desired_verifiers);
}

void print_members(const grpo::cluster::AdminReply& r) {
  std::printf("%-12s %4s  %-9s %-14s %10s %8s %9s %10s\n", "ROLE", "ID", "STATE", "EPOCH", "LAST SEEN",
              "VERSION", "IN FLIGHT", "COMPLETED");
  for (const auto& m : r.members) {
    std::printf("%-12s %4llu  %-9s %-14llu %10s %8llu %9lld %10llu\n", m.role.c_str(),
                static_cast<unsigned long long>(m.worker_id), m.state.c_str(),
                static_cast<unsigned long long>(m.epoch), ago(m.last_seen_ms_ago).c_str(),
                static_cast<unsigned long long>(m.policy_version), static_cast<long long>(m.in_flight),
                static_cast<unsigned long long>(m.leases_completed));
  }
  if (r.members.empty()) std::printf("(no member has reported yet)\n");
}

int admin(const std::string& command, const std::string& role, int count, Target target,
          const std::string& config, bool json, int timeout_ms) {
  std::string error;
  if (target.endpoint.empty()) {
    const std::string path = config.empty() ? kDefaultConfig : config;
    if (!target_from_config(path, &target, &error)) return fail(2, error);
  }
  grpo::cluster::SecurityOptions security;
  if (!target.keys_dir.empty()) {
    auto admin_keys = grpo::cluster::read_key_file(target.keys_dir + "/admin.key");
    if (!admin_keys.ok()) return fail(2, "--keys: " + admin_keys.status().message());
    auto cluster_pub = grpo::cluster::read_public_key_file(target.keys_dir + "/cluster.pub");
    if (!cluster_pub.ok()) return fail(2, "--keys: " + cluster_pub.status().message());
    security = grpo::cluster::admin_client_security(*admin_keys, *cluster_pub);
  }
  grpo::cluster::AdminRequest req;
  req.command = command;
  req.role = role;
  req.count = count;
  auto transport = grpo::cluster::Transport::create();
  auto bytes = grpo::cluster::AdminClient::request(transport, target.endpoint, grpo::cluster::encode(req),
                                                   timeout_ms, security);
  if (!bytes.ok()) {
    if (bytes.status().code() == grpo::StatusCode::kDeadlineExceeded ||
        bytes.status().code() == grpo::StatusCode::kUnavailable)
      return fail(1, "cannot reach the coordinator: " + bytes.status().message());
    return fail(bytes.status().code() == grpo::StatusCode::kInvalidArgument ? 2 : 1, bytes.status().message());
  }
  grpo::cluster::AdminReply reply;
  grpo::Status st = grpo::cluster::decode(*bytes, &reply);
  if (!st.ok()) return fail(1, "the coordinator at " + target.endpoint + " sent an unreadable reply: " + st.message());
  if (!reply.ok) return fail(1, command + " refused by the coordinator: " + reply.error);
  if (json) {
    std::cout << to_json(reply).dump(2) << "\n";
    return 0;
  }
  if (!reply.message.empty()) std::printf("%s\n", reply.message.c_str());
  if (command == "members") print_members(reply);
  else print_status(reply);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"grpoctl: operate a GRPO Cluster"};
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the command: `grpoctl status --json`

  std::string out_dir;
  bool force = false;
  CLI::App* keygen_cmd =
      app.add_subcommand("keygen", "Make the cluster and admin CURVE keypairs in a folder");
  keygen_cmd->add_option("--out", out_dir, "Folder for cluster.key/.pub and admin.key/.pub")
      ->required();
  keygen_cmd->add_flag("--force", force, "Replace existing keys");

  Target target;
  std::string config;
  bool json = false;
  int timeout_ms = 3000;
  app.add_option("--endpoint", target.endpoint,
                 "The coordinator's admin endpoint (default: derived from --config)");
  app.add_option("--config", config,
                 std::string("Run config whose coordinator to ask (default: ") + kDefaultConfig + ")");
  app.add_option("--keys", target.keys_dir,
                 "Folder with admin.key and cluster.pub (grpoctl keygen) for a secured cluster");
  app.add_flag("--json", json, "Print the reply as JSON");
  app.add_option("--timeout-ms", timeout_ms, "How long to wait for the coordinator")
      ->check(CLI::Range(1, 600000));
  CLI::App* status_cmd = app.add_subcommand("status", "Run state, progress and counters");
  CLI::App* members_cmd = app.add_subcommand("members", "The cluster's members as the coordinator sees them");
  CLI::App* pause_cmd = app.add_subcommand("pause", "Stop leasing new prompt groups");
  CLI::App* resume_cmd = app.add_subcommand("resume", "Lease prompt groups again");
  std::string scale_role;
  int scale_count = 0;
  CLI::App* scale_cmd = app.add_subcommand("scale", "Set the number of generators or verifiers");
  scale_cmd->add_option("role", scale_role, "generator | verifier")
      ->required()
      ->check(CLI::IsMember({"generator", "verifier"}));
  scale_cmd->add_option("count", scale_count, "The new count")->required()->check(CLI::Range(1, 400));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help exits 0; every command-line mistake exits 2.
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (keygen_cmd->parsed()) return keygen(out_dir, force);
  if (!target.endpoint.empty() && !config.empty()) return fail(2, "give --endpoint or --config, not both");
  for (CLI::App* cmd : {status_cmd, members_cmd, pause_cmd, resume_cmd}) {
    if (cmd->parsed()) return admin(cmd->get_name(), "", 0, target, config, json, timeout_ms);
  }
  if (scale_cmd->parsed()) return admin("scale", scale_role, scale_count, target, config, json, timeout_ms);
  return 2;
}
