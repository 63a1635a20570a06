// The weight-broadcast benchmark's command line, shared by `grpo bench broadcast` and the
// stand-alone grpo-bench-broadcast (which links only the cluster layer, no LibTorch, so it can be
// copied with its libraries to a machine without this project's packages: bench/device-broadcast.sh).
//
// Options: --bytes N (default 256 MiB), --chunk-bytes N (4 MiB), --receivers 1,4,8, --repeats R
// (3, median reported), --chains C (1), --json ({"raw_seconds": x, "receivers": {"1": s1, "4": s4,
// "8": s8}, ...}). Exit 0, 2 for bad options, 1 when a transfer fails.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace grpo::apps {

// Adds the options to `cmd` and returns what runs the benchmark once `cmd` is parsed.
std::function<int()> add_bench_broadcast_options(CLI::App* cmd);

}  // namespace grpo::apps
