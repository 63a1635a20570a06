// grpo: the GRPO Cluster program. `grpo train --config FILE [key=value ...]` runs a whole training
// run in one process (embedded mode); `grpo config-keys` prints every configuration key.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "actors/embedded_run.h"
#include "actors/run_config.h"
#include "base/config.h"

namespace {

const char* type_label(grpo::ConfigType t) {
  switch (t) {
    case grpo::ConfigType::kInt: return "int";
    case grpo::ConfigType::kDouble: return "float";
    case grpo::ConfigType::kBool: return "bool";
    case grpo::ConfigType::kString: return "string";
    case grpo::ConfigType::kPath: return "path";
  }
  return "?";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"GRPO Cluster: reinforcement learning for reasoning language models"};
  app.require_subcommand(1);

  std::string config_path;
  std::vector<std::string> overrides;
  auto* train = app.add_subcommand("train", "run SFT cold start then GRPO in one process (embedded mode)");
  train->add_option("--config", config_path, "TOML config file")->required();
  train->add_option("overrides", overrides, "key=value overrides, e.g. generator.replicas=3");

  auto* keys = app.add_subcommand("config-keys", "print every configuration key with its type, default and range");

  CLI11_PARSE(app, argc, argv);

  if (keys->parsed()) {
    for (const auto& k : grpo::actors::run_schema().keys()) {
      std::printf("%-28s %-6s default %-18s %s\n", k.name.c_str(), type_label(k.type),
                  k.default_value.c_str(), k.doc.c_str());
    }
    return 0;
  }
  auto config = grpo::Config::load(grpo::actors::run_schema(), config_path, overrides);
  if (!config.ok()) {
    std::fprintf(stderr, "error: %s\n", config.status().message().c_str());
    return 2;
  }
  grpo::actors::install_interrupt_handlers();
  return grpo::actors::run_embedded(*config);
}
