#include "storage/rollout_shard.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <optional>
#include <utility>

#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "storage/rocksdb_util.h"

// On-disk layout (one default column family; all integers 8-byte big-endian so that byte order is
// numeric order):
//   g/<id>         -> group record {u8 state, u64 version, u64 consume_step, u64 payload_bytes}
//                     for every id ever put (the tombstone that makes put idempotent)
//   p/<id>         -> payload bytes (pending and consumed-but-not-pruned groups)
//   q/<id>         -> u64 version; present exactly for pending groups (the peek/evict index)
//   c/<step><id>   -> ""; present for groups consumed at <step> and not yet pruned (rewind/prune index)
//   m/state        -> meta {u64 format, cursor, pruned_through, pending, consumed, evicted,
//                     pending_bytes}, rewritten in every mutating batch

namespace grpo::storage {
namespace {

using internal::from_rocksdb;
using internal::get_be64;
using internal::printable_key;
using internal::put_be64;

constexpr uint64_t kFormatVersion = 1;
constexpr char kMetaKey[] = "m/state";
constexpr size_t kMetaSize = 7 * 8;
constexpr size_t kRecordSize = 1 + 3 * 8;
constexpr size_t kIdKeySize = 2 + 8;
constexpr size_t kConsumedKeySize = 2 + 8 + 8;

std::string id_key(char prefix, uint64_t id) {
  std::string k;
  k.reserve(kIdKeySize);
  k.push_back(prefix);
  k.push_back('/');
  put_be64(&k, id);
  return k;
}
std::string group_key(uint64_t id) { return id_key('g', id); }
std::string payload_key(uint64_t id) { return id_key('p', id); }
std::string pending_key(uint64_t id) { return id_key('q', id); }
std::string consumed_key(uint64_t step, uint64_t id) {
  std::string k = id_key('c', step);
  put_be64(&k, id);
  return k;
}
// [prefix_begin, prefix_end) spans every key of a prefix ('0' is the byte after '/').
std::string prefix_begin(char prefix) { return std::string{prefix, '/'}; }
std::string prefix_end(char prefix) { return std::string{prefix, '0'}; }

// "g/42", "c/3/42", or the escaped bytes of a key of unexpected shape.
std::string describe_key(std::string_view key) {
  if (key.size() == kIdKeySize && key[1] == '/') {
    return std::string(key.substr(0, 2)) + std::to_string(get_be64(key.data() + 2));
  }
  if (key.size() == kConsumedKeySize && key[0] == 'c' && key[1] == '/') {
    return "c/" + std::to_string(get_be64(key.data() + 2)) + "/" +
           std::to_string(get_be64(key.data() + 10));
  }
  return printable_key(key);
}

struct GroupRecord {
  GroupState state = GroupState::kPending;
  uint64_t version = 0;
  uint64_t consume_step = 0;
  uint64_t payload_bytes = 0;
};

std::string encode_record(const GroupRecord& r) {
  std::string v;
  v.reserve(kRecordSize);
  v.push_back(static_cast<char>(r.state));
  put_be64(&v, r.version);
  put_be64(&v, r.consume_step);
  put_be64(&v, r.payload_bytes);
  return v;
}

StatusOr<GroupRecord> decode_record(std::string_view key, std::string_view value) {
  if (value.size() != kRecordSize) {
    return data_loss("corrupt group record at key " + describe_key(key) + ": " +
                     std::to_string(value.size()) + " bytes, expected " +
                     std::to_string(kRecordSize));
  }
  auto state = static_cast<uint8_t>(value[0]);
  if (state < static_cast<uint8_t>(GroupState::kPending) ||
      state > static_cast<uint8_t>(GroupState::kEvicted)) {
    return data_loss("corrupt group record at key " + describe_key(key) + ": state " +
                     std::to_string(state));
  }
  GroupRecord r;
  r.state = static_cast<GroupState>(state);
  r.version = get_be64(value.data() + 1);
  r.consume_step = get_be64(value.data() + 9);
  r.payload_bytes = get_be64(value.data() + 17);
  return r;
}

// Reads the record of `id`; nullopt when the id was never put.
StatusOr<std::optional<GroupRecord>> read_record(rocksdb::DB* db, const rocksdb::ReadOptions& ro,
                                                 uint64_t id) {
  const std::string key = group_key(id);
  std::string value;
  rocksdb::Status s = db->Get(ro, key, &value);
  if (s.IsNotFound()) return std::optional<GroupRecord>();
  GRPO_RETURN_IF_ERROR(from_rocksdb(s, "read " + describe_key(key)));
  GRPO_ASSIGN_OR_RETURN(GroupRecord r, decode_record(key, value));
  return std::optional<GroupRecord>(r);
}

// A WriteBatch that remembers the first error of its Put/Delete calls.
class Batch {
 public:
  void put(const std::string& key, std::string_view value) {
    note(batch_.Put(key, rocksdb::Slice(value.data(), value.size())), key);
  }
  void del(const std::string& key) { note(batch_.Delete(key), key); }
  const Status& status() const { return status_; }
  rocksdb::WriteBatch* get() { return &batch_; }

