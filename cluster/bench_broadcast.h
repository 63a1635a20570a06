// `grpo bench broadcast`: how long a weight version takes to reach every receiver of the chained
// broadcast (cluster/weight_relay.h), next to one raw ZeroMQ PUSH/PULL transfer of the same bytes,
// measured in the same run over tcp on 127.0.0.1.
//
// Each receiver is what a generator runs: its own ZeroMQ context (as its own process would have),
// a Mailbox whose receive thread hands every message to a WeightRelay that verifies, forwards and
// assembles. The source is a WeightSource fed with the encoded manifest and chunks as the learner
// sends them; the receivers join its membership through heartbeats, as generators do. A transfer
// ends when the last receiver holds the whole verified blob; every blob is then compared with the
// original and handed back to its relay, as a generator does once it has loaded it. One untimed
// transfer comes first, so the timed ones see what every version after a run's first sees. The raw baseline pushes the same encoded chunk messages from one socket to one other
// and stops when the last has been received (no checking, no assembling, no forwarding).
#pragma once

#include <cstdint>
#include <vector>

#include "base/status.h"

namespace grpo::cluster {

struct BroadcastBenchOptions {
  uint64_t bytes = uint64_t{256} << 20;  // the weight blob
  uint32_t chunk_bytes = 4u << 20;
  std::vector<int> receivers = {1, 4, 8};
  int repeats = 3;  // timed transfers per configuration; the median is reported
  int chains = 1;   // WeightSourceOptions::chains
};

// cpu_seconds: CPU time (user + system, every thread of the process: source, receivers, ZeroMQ I/O
// threads, kernel copies) a transfer consumed, median. On a machine with fewer cores than
// receivers this, not the network, bounds the time: seconds >= cpu_seconds / cores.
struct BroadcastBenchRow {
  int receivers = 0;
  double seconds = 0;            // median
  double cpu_seconds = 0;        // median
  std::vector<double> samples;   // every timed transfer
};

struct BroadcastBenchResult {
  double raw_seconds = 0;  // median
  double raw_cpu_seconds = 0;
  std::vector<double> raw_samples;
  std::vector<BroadcastBenchRow> rows;  // in the order of options.receivers
};

// InvalidArgument for options out of range (bytes 0 or above 8 GiB, chunk_bytes outside
// [4 KiB, kMaxChunkBytes], a receiver count outside [1, 64], repeats outside [1, 100], chains < 1);
// Internal when a receiver ends up with other bytes than were sent or a transfer stalls.
StatusOr<BroadcastBenchResult> bench_broadcast(const BroadcastBenchOptions& options);

}  // namespace grpo::cluster
