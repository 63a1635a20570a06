// grpoctl: the GRPO Cluster operator's tool. Commands:
//   grpoctl keygen --out DIR [--force]
//       Makes the cluster's CURVE keys (cluster/security.h has the trust model): DIR/cluster.key
//       (cluster keypair, secret, mode 0600: give it to every cluster member), DIR/cluster.pub,
//       DIR/admin.key (admin keypair, secret, 0600: keep it with the operators) and
//       DIR/admin.pub (given to members so their admin sockets admit it). Creates DIR (mode
//       0700) when missing; refuses to replace existing keys unless --force.
// Exit status: 0 success, 1 failure while running, 2 bad arguments or input.
#include <CLI/CLI.hpp>

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"grpoctl: operate a GRPO Cluster"};
  app.require_subcommand(1);

  std::string out_dir;
  bool force = false;
  CLI::App* keygen_cmd =
      app.add_subcommand("keygen", "Make the cluster and admin CURVE keypairs in a folder");
  keygen_cmd->add_option("--out", out_dir, "Folder for cluster.key/.pub and admin.key/.pub")
      ->required();
  keygen_cmd->add_flag("--force", force, "Replace existing keys");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help exits 0; every command-line mistake exits 2.
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (keygen_cmd->parsed()) return keygen(out_dir, force);
  return 2;
}