 private:
  void note(const rocksdb::Status& s, const std::string& key) {
    if (status_.ok() && !s.ok()) status_ = from_rocksdb(s, "batch " + describe_key(key));
  }
  rocksdb::WriteBatch batch_;
  Status status_;
};

// Holds a RocksDB snapshot for the lifetime of a read.
class ScopedSnapshot {
 public:
  explicit ScopedSnapshot(rocksdb::DB* db) : db_(db), snapshot_(db->GetSnapshot()) {}
  ~ScopedSnapshot() { db_->ReleaseSnapshot(snapshot_); }
  ScopedSnapshot(const ScopedSnapshot&) = delete;
  ScopedSnapshot& operator=(const ScopedSnapshot&) = delete;
  rocksdb::ReadOptions read_options() const {
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot_;
    return ro;
  }

 private:
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snapshot_;
};

Status counter_underflow(const char* name) {
  return data_loss(std::string("rollout shard counter '") + name +
                   "' would go below zero: metadata disagrees with the group records");
}

}  // namespace

const char* group_state_name(GroupState state) {
  switch (state) {
    case GroupState::kPending: return "pending";
    case GroupState::kConsumed: return "consumed";
    case GroupState::kEvicted: return "evicted";
  }
  return "unknown";
}

std::string RolloutShard::encode_meta(const Meta& m) {
  std::string v;
  v.reserve(kMetaSize);
  for (uint64_t x : {kFormatVersion, m.cursor, m.pruned_through, m.pending, m.consumed, m.evicted,
                     m.pending_bytes}) {
    put_be64(&v, x);
  }
  return v;
}

StatusOr<RolloutShard::Meta> RolloutShard::decode_meta(std::string_view value) {
  if (value.size() != kMetaSize) {
    return data_loss(std::string("corrupt rollout shard metadata at key ") + kMetaKey + ": " +
                     std::to_string(value.size()) + " bytes, expected " + std::to_string(kMetaSize));
  }
  const uint64_t format = get_be64(value.data());
  if (format != kFormatVersion) {
    return failed_precondition("rollout shard format " + std::to_string(format) +
                               " is not supported (this build reads format " +
                               std::to_string(kFormatVersion) + ")");
  }
  Meta m;
  m.cursor = get_be64(value.data() + 8);
  m.pruned_through = get_be64(value.data() + 16);
  m.pending = get_be64(value.data() + 24);
  m.consumed = get_be64(value.data() + 32);
  m.evicted = get_be64(value.data() + 40);
  m.pending_bytes = get_be64(value.data() + 48);
  return m;
}

StatusOr<std::unique_ptr<RolloutShard>> RolloutShard::open(const std::string& dir,
                                                          RolloutShardOptions opts) {
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<rocksdb::DB> db, internal::open_db(dir, "rollout shard"));

