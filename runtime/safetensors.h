// Safetensors files: the tensor container Hugging Face checkpoints use, read memory-mapped and
// written atomically.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON
// {"NAME": {"dtype": "F32"|"BF16"|..., "shape": [...], "data_offsets": [BEGIN, END]}, ...,
//  "__metadata__": {"format": "pt"}}, then the data, each tensor's bytes at [BEGIN, END) after the
// header. SafetensorsFile::open validates everything before anyone reads a byte: the header length
// against the file size, the JSON, each dtype, that shape x element size equals END - BEGIN, and that
// every range lies inside the file; a truncated or hostile file is an error naming the file and the
// tensor, never a crash or an out-of-bounds read.
//
// A checkpoint directory holds model.safetensors, or shards listed by model.safetensors.index.json
// ({"weight_map": {"NAME": "model-00001-of-00002.safetensors", ...}}); SafetensorsCheckpoint opens
// either. Pure C++ (no LibTorch). An open file is immutable and may be read from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace grpo::runtime {

// Element size of a dtype name as safetensors spells it ("F32", "BF16", "F16", "I64", ...); 0 when
// unknown.
size_t safetensors_dtype_size(const std::string& dtype);

struct SafetensorInfo {
  std::string name;
  std::string dtype;           // "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;          // byte range in the data section
  uint64_t end = 0;
  uint64_t numel() const;
};

class SafetensorsFile {
 public:
  static StatusOr<std::unique_ptr<SafetensorsFile>> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<SafetensorInfo>& tensors() const { return tensors_; }
  const SafetensorInfo* find(const std::string& name) const;
  // The tensor's bytes (valid while this file is open).
  const char* data(const SafetensorInfo& t) const { return data_ + t.begin; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const char* data_ = nullptr;
  std::vector<SafetensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint directory (single file or sharded).
class SafetensorsCheckpoint {
 public:
  static StatusOr<std::unique_ptr<SafetensorsCheckpoint>> open(const std::string& dir);
  struct Entry {
    const SafetensorsFile* file = nullptr;
    const SafetensorInfo* info = nullptr;
  };
  // nullptr fields when the name is absent.
  Entry find(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry> by_name_;
};

// One tensor to write: its bytes are copied from `data` (numel x element size of dtype).
struct TensorToWrite {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

// Writes one safetensors file atomically (temp file + rename), tensors in the given order, with
// {"format": "pt"} plus `metadata` in __metadata__.
Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

// Writes model.safetensors, or, when the tensors exceed max_shard_bytes, shards named
// model-0000K-of-0000N.safetensors plus model.safetensors.index.json, into `dir`.
Status write_safetensors_checkpoint(const std::string& dir, const std::vector<TensorToWrite>& tensors,
                                    uint64_t max_shard_bytes);

}  // namespace grpo::runtime
