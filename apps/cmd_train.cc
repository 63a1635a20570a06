// `grpo train --config FILE [key=value ...]`: a whole training run in one process (embedded mode).
// `grpo config-keys`: every configuration key with its type, default and meaning.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "actors/embedded_run.h"
#include "actors/run_config.h"
#include "apps/commands.h"
#include "base/config.h"

namespace grpo::apps {
namespace {

const char* type_label(ConfigType t) {
  switch (t) {
    case ConfigType::kInt: return "int";
    case ConfigType::kDouble: return "float";
    case ConfigType::kBool: return "bool";
    case ConfigType::kString: return "string";
    case ConfigType::kPath: return "path";
  }
  return "?";
}

}  // namespace

Command add_train(CLI::App& app) {
  struct Args {
    std::string config_path;
    std::vector<std::string> overrides;
  };
  auto args = std::make_shared<Args>();
  Command c;
  c.sub = app.add_subcommand("train", "run SFT cold start then GRPO in one process (embedded mode)");
  c.sub->add_option("--config", args->config_path, "TOML config file")->required();
  c.sub->add_option("overrides", args->overrides, "key=value overrides, e.g. generator.replicas=3");
  c.run = [args]() {
    auto config = Config::load(actors::run_schema(), args->config_path, args->overrides);
    if (!config.ok()) {
      std::fprintf(stderr, "error: %s\n", config.status().message().c_str());
      return 2;
    }
    actors::install_interrupt_handlers();
    return actors::run_embedded(*config);
  };
  return c;
}

Command add_config_keys(CLI::App& app) {
  Command c;
  c.sub = app.add_subcommand("config-keys",
                             "print every configuration key with its type, default and range");
  c.run = []() {
    for (const auto& k : actors::run_schema().keys()) {
      std::printf("%-28s %-6s default %-18s %s\n", k.name.c_str(), type_label(k.type),
                  k.default_value.c_str(), k.doc.c_str());
    }
    return 0;
  };
  return c;
}

}  // namespace grpo::apps
