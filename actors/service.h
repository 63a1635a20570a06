// One role of a run as its own process (cluster mode): `grpo serve --config FILE --role R --id N`.
//
// The roles are the embedded run's actors (actors/roles.h) with the same messages, but each process
// has its own ZeroMQ transport and the endpoints come from run.endpoint_prefix, which must be
// ipc:// (one host) or tcp://HOST:PORT (each role and id listens on PORT + a fixed offset; see
// actors/wire.h endpoint_of). The run directory is shared: the learner writes checkpoints and
// metrics there, the buffer and coordinator their RocksDB stores.
//   learner 0    resumes from the newest checkpoint or runs the cold-start SFT, trains to
//                grpo.steps, checkpoints, evaluates, prints the before/after table, exits 0;
//   learner r>0  waits for a checkpoint, then trains its share of every batch (data parallel);
//   others       serve until SIGINT/SIGTERM.
// SIGINT/SIGTERM: the learner stops after its current step with a checkpoint (exit 130); the other
// roles exit 0. Returns the process exit code.
#pragma once

#include <string>

#include "base/config.h"

namespace grpo::actors {

int run_service(const Config& config, const std::string& role, int id);

// The roles `grpo serve --role` accepts.
const char* service_roles();

}  // namespace grpo::actors
