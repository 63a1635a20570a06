// grpo-bench-broadcast: `grpo bench broadcast` as its own program, linked against the cluster layer
// only (ZeroMQ, Cap'n Proto, xxhash; no LibTorch), so that bench/device-broadcast.sh can carry it
// with its libraries to a many-core machine that has none of this project's packages.
#include <CLI/CLI.hpp>

#include "apps/bench_broadcast_cli.h"

int main(int argc, char** argv) {
  CLI::App app{"chained weight broadcast to 1/4/8 receivers vs one raw ZeroMQ transfer (tcp on 127.0.0.1)"};
  auto run = grpo::apps::add_bench_broadcast_options(&app);
  CLI11_PARSE(app, argc, argv);
  return run();
}
