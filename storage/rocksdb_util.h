// Internal helpers shared by the storage/ implementation files: the one conversion of
// rocksdb::Status into grpo::Status, fixed-width big-endian integer encoding for keys and values, and
// a printable rendering of binary keys for error messages.
//
// PRIVATE to storage/: include it only from storage/*.cc. It includes RocksDB, and no header that
// another layer includes may do that. All functions are pure and may be called from any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <rocksdb/db.h>
#include <rocksdb/status.h>

#include "base/log.h"
#include "base/status.h"

namespace grpo::storage::internal {

// Converts a RocksDB status into a grpo Status; `context` says what was being done ("put group 7").
inline Status from_rocksdb(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) return ok_status();
  std::string msg = std::string(context) + ": " + s.ToString();
  if (s.IsNotFound()) return not_found(std::move(msg));
  if (s.IsCorruption()) return data_loss(std::move(msg));
  if (s.IsInvalidArgument()) return invalid_argument(std::move(msg));
  if (s.IsNotSupported()) return unimplemented(std::move(msg));
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut() || s.IsIOError()) {
    return unavailable(std::move(msg));  // includes "lock held by another process" and full disks
  }
  if (s.IsAborted() || s.IsShutdownInProgress()) return cancelled(std::move(msg));
  return internal_error(std::move(msg));
}

// Appends `v` as 8 big-endian bytes, so that byte order of keys equals numeric order.
inline void put_be64(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>((v >> shift) & 0xff));
}

// Reads 8 big-endian bytes at `p` (the caller has checked the length).
inline uint64_t get_be64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// Renders a key for messages: printable bytes as they are, others as \xNN.
inline std::string printable_key(std::string_view key) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (char c : key) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && u != '\\') {
      out.push_back(c);
    } else {
      out += "\\x";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    }
  }
  return out;
}

// Creates `dir` if needed and opens (or creates) the RocksDB database in it; `what` names the store
// in errors ("rollout store").
inline StatusOr<std::unique_ptr<rocksdb::DB>> open_db(const std::string& dir, const std::string& what) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return unavailable("create " + what + " directory " + dir + ": " + ec.message());
  rocksdb::Options options;
  options.create_if_missing = true;
  options.keep_log_file_num = 4;  // RocksDB's informational LOG files, not the WAL
  rocksdb::DB* raw = nullptr;
  GRPO_RETURN_IF_ERROR(from_rocksdb(rocksdb::DB::Open(options, dir, &raw), "open " + what + " " + dir));
  return std::unique_ptr<rocksdb::DB>(raw);
}

}  // namespace grpo::storage::internal
