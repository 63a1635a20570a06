#include "storage/state_store.h"

#include <filesystem>

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "storage/rocksdb_util.h"

namespace grpo::storage {
namespace {

using internal::from_rocksdb;
using internal::printable_key;

rocksdb::Slice slice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

}  // namespace

StatusOr<std::unique_ptr<StateStore>> StateStore::open(const std::string& dir,
                                                      StateStoreOptions opts) {
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<rocksdb::DB> db, internal::open_db(dir, "state store"));
  return std::unique_ptr<StateStore>(new StateStore(std::move(db), opts));
}

StateStore::StateStore(std::unique_ptr<rocksdb::DB> db, StateStoreOptions opts)
    : db_(std::move(db)), opts_(opts) {}

StateStore::~StateStore() {
  if (!db_) return;
  rocksdb::Status s = db_->Close();
  if (!s.ok()) GRPO_LOG(kWarn) << "closing state store: " << s.ToString();
}

Status StateStore::put(std::string_view key, std::string_view value) {
  return write({{std::string(key), std::string(value)}});
}

StatusOr<std::string> StateStore::get(std::string_view key) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), slice(key), &value);
  if (s.IsNotFound()) return not_found("state key '" + printable_key(key) + "' is not set");
  GRPO_RETURN_IF_ERROR(from_rocksdb(s, "read state key '" + printable_key(key) + "'"));
  return value;
}

Status StateStore::remove(std::string_view key) {
  rocksdb::WriteOptions wo;
  wo.sync = opts_.sync_writes;
  return from_rocksdb(db_->Delete(wo, slice(key)),
                      "remove state key '" + printable_key(key) + "'");
}

std::string StateStore::encode_u64(uint64_t value) {
  std::string out;
  internal::put_be64(&out, value);
  return out;
}

Status StateStore::put_u64(std::string_view key, uint64_t value) {
  return put(key, encode_u64(value));
}

StatusOr<uint64_t> StateStore::get_u64(std::string_view key, uint64_t default_value) const {
  StatusOr<std::string> value = get(key);
  if (value.status().code() == StatusCode::kNotFound) return default_value;
  if (!value.ok()) return value.status();
  if (value->size() != 8) {
    return data_loss("state key '" + printable_key(key) + "' holds " +
                     std::to_string(value->size()) + " bytes, not an 8-byte number");
  }
  return internal::get_be64(value->data());
}

Status StateStore::write(const std::vector<std::pair<std::string, std::string>>& kvs) {
  rocksdb::WriteBatch batch;
  for (const auto& [key, value] : kvs) {
    if (key.empty()) return invalid_argument("state store keys must not be empty");
    GRPO_RETURN_IF_ERROR(
        from_rocksdb(batch.Put(key, value), "batch state key '" + printable_key(key) + "'"));
  }
  if (kvs.empty()) return ok_status();
  rocksdb::WriteOptions wo;
  wo.sync = opts_.sync_writes;
  return from_rocksdb(db_->Write(wo, &batch), "write " + std::to_string(kvs.size()) + " state keys");
}

}  // namespace grpo::storage
