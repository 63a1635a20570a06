#include "runtime/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace grpo::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A header larger than this is refused before it is read (real ones are a few hundred KiB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

Status file_error(const std::string& path, const std::string& msg) {
  return data_loss(path + ": " + msg);
}

uint64_t read_le64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

Status write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return internal_error(path + ": write failed: " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return ok_status();
}

}  // namespace

size_t safetensors_dtype_size(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

uint64_t SafetensorInfo::numel() const {
  uint64_t n = 1;
  for (int64_t s : shape) n *= static_cast<uint64_t>(s);
  return n;
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return not_found(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return internal_error(path + ": stat failed");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return file_error(path, "truncated: " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return internal_error(path + ": mmap failed: " + std::strerror(errno));
  f->map_ = map;
  f->map_size_ = size;
  const auto* bytes = static_cast<const unsigned char*>(map);
  const uint64_t header_len = read_le64(bytes);
  if (header_len > kMaxHeaderBytes || header_len > size - 8)
    return file_error(path, "header length " + std::to_string(header_len) + " exceeds the file (" +
                                std::to_string(size) + " bytes): truncated or not a safetensors file");
  const std::string header(reinterpret_cast<const char*>(bytes + 8), header_len);
  json j = json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return file_error(path, "header is not a JSON object");
  f->data_ = reinterpret_cast<const char*>(bytes + 8 + header_len);
  const uint64_t data_size = size - 8 - header_len;
  uint64_t covered = 0;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return file_error(path, "__metadata__ must be an object");
      for (auto m = v.begin(); m != v.end(); ++m)
        if (m.value().is_string()) f->metadata_[m.key()] = m.value().get<std::string>();
      continue;
    }
    auto bad = [&](const std::string& msg) { return file_error(path, "tensor '" + name + "': " + msg); };
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      return bad("needs dtype, shape and data_offsets");
    SafetensorInfo t;
    t.name = name;
    if (!v["dtype"].is_string()) return bad("dtype must be a string");
    t.dtype = v["dtype"].get<std::string>();
    const size_t es = safetensors_dtype_size(t.dtype);
    if (es == 0) return bad("unknown dtype '" + t.dtype + "'");
    if (!v["shape"].is_array()) return bad("shape must be a list");
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > (int64_t{1} << 40))
        return bad("shape has an invalid dimension " + d.dump());
      t.shape.push_back(d.get<int64_t>());
      if (numel > 0 && static_cast<uint64_t>(d.get<int64_t>()) > (uint64_t{1} << 50) / numel)
        return bad("shape is too large");
      numel *= static_cast<uint64_t>(d.get<int64_t>());
    }
    const json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      return bad("data_offsets must be two non-negative integers");
    t.begin = off[0].get<uint64_t>();
    t.end = off[1].get<uint64_t>();
    if (t.begin > t.end || t.end > data_size)
      return bad("data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                 ") point outside the data section of " + std::to_string(data_size) + " bytes");
    if (t.end - t.begin != numel * es)
      return bad("data_offsets span " + std::to_string(t.end - t.begin) + " bytes but shape x " +
                 t.dtype + " needs " + std::to_string(numel * es));
    covered += t.end - t.begin;
    f->index_[name] = f->tensors_.size();
    f->tensors_.push_back(std::move(t));
  }
  // Overlapping ranges would alias two tensors: refuse them.
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& t : f->tensors_) ranges.emplace_back(t.begin, t.end);
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) return file_error(path, "tensor byte ranges overlap");
  (void)covered;
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

const SafetensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::open(const std::string& dir) {
  auto ck = std::make_unique<SafetensorsCheckpoint>();
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single = fs::path(dir) / "model.safetensors";
  std::vector<std::string> shard_names;
  std::map<std::string, std::string> weight_map;
  std::error_code ec;
  if (fs::exists(index_path, ec)) {
    std::ifstream in(index_path);
    std::stringstream ss;
    ss << in.rdbuf();
    json j = json::parse(ss.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      return invalid_argument(index_path.string() + ": needs a weight_map object");
    std::set<std::string> seen;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) return invalid_argument(index_path.string() + ": weight_map." + it.key() + " must be a file name");
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard == ".." || shard.empty())
        return invalid_argument(index_path.string() + ": weight_map." + it.key() + ": bad shard name '" + shard + "'");
      weight_map[it.key()] = shard;
      if (seen.insert(shard).second) shard_names.push_back(shard);
    }
  } else if (fs::exists(single, ec)) {
    shard_names.push_back("model.safetensors");
  } else {
    return not_found(dir + ": no model.safetensors or model.safetensors.index.json");
  }
  for (const auto& shard : shard_names) {
    GRPO_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open((fs::path(dir) / shard).string()));
    for (const auto& t : file->tensors()) {
      if (!weight_map.empty()) {
        auto w = weight_map.find(t.name);
        if (w == weight_map.end() || w->second != shard) continue;  // listed under another shard
      }
      if (ck->by_name_.count(t.name))
        return invalid_argument(dir + ": tensor " + t.name + " appears in two shards");
      ck->by_name_[t.name] = Entry{file.get(), &t};
    }
    ck->files_.push_back(std::move(file));
  }
  for (const auto& [name, shard] : weight_map)
    if (!ck->by_name_.count(name))
      return invalid_argument(index_path.string() + ": tensor " + name + " is not in " + shard);
  return ck;
}

