// StateStore: a small durable key-value store for the coordinator's run state (run state, prompt
// cursor, policy versions, membership epochs). Keys and values are arbitrary bytes; numbers are
// stored through put_u64/get_u64 (or encode_u64 inside an atomic write()).
//
// Durability: every write goes through RocksDB's write-ahead log and, by default, is fsynced
// (StateStoreOptions::sync_writes), because these writes are rare and must survive a machine crash.
//
// Ownership and threads: a StateStore owns its RocksDB instance and the directory's lock (one process
// at a time per directory). Every method may be called from any thread; each call is atomic on its
// own, and write() applies all of its pairs atomically. There is no read-modify-write primitive:
// callers that need one serialise it themselves.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace rocksdb {
class DB;
}  // namespace rocksdb

namespace grpo::storage {

struct StateStoreOptions {
  bool sync_writes = true;  // fsync the write-ahead log on every write
};

class StateStore {
 public:
  // Opens (creating if needed) the store in directory `dir`. Unavailable when another process
  // holds it.
  static StatusOr<std::unique_ptr<StateStore>> open(const std::string& dir,
                                                    StateStoreOptions opts = {});
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // Sets `key` to `value`. InvalidArgument for an empty key.
  Status put(std::string_view key, std::string_view value);
  // The value of `key`; NotFound when absent.
  StatusOr<std::string> get(std::string_view key) const;
  // Removes `key` (OK when absent).
  Status remove(std::string_view key);

  // Numbers are stored as 8 big-endian bytes.
  Status put_u64(std::string_view key, uint64_t value);
  // `default_value` when absent; DataLoss naming the key when the stored value is not 8 bytes.
  StatusOr<uint64_t> get_u64(std::string_view key, uint64_t default_value) const;
  // The encoding put_u64 uses, for numbers written together with other keys through write().
  static std::string encode_u64(uint64_t value);

  // Sets every pair in one atomic write batch (later pairs win over earlier ones with the same key).
  Status write(const std::vector<std::pair<std::string, std::string>>& kvs);

 private:
  StateStore(std::unique_ptr<rocksdb::DB> db, StateStoreOptions opts);

  std::unique_ptr<rocksdb::DB> db_;
  const StateStoreOptions opts_;
};

}  // namespace grpo::storage
