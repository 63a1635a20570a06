// Device memory for the CUDA kernel tests: allocated with kernels/cuda's helpers, freed on
// destruction. Only the test binaries built with CUDA include it.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>

#include "kernels/cuda/token_logprobs.h"

namespace grpo::kernels::test_util {

class DeviceBuffer {
 public:
  explicit DeviceBuffer(int64_t bytes) : bytes_(bytes) {
    const Status s = cuda_alloc(&ptr_, bytes);
    EXPECT_TRUE(s.ok()) << s;
  }
  ~DeviceBuffer() { (void)cuda_free(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  float* floats() const { return as<float>(); }
  int64_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  int64_t bytes_;
};

}  // namespace grpo::kernels::test_util
