// Group-relative advantages: the critic-free baseline at the heart of GRPO (CPU reference).
//
// Rewards are laid out group-major: group g holds rewards[g*group_size .. (g+1)*group_size).
//   kGroupNorm  (DeepSeek-R1 GRPO): A = (r - mean_g) / (std_g + eps), std is the population std;
//   kMeanOnly   (Dr. GRPO):         A = r - mean_g;
//   kRloo       (leave-one-out):    A = r - mean of the other members of the group.
// A group whose rewards are all equal gets advantages of exactly 0 in every mode.
#pragma once

#include <cstdint>

namespace grpo::kernels {

enum class AdvantageMode { kGroupNorm, kMeanOnly, kRloo };

void group_advantages(const float* rewards, int64_t n_groups, int64_t group_size,
                      AdvantageMode mode, float eps, float* out);

}  // namespace grpo::kernels