  Meta meta;
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), kMetaKey, &value);
  if (s.IsNotFound()) {
    // A new store: write the metadata (and with it the format version) right away.
    rocksdb::WriteOptions wo;
    wo.sync = opts.sync_writes;
    GRPO_RETURN_IF_ERROR(from_rocksdb(db->Put(wo, kMetaKey, encode_meta(meta)),
                                      "initialise rollout shard " + dir));
  } else {
    GRPO_RETURN_IF_ERROR(from_rocksdb(s, "read rollout shard metadata in " + dir));
    GRPO_ASSIGN_OR_RETURN(meta, decode_meta(value));
  }
  return std::unique_ptr<RolloutShard>(new RolloutShard(std::move(db), opts, meta));
}

RolloutShard::RolloutShard(std::unique_ptr<rocksdb::DB> db, RolloutShardOptions opts, Meta meta)
    : db_(std::move(db)), opts_(opts), meta_(meta) {}

RolloutShard::~RolloutShard() {
  if (!db_) return;
  rocksdb::Status s = db_->Close();
  if (!s.ok()) GRPO_LOG(kWarn) << "closing rollout shard: " << s.ToString();
}

Status RolloutShard::commit(rocksdb::WriteBatch* batch, const Meta& next, std::string_view what) {
  GRPO_RETURN_IF_ERROR(from_rocksdb(batch->Put(kMetaKey, encode_meta(next)), what));
  rocksdb::WriteOptions wo;
  wo.sync = opts_.sync_writes;
  GRPO_RETURN_IF_ERROR(from_rocksdb(db_->Write(wo, batch), what));
  meta_ = next;
  return ok_status();
}

StatusOr<bool> RolloutShard::put(uint64_t group_id, uint64_t version, std::string_view payload) {
  std::lock_guard<std::mutex> lock(mu_);
  GRPO_ASSIGN_OR_RETURN(auto existing, read_record(db_.get(), rocksdb::ReadOptions(), group_id));
  if (existing) return false;

  GroupRecord rec;
  rec.state = GroupState::kPending;
  rec.version = version;
  rec.payload_bytes = payload.size();
  std::string version_value;
  put_be64(&version_value, version);

  Batch batch;
  batch.put(group_key(group_id), encode_record(rec));
  batch.put(payload_key(group_id), payload);
  batch.put(pending_key(group_id), version_value);
  GRPO_RETURN_IF_ERROR(batch.status());
  Meta next = meta_;
  next.pending += 1;
  next.pending_bytes += payload.size();
  GRPO_RETURN_IF_ERROR(commit(batch.get(), next, "put group " + std::to_string(group_id)));
  return true;
}

StatusOr<std::vector<StoredGroup>> RolloutShard::peek(uint64_t min_version, size_t n) const {
  std::vector<StoredGroup> out;
  if (n == 0) return out;
  ScopedSnapshot snapshot(db_.get());
  rocksdb::ReadOptions ro = snapshot.read_options();
  const std::string begin = prefix_begin('q');
  const std::string end = prefix_end('q');
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(begin); it->Valid() && out.size() < n; it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    if (key.size() != kIdKeySize || it->value().size() != 8) {
      return data_loss("corrupt pending index entry at key " + describe_key(key));
    }
    const uint64_t version = get_be64(it->value().data());
    if (version < min_version) continue;
    StoredGroup g;
    g.group_id = get_be64(key.data() + 2);
    g.version = version;
    const std::string pkey = payload_key(g.group_id);
    rocksdb::Status s = db_->Get(ro, pkey, &g.payload);
    if (s.IsNotFound()) {
      return data_loss("pending group " + std::to_string(g.group_id) + " has no payload at key " +
                       describe_key(pkey));
    }
    GRPO_RETURN_IF_ERROR(from_rocksdb(s, "read " + describe_key(pkey)));
    out.push_back(std::move(g));
  }
  GRPO_RETURN_IF_ERROR(from_rocksdb(it->status(), "scan pending groups"));
  return out;
}

