#include "actors/admission.h"

#include <algorithm>

namespace grpo::actors {

std::vector<uint64_t> admit(const AdmissionState& s, uint64_t version, int32_t wanted) {
  std::vector<uint64_t> out;
  const uint64_t per_step = static_cast<uint64_t>(std::max(1, s.groups_per_step));
  uint64_t in_pipeline = s.issued - std::min(s.issued, s.retired);
  for (int32_t i = 0; i < wanted; ++i, ++in_pipeline) {
    uint64_t consumed_at = s.learner_step + in_pipeline / per_step;
    if (static_cast<int64_t>(consumed_at) >= s.total_steps) break;
    if (static_cast<int64_t>(version) < static_cast<int64_t>(consumed_at) - s.max_staleness) break;
    out.push_back(consumed_at);
  }
  return out;
}

}  // namespace grpo::actors
