// The subcommands of `grpo`. Each lives in its own cmd_*.cc file and registers itself on the
// CLI11 app; main() runs the one the user named. A command returns the process exit status
// (0 success, 1 failure while running, 2 bad arguments or input).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <vector>

namespace grpo::apps {

struct Command {
  CLI::App* sub = nullptr;
  std::function<int()> run;
};

Command add_train(CLI::App& app);
Command add_config_keys(CLI::App& app);
Command add_generate(CLI::App& app);
Command add_tokenize(CLI::App& app);
Command add_bench(CLI::App& app);
Command add_verify(CLI::App& app);
Command add_sft(CLI::App& app);
Command add_serve(CLI::App& app);
Command add_up(CLI::App& app);

}  // namespace grpo::apps