Status RolloutShard::consume(uint64_t step, const std::vector<uint64_t>& group_ids) {
  if (group_ids.empty()) return invalid_argument("consume at step " + std::to_string(step) +
                                                 ": no group ids");
  std::vector<uint64_t> sorted = group_ids;
  std::sort(sorted.begin(), sorted.end());
  auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup != sorted.end()) {
    return invalid_argument("consume at step " + std::to_string(step) + ": group " +
                            std::to_string(*dup) + " listed twice");
  }

  std::lock_guard<std::mutex> lock(mu_);
  if (step <= meta_.cursor) {
    return failed_precondition("consume at step " + std::to_string(step) +
                               ": the cursor is already at step " + std::to_string(meta_.cursor));
  }
  Batch batch;
  Meta next = meta_;
  for (uint64_t id : sorted) {
    GRPO_ASSIGN_OR_RETURN(auto rec, read_record(db_.get(), rocksdb::ReadOptions(), id));
    if (!rec) {
      return failed_precondition("consume at step " + std::to_string(step) + ": group " +
                                 std::to_string(id) + " is unknown");
    }
    if (rec->state != GroupState::kPending) {
      std::string detail = group_state_name(rec->state);
      if (rec->state == GroupState::kConsumed) {
        detail += " by step " + std::to_string(rec->consume_step);
      }
      return failed_precondition("consume at step " + std::to_string(step) + ": group " +
                                 std::to_string(id) + " is " + detail);
    }
    if (next.pending == 0) return counter_underflow("pending");
    if (next.pending_bytes < rec->payload_bytes) return counter_underflow("pending_bytes");
    next.pending -= 1;
    next.pending_bytes -= rec->payload_bytes;
    next.consumed += 1;
    rec->state = GroupState::kConsumed;
    rec->consume_step = step;
    batch.put(group_key(id), encode_record(*rec));
    batch.del(pending_key(id));
    batch.put(consumed_key(step, id), "");
  }
  GRPO_RETURN_IF_ERROR(batch.status());
  next.cursor = step;
  return commit(batch.get(), next, "consume at step " + std::to_string(step));
}

Status RolloutShard::rewind(uint64_t step) {
  std::lock_guard<std::mutex> lock(mu_);
  if (step > meta_.cursor) {
    return failed_precondition("rewind to step " + std::to_string(step) +
                               ": the cursor is only at step " + std::to_string(meta_.cursor));
  }
  if (step == meta_.cursor) return ok_status();
  if (step < meta_.pruned_through) {
    return failed_precondition("rewind to step " + std::to_string(step) +
                               ": payloads consumed through step " +
                               std::to_string(meta_.pruned_through) + " were pruned");
  }

  Batch batch;
  Meta next = meta_;
  rocksdb::ReadOptions ro;
  const std::string end = prefix_end('c');
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(consumed_key(step + 1, 0)); it->Valid(); it->Next()) {
    const std::string key(it->key().data(), it->key().size());
    if (key.size() != kConsumedKeySize) {
      return data_loss("corrupt consumed index entry at key " + describe_key(key));
    }
    const uint64_t consume_step = get_be64(key.data() + 2);
    const uint64_t id = get_be64(key.data() + 10);
    GRPO_ASSIGN_OR_RETURN(auto rec, read_record(db_.get(), rocksdb::ReadOptions(), id));
    if (!rec || rec->state != GroupState::kConsumed || rec->consume_step != consume_step) {
      return data_loss("consumed index entry " + describe_key(key) +
                       " disagrees with the record of group " + std::to_string(id));
    }
    if (next.consumed == 0) return counter_underflow("consumed");
    next.consumed -= 1;
    next.pending += 1;
    next.pending_bytes += rec->payload_bytes;
    rec->state = GroupState::kPending;
    rec->consume_step = 0;
    std::string version_value;
    put_be64(&version_value, rec->version);
    batch.put(group_key(id), encode_record(*rec));
    batch.put(pending_key(id), version_value);
    batch.del(key);
  }
  GRPO_RETURN_IF_ERROR(from_rocksdb(it->status(), "scan consumed groups"));
  GRPO_RETURN_IF_ERROR(batch.status());
  next.cursor = step;
  return commit(batch.get(), next, "rewind to step " + std::to_string(step));
}

uint64_t RolloutShard::cursor() const {
  std::lock_guard<std::mutex> lock(mu_);
  return meta_.cursor;
}

