#include "kernels/cpu/advantages.h"

#include <cmath>

namespace grpo::kernels {

void group_advantages(const float* rewards, int64_t n_groups, int64_t group_size,
                      AdvantageMode mode, float eps, float* out) {
  for (int64_t g = 0; g < n_groups; ++g) {
    const float* r = rewards + g * group_size;
    float* a = out + g * group_size;
    double sum = 0;
    for (int64_t i = 0; i < group_size; ++i) sum += r[i];
    double mean = sum / static_cast<double>(group_size);
    bool all_equal = true;
    for (int64_t i = 1; i < group_size; ++i) all_equal = all_equal && r[i] == r[0];
    if (all_equal) {
      for (int64_t i = 0; i < group_size; ++i) a[i] = 0.0f;
      continue;
    }
    switch (mode) {
      case AdvantageMode::kGroupNorm: {
        double var = 0;
        for (int64_t i = 0; i < group_size; ++i) var += (r[i] - mean) * (r[i] - mean);
        double std = std::sqrt(var / static_cast<double>(group_size));
        for (int64_t i = 0; i < group_size; ++i)
          a[i] = static_cast<float>((r[i] - mean) / (std + eps));
        break;
      }
      case AdvantageMode::kMeanOnly:
        for (int64_t i = 0; i < group_size; ++i) a[i] = static_cast<float>(r[i] - mean);
        break;
      case AdvantageMode::kRloo:
        for (int64_t i = 0; i < group_size; ++i) {
          double others = (sum - r[i]) / static_cast<double>(group_size > 1 ? group_size - 1 : 1);
          a[i] = static_cast<float>(r[i] - others);
        }
        break;
    }
  }
}

}  // namespace grpo::kernels
