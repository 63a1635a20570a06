// grpo: the GRPO Cluster program. Each subcommand is registered from its own cmd_*.cc file
// (see apps/commands.h); `grpo --help` lists them.
#include <CLI/CLI.hpp>

#include <vector>

#include "apps/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"GRPO Cluster: reinforcement learning for reasoning language models"};
  app.require_subcommand(1);
  std::vector<grpo::apps::Command> commands = {
      grpo::apps::add_train(app),
      grpo::apps::add_config_keys(app),
      grpo::apps::add_generate(app),
      grpo::apps::add_tokenize(app),
      grpo::apps::add_bench(app),
      grpo::apps::add_verify(app),
      grpo::apps::add_sft(app),
      grpo::apps::add_serve(app),
      grpo::apps::add_up(app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help exits 0; every command-line mistake exits 2 (see apps/commands.h).
    return app.exit(e) == 0 ? 0 : 2;
  }
  for (auto& c : commands) {
    if (c.sub->parsed()) return c.run();
  }
  return 2;
}