StatusOr<uint64_t> RolloutShard::max_group_id() const {
  rocksdb::ReadOptions ro;
  const std::string begin = prefix_begin('g');
  const std::string end = prefix_end('g');
  rocksdb::Slice lower(begin);
  ro.iterate_lower_bound = &lower;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  it->SeekForPrev(end);
  if (it->Valid() && it->key().compare(rocksdb::Slice(end)) >= 0) it->Prev();
  GRPO_RETURN_IF_ERROR(from_rocksdb(it->status(), "find the largest group id"));
  if (!it->Valid()) return uint64_t{0};
  if (it->key().size() != kIdKeySize) {
    return data_loss("corrupt group key " + describe_key(std::string_view(it->key().data(), it->key().size())));
  }
  return get_be64(it->key().data() + 2);
}

namespace {

// The pending -> evicted transition of one group: record, index and payload, plus the counters.
template <class Meta, class Batch, class Record>
Status mark_evicted(uint64_t id, Record& rec, Meta& next, Batch& batch) {
  if (next.pending == 0) return counter_underflow("pending");
  if (next.pending_bytes < rec.payload_bytes) return counter_underflow("pending_bytes");
  next.pending -= 1;
  next.pending_bytes -= rec.payload_bytes;
  next.evicted += 1;
  rec.state = GroupState::kEvicted;
  batch.put(group_key(id), encode_record(rec));
  batch.del(pending_key(id));
  batch.del(payload_key(id));
  return ok_status();
}

}  // namespace

StatusOr<size_t> RolloutShard::discard(const std::vector<uint64_t>& group_ids) {
  std::lock_guard<std::mutex> lock(mu_);
  Batch batch;
  Meta next = meta_;
  size_t evicted = 0;
  std::vector<uint64_t> ids(group_ids);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  for (uint64_t id : ids) {
    GRPO_ASSIGN_OR_RETURN(auto rec, read_record(db_.get(), rocksdb::ReadOptions(), id));
    if (!rec || rec->state != GroupState::kPending) continue;
    GRPO_RETURN_IF_ERROR(mark_evicted(id, *rec, next, batch));
    ++evicted;
  }
  if (evicted == 0) return size_t{0};
  GRPO_RETURN_IF_ERROR(batch.status());
  GRPO_RETURN_IF_ERROR(commit(batch.get(), next, "discard " + std::to_string(evicted) + " groups"));
  return evicted;
}

StatusOr<size_t> RolloutShard::evict_stale(uint64_t min_version) {
  std::lock_guard<std::mutex> lock(mu_);
  Batch batch;
  Meta next = meta_;
  size_t evicted = 0;
  rocksdb::ReadOptions ro;
  const std::string begin = prefix_begin('q');
  const std::string end = prefix_end('q');
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(begin); it->Valid(); it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    if (key.size() != kIdKeySize || it->value().size() != 8) {
      return data_loss("corrupt pending index entry at key " + describe_key(key));
    }
    if (get_be64(it->value().data()) >= min_version) continue;
    const uint64_t id = get_be64(key.data() + 2);
    GRPO_ASSIGN_OR_RETURN(auto rec, read_record(db_.get(), rocksdb::ReadOptions(), id));
    if (!rec || rec->state != GroupState::kPending) {
      return data_loss("pending index entry " + describe_key(key) +
                       " disagrees with the record of group " + std::to_string(id));
    }
    GRPO_RETURN_IF_ERROR(mark_evicted(id, *rec, next, batch));
    ++evicted;
  }
  GRPO_RETURN_IF_ERROR(from_rocksdb(it->status(), "scan pending groups"));
  if (evicted == 0) return size_t{0};
  GRPO_RETURN_IF_ERROR(batch.status());
  GRPO_RETURN_IF_ERROR(
      commit(batch.get(), next, "evict groups older than version " + std::to_string(min_version)));
  return evicted;
}