SafetensorsCheckpoint::Entry SafetensorsCheckpoint::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? Entry{} : it->second;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [n, e] : by_name_) out.push_back(n);
  return out;
}

Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  // Widest dtypes first, so every tensor starts aligned to its element size.
  std::vector<const TensorToWrite*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const TensorToWrite* a, const TensorToWrite* b) {
    return safetensors_dtype_size(a->dtype) > safetensors_dtype_size(b->dtype);
  });
  json header = json::object();
  json meta = json::object();
  meta["format"] = "pt";
  for (const auto& [k, v] : metadata) meta[k] = v;
  header["__metadata__"] = meta;
  std::vector<uint64_t> sizes;
  uint64_t off = 0;
  for (const TensorToWrite* t : order) {
    const size_t es = safetensors_dtype_size(t->dtype);
    if (es == 0) return invalid_argument(path + ": tensor " + t->name + ": unknown dtype " + t->dtype);
    uint64_t numel = 1;
    for (int64_t s : t->shape) numel *= static_cast<uint64_t>(s);
    json e;
    e["dtype"] = t->dtype;
    e["shape"] = t->shape;
    e["data_offsets"] = {off, off + numel * es};
    header[t->name] = e;
    sizes.push_back(numel * es);
    off += numel * es;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((h.size() >> (8 * i)) & 0xff);
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return internal_error(tmp + ": cannot create: " + std::strerror(errno));
  Status st = write_all(fd, len, 8, tmp);
  if (st.ok()) st = write_all(fd, h.data(), h.size(), tmp);
  for (size_t i = 0; st.ok() && i < order.size(); ++i) st = write_all(fd, order[i]->data, sizes[i], tmp);
  if (st.ok() && ::fsync(fd) != 0) st = internal_error(tmp + ": fsync failed");
  ::close(fd);
  if (st.ok() && std::rename(tmp.c_str(), path.c_str()) != 0)
    st = internal_error(path + ": rename failed: " + std::strerror(errno));
  if (!st.ok()) std::remove(tmp.c_str());
  return st;
}

Status write_safetensors_checkpoint(const std::string& dir, const std::vector<TensorToWrite>& tensors,
                                    uint64_t max_shard_bytes) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return internal_error(dir + ": cannot create: " + ec.message());
  std::vector<std::vector<TensorToWrite>> shards(1);
  uint64_t in_shard = 0, total = 0;
  for (const auto& t : tensors) {
    uint64_t n = safetensors_dtype_size(t.dtype);
    for (int64_t s : t.shape) n *= static_cast<uint64_t>(s);
    if (in_shard > 0 && max_shard_bytes > 0 && in_shard + n > max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(t);
    in_shard += n;
    total += n;
  }
  // Stale files of an earlier save would confuse a reader.
  fs::remove(fs::path(dir) / "model.safetensors", ec);
  fs::remove(fs::path(dir) / "model.safetensors.index.json", ec);
  if (shards.size() == 1) return write_safetensors((fs::path(dir) / "model.safetensors").string(), shards[0]);
  json index;
  index["metadata"] = {{"total_size", total}};
  json wm = json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    GRPO_RETURN_IF_ERROR(write_safetensors((fs::path(dir) / name).string(), shards[i]));
    for (const auto& t : shards[i]) wm[t.name] = name;
  }
  index["weight_map"] = wm;
  const std::string path = (fs::path(dir) / "model.safetensors.index.json").string();
  std::ofstream out(path + ".tmp");
  out << index.dump(2) << "\n";
  out.close();
  if (!out || std::rename((path + ".tmp").c_str(), path.c_str()) != 0)
    return internal_error(path + ": cannot write");
  return ok_status();
}

}  // namespace grpo::runtime
