// Staleness-bounded admission of prompt groups (the coordinator's pacing rule), as a pure function.
//
// The pipeline holds groups leased but not yet retired (consumed by the learner or evicted). The
// j-th group of the pipeline (0-based) will be consumed while the learner is at version
// learner_step + j / groups_per_step, so a generator holding weights of version v may lease it only
// when v >= that version - max_staleness; no group is leased for a step beyond total_steps.
#pragma once

#include <cstdint>
#include <vector>

namespace grpo::actors {

struct AdmissionState {
  uint64_t learner_step = 0;  // learner updates done = its weight version
  uint64_t issued = 0;        // groups leased so far (retired + in flight)
  uint64_t retired = 0;       // groups consumed or evicted
  int32_t groups_per_step = 1;
  int32_t max_staleness = 1;
  int64_t total_steps = 0;
};

// The learner version at which each admitted group will be consumed, for up to `wanted` new groups
// of a generator at weight version `version`. Empty when generation must wait.
std::vector<uint64_t> admit(const AdmissionState& state, uint64_t version, int32_t wanted);

}  // namespace grpo::actors
