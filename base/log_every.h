// When to log a repeated event without flooding the log.
#pragma once

#include <cstdint>

namespace grpo::log {

// For the n-th occurrence (from 1) of a repeated event: true for the first ten, then at powers of
// two; enough to see a problem without flooding the log when a peer keeps sending garbage.
inline bool worth_logging(uint64_t n) { return n <= 10 || (n & (n - 1)) == 0; }

}  // namespace grpo::log
