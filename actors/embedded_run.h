// An embedded training run: every role of the cluster as CAF actors in one process, talking over
// ZeroMQ inproc:// endpoints with the same Cap'n Proto messages that cluster mode sends over tcp://.
//
// Phases: resume from the run directory's newest checkpoint, or cold-start SFT plus a held-out
// evaluation (checkpoint step 0); then asynchronous GRPO until grpo.steps; then the held-out
// evaluation again and a before/after table. SIGINT stops after the learner's current step, writes a
// checkpoint and returns 130; running again on the same run directory resumes there.
#pragma once

#include "base/config.h"

namespace grpo::actors {

// Returns the process exit code (0 done, 1 failed, 130 interrupted).
int run_embedded(const Config& config);

// Installs the SIGINT/SIGTERM handlers that run_embedded watches.
void install_interrupt_handlers();

}  // namespace grpo::actors