Status RolloutShard::prune_consumed(uint64_t up_to_step) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t through = std::min(up_to_step, meta_.cursor);
  if (through <= meta_.pruned_through) return ok_status();

  Batch batch;
  Meta next = meta_;
  rocksdb::ReadOptions ro;
  const std::string begin = prefix_begin('c');
  const std::string end = through == std::numeric_limits<uint64_t>::max()
                              ? prefix_end('c')
                              : consumed_key(through + 1, 0);
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(begin); it->Valid(); it->Next()) {
    const std::string key(it->key().data(), it->key().size());
    if (key.size() != kConsumedKeySize) {
      return data_loss("corrupt consumed index entry at key " + describe_key(key));
    }
    batch.del(payload_key(get_be64(key.data() + 10)));
    batch.del(key);
  }
  GRPO_RETURN_IF_ERROR(from_rocksdb(it->status(), "scan consumed groups"));
  GRPO_RETURN_IF_ERROR(batch.status());
  next.pruned_through = through;
  return commit(batch.get(), next, "prune groups consumed through step " + std::to_string(through));
}

StatusOr<GroupInfo> RolloutShard::lookup(uint64_t group_id) const {
  ScopedSnapshot snapshot(db_.get());
  const rocksdb::ReadOptions ro = snapshot.read_options();
  GRPO_ASSIGN_OR_RETURN(auto rec, read_record(db_.get(), ro, group_id));
  if (!rec) return not_found("group " + std::to_string(group_id) + " was never put");
  GroupInfo info;
  info.group_id = group_id;
  info.version = rec->version;
  info.state = rec->state;
  info.consume_step = rec->consume_step;
  info.payload_bytes = rec->payload_bytes;
  const std::string pkey = payload_key(group_id);
  rocksdb::PinnableSlice ignored;  // pinned, not copied
  rocksdb::Status s = db_->Get(ro, db_->DefaultColumnFamily(), pkey, &ignored);
  if (!s.IsNotFound()) {
    GRPO_RETURN_IF_ERROR(from_rocksdb(s, "read " + describe_key(pkey)));
    info.has_payload = true;
  }
  return info;
}

StatusOr<StoredGroup> RolloutShard::read(uint64_t group_id) const {
  ScopedSnapshot snapshot(db_.get());
  const rocksdb::ReadOptions ro = snapshot.read_options();
  GRPO_ASSIGN_OR_RETURN(auto rec, read_record(db_.get(), ro, group_id));
  if (!rec) return not_found("group " + std::to_string(group_id) + " was never put");
  StoredGroup g;
  g.group_id = group_id;
  g.version = rec->version;
  const std::string pkey = payload_key(group_id);
  rocksdb::Status s = db_->Get(ro, pkey, &g.payload);
  if (s.IsNotFound()) {
    std::string why = group_state_name(rec->state);
    if (rec->state == GroupState::kConsumed) why += " by step " + std::to_string(rec->consume_step) + " and pruned";
    return failed_precondition("group " + std::to_string(group_id) + " has no payload: it was " + why);
  }
  GRPO_RETURN_IF_ERROR(from_rocksdb(s, "read " + describe_key(pkey)));
  return g;
}

StatusOr<std::vector<std::pair<uint64_t, uint64_t>>> RolloutShard::consumed_after(uint64_t after_step) const {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  if (after_step == std::numeric_limits<uint64_t>::max()) return out;
  ScopedSnapshot snapshot(db_.get());
  rocksdb::ReadOptions ro = snapshot.read_options();
  const std::string end = prefix_end('c');
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(consumed_key(after_step + 1, 0)); it->Valid(); it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    if (key.size() != kConsumedKeySize) {
      return data_loss("corrupt consumed index entry at key " + describe_key(key));
    }
    out.emplace_back(get_be64(key.data() + 2), get_be64(key.data() + 10));
  }
  GRPO_RETURN_IF_ERROR(from_rocksdb(it->status(), "scan consumed groups"));
  return out;
}

RolloutShardStats RolloutShard::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  RolloutShardStats s;
  s.pending = meta_.pending;
  s.consumed = meta_.consumed;
  s.evicted = meta_.evicted;
  s.pending_bytes = meta_.pending_bytes;
  s.cursor = meta_.cursor;
  s.pruned_through = meta_.pruned_through;
  return s;
}

}  // namespace grpo::storage
