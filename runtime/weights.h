// WeightBlob: a model's parameters as one contiguous byte string plus a table of tensors.
//
// The unit in which weights leave runtime/: the learner exports one per published version, the
// broadcaster moves its bytes in chunks, a generator imports it. Torch-free on purpose.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace grpo::runtime {

struct TensorInfo {
  std::string name;            // Hugging Face name, e.g. "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;
  std::string dtype = "f32";
  uint64_t offset = 0;         // into WeightBlob::bytes
  uint64_t nbytes = 0;
};

struct WeightBlob {
  uint64_t version = 0;
  std::vector<TensorInfo> tensors;
  std::string bytes;
};

}  // namespace grpo::runtime
