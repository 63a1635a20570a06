#include "storage/rollout_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <utility>

#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "storage/rocksdb_util.h"

// On-disk layout of the step log (DIR/steps, one default column family; integers 8-byte big-endian
// so that byte order is numeric order):
//   m/state    -> {u64 format, shards, cursor, logged_through, pruned_through}
//   s/<step>   -> {u64 n, n x u64 group id}: the intent of a step, ids ascending
// The shards (DIR/shard-K) have the layout of storage/rollout_shard.cc.

namespace grpo::storage {
namespace {

namespace fs = std::filesystem;
using internal::from_rocksdb;
using internal::get_be64;
using internal::put_be64;

constexpr uint64_t kLogFormatVersion = 1;
constexpr char kMetaKey[] = "m/state";
constexpr size_t kMetaSize = 5 * 8;
constexpr size_t kIntentKeySize = 2 + 8;

std::string intent_key(uint64_t step) {
  std::string k = "s/";
  put_be64(&k, step);
  return k;
}

std::string encode_ids(const std::vector<uint64_t>& ids) {
  std::string v;
  v.reserve(8 * (ids.size() + 1));
  put_be64(&v, ids.size());
  for (uint64_t id : ids) put_be64(&v, id);
  return v;
}

StatusOr<std::vector<uint64_t>> decode_ids(uint64_t step, std::string_view value) {
  if (value.size() < 8 || (value.size() - 8) / 8 != get_be64(value.data()) || value.size() % 8 != 0) {
    return data_loss("corrupt intent record of step " + std::to_string(step) + " at key s/" +
                     std::to_string(step) + " in the buffer's step log: " + std::to_string(value.size()) +
                     " bytes");
  }
  std::vector<uint64_t> ids;
  for (size_t off = 8; off < value.size(); off += 8) ids.push_back(get_be64(value.data() + off));
  return ids;
}

Status sync_directory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return unavailable("open directory " + path + " to sync it: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return unavailable("fsync directory " + path + ": " + std::strerror(err));
  return ok_status();
}

std::string parent_of(const std::string& dir) {
  const fs::path parent = fs::path(dir).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

bool path_exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

Status rename_durably(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  if (ec) return unavailable("rename " + from + " to " + to + ": " + ec.message());
  GRPO_RETURN_IF_ERROR(sync_directory(parent_of(to)));
  if (parent_of(from) != parent_of(to)) GRPO_RETURN_IF_ERROR(sync_directory(parent_of(from)));
  return ok_status();
}

std::string single_store_message(const std::string& dir, int shards) {
  return dir + " holds a single-store buffer written before sharding; it opens with buffer.shards = 1, not " +
         std::to_string(shards);
}

std::string encode_meta(uint64_t shards, uint64_t cursor, uint64_t logged_through, uint64_t pruned_through) {
  std::string v;
  v.reserve(kMetaSize);
  for (uint64_t x : {kLogFormatVersion, shards, cursor, logged_through, pruned_through}) put_be64(&v, x);
  return v;
}

// Writes the step log of a one-shard buffer whose only shard is `shard` (an adopted single store):
// its cursor and pruned step, and its consumed index as the intents of the steps it kept. Does
// nothing when the log has metadata already (an earlier adoption got that far).
Status write_adopted_log(const std::string& log_dir, const std::string& shard_dir, bool sync) {
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<rocksdb::DB> log, internal::open_db(log_dir, "buffer step log"));
  std::string value;
  rocksdb::Status s = log->Get(rocksdb::ReadOptions(), kMetaKey, &value);
  if (!s.IsNotFound()) return from_rocksdb(s, "read the metadata of the step log " + log_dir);
  auto shard = RolloutShard::open(shard_dir);
  if (!shard.ok()) return shard.status().with_context("adopt the single-store buffer " + shard_dir);
  const RolloutShardStats st = (*shard)->stats();
  auto consumed = (*shard)->consumed_after(st.pruned_through);
  if (!consumed.ok()) return consumed.status().with_context("adopt the single-store buffer " + shard_dir);
  const std::string what = "write the step log " + log_dir;
  rocksdb::WriteBatch batch;
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < consumed->size(); ++i) {
    ids.push_back((*consumed)[i].second);
    if (i + 1 == consumed->size() || (*consumed)[i + 1].first != (*consumed)[i].first) {
      GRPO_RETURN_IF_ERROR(from_rocksdb(batch.Put(intent_key((*consumed)[i].first), encode_ids(ids)), what));
      ids.clear();
    }
  }
  GRPO_RETURN_IF_ERROR(
      from_rocksdb(batch.Put(kMetaKey, encode_meta(1, st.cursor, st.cursor, st.pruned_through)), what));
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  GRPO_RETURN_IF_ERROR(from_rocksdb(log->Write(wo, &batch), what));
  return from_rocksdb(log->Close(), what);
}

// A buffer directory written before sharding is one RocksDB store at DIR itself. It becomes shard 0
// of a one-shard layout: DIR is renamed to DIR.single-store (a directory cannot be renamed into
// itself), the step log DIR/steps is written from it, and it is renamed to DIR/shard-0. Each rename
// is atomic and an open that finds DIR.single-store finishes the move, so a step log with shard 0
// missing is never the final state.
Status adopt_single_store(const std::string& dir, int shards, bool sync) {
  const std::string parked = dir + ".single-store";
  const std::string shard0 = dir + "/shard-0";
  const bool here = path_exists(dir + "/CURRENT");
  const bool parked_exists = path_exists(parked);
  if (!here && !parked_exists) return ok_status();
  if (shards != 1) return failed_precondition(single_store_message(dir, shards));
  if (here && parked_exists) {
    return failed_precondition("both " + dir + " and " + parked +
                               " hold a single-store buffer; move one of them away");
  }
  if (here) {
    // Opening it takes its lock (Unavailable while a process still uses it) and checks its format.
    auto probe = RolloutShard::open(dir);
    if (!probe.ok()) return probe.status().with_context("adopt the single-store buffer " + dir);
    probe->reset();
    GRPO_RETURN_IF_ERROR(rename_durably(dir, parked));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return unavailable("create buffer directory " + dir + ": " + ec.message());
  if (path_exists(shard0)) {
    return failed_precondition("cannot adopt the single-store buffer " + parked + ": " + shard0 + " exists");
  }
  GRPO_RETURN_IF_ERROR(write_adopted_log(dir + "/steps", parked, sync));
  GRPO_RETURN_IF_ERROR(rename_durably(parked, shard0));
  GRPO_LOG(kInfo) << "buffer: adopted the single-store buffer of " << dir << " as " << shard0;
  return ok_status();
}

}  // namespace

RolloutStore::RolloutStore(std::string dir, std::unique_ptr<rocksdb::DB> log, RolloutStoreOptions opts,
                           LogMeta meta, std::vector<std::unique_ptr<RolloutShard>> shards)
    : dir_(std::move(dir)), log_(std::move(log)), opts_(opts), shards_(std::move(shards)), meta_(meta) {}

RolloutStore::~RolloutStore() {
  shards_.clear();
  if (!log_) return;
  rocksdb::Status s = log_->Close();
  if (!s.ok()) GRPO_LOG(kWarn) << "closing the buffer's step log: " << s.ToString();
}

std::string RolloutStore::shard_name(int k) const {
  return "buffer shard " + std::to_string(k) + " (" + dir_ + "/shard-" + std::to_string(k) + ")";
}

RolloutShard& RolloutStore::shard_for(uint64_t group_id) const {
  return *shards_[static_cast<size_t>(shard_of(group_id, shards()))];
}

StatusOr<std::unique_ptr<RolloutStore>> RolloutStore::open(const std::string& dir, RolloutStoreOptions opts) {
  if (opts.shards < 1 || opts.shards > kMaxShards) {
    return invalid_argument("buffer shards = " + std::to_string(opts.shards) + " is outside [1, " +
                            std::to_string(kMaxShards) + "]");
  }
  GRPO_RETURN_IF_ERROR(adopt_single_store(dir, opts.shards, opts.sync_writes));
  const std::string log_dir = dir + "/steps";
  GRPO_ASSIGN_OR_RETURN(std::unique_ptr<rocksdb::DB> log, internal::open_db(log_dir, "buffer step log"));
  RolloutShardOptions shard_opts;
  shard_opts.sync_writes = opts.sync_writes;
  auto shard_dir = [&](int k) { return dir + "/shard-" + std::to_string(k); };
  auto open_shards = [&](bool must_exist) -> StatusOr<std::vector<std::unique_ptr<RolloutShard>>> {
    std::vector<std::unique_ptr<RolloutShard>> shards;
    for (int k = 0; k < opts.shards; ++k) {
      const std::string where = "buffer shard " + std::to_string(k) + " (" + shard_dir(k) + ")";
      if (must_exist && !path_exists(shard_dir(k))) {
        return data_loss(where + " is missing: the step log " + log_dir + " says the buffer has " +
                         std::to_string(opts.shards) + " shards");
      }
      auto shard = RolloutShard::open(shard_dir(k), shard_opts);
      if (!shard.ok()) return shard.status().with_context(where);
      shards.push_back(std::move(shard).value());
    }
    return shards;
  };

  LogMeta meta;
  std::vector<std::unique_ptr<RolloutShard>> shards;
  std::string value;
  rocksdb::Status s = log->Get(rocksdb::ReadOptions(), kMetaKey, &value);
  if (s.IsNotFound()) {
    // A new buffer: the shards are created first and the step log's metadata last, so once it exists
    // every shard does. Shards left by a creation that stopped before it are empty.
    GRPO_ASSIGN_OR_RETURN(shards, open_shards(/*must_exist=*/false));
    for (int k = 0; k < opts.shards; ++k) {
      const RolloutShardStats st = shards[static_cast<size_t>(k)]->stats();
      if (st.pending + st.consumed + st.evicted > 0 || st.cursor > 0) {
        return data_loss("buffer shard " + std::to_string(k) + " (" + shard_dir(k) +
                         ") holds groups but the buffer's step log " + log_dir + " is empty");
      }
    }
    meta.shards = static_cast<uint64_t>(opts.shards);
    rocksdb::WriteOptions wo;
    wo.sync = opts.sync_writes;
    GRPO_RETURN_IF_ERROR(from_rocksdb(log->Put(wo, kMetaKey, encode_meta(meta.shards, 0, 0, 0)),
                                      "initialise the step log " + log_dir));
  } else {
    GRPO_RETURN_IF_ERROR(from_rocksdb(s, "read the metadata of the step log " + log_dir));
    if (value.size() != kMetaSize) {
      return data_loss(std::string("corrupt step log metadata at key ") + kMetaKey + " in " + log_dir + ": " +
                       std::to_string(value.size()) + " bytes, expected " + std::to_string(kMetaSize));
    }
    const uint64_t format = get_be64(value.data());
    if (format != kLogFormatVersion) {
      return failed_precondition("buffer step log format " + std::to_string(format) + " in " + log_dir +
                                 " is not supported (this build reads format " +
                                 std::to_string(kLogFormatVersion) + ")");
    }
    meta.shards = get_be64(value.data() + 8);
    meta.cursor = get_be64(value.data() + 16);
    meta.logged_through = get_be64(value.data() + 24);
    meta.pruned_through = get_be64(value.data() + 32);
    if (meta.shards != static_cast<uint64_t>(opts.shards)) {
      return failed_precondition("buffer " + dir + " was created with " + std::to_string(meta.shards) +
                                 " shard(s), not buffer.shards = " + std::to_string(opts.shards) +
                                 " (groups are routed by id % shards, so the count cannot change)");
    }
    if (meta.cursor > meta.logged_through || meta.pruned_through > meta.cursor) {
      return data_loss("corrupt step log metadata in " + log_dir + ": pruned through " +
                       std::to_string(meta.pruned_through) + ", cursor " + std::to_string(meta.cursor) +
                       ", logged through " + std::to_string(meta.logged_through));
    }
    GRPO_ASSIGN_OR_RETURN(shards, open_shards(/*must_exist=*/true));
  }

  std::unique_ptr<RolloutStore> store(new RolloutStore(dir, std::move(log), opts, meta, std::move(shards)));
  // Recovery: a shard past the step log's cursor consumed a step whose commit did not finish.
  for (int k = 0; k < opts.shards; ++k) {
    const uint64_t c = store->shards_[static_cast<size_t>(k)]->cursor();
    if (c > meta.logged_through) {
      return data_loss(store->shard_name(k) + " consumed step " + std::to_string(c) +
                       ", which the step log (logged through step " + std::to_string(meta.logged_through) +
                       ") never recorded");
    }
    if (c > meta.cursor) {
      GRPO_LOG(kWarn) << "buffer: the commit of step " << c << " was interrupted; " << store->shard_name(k)
                      << " goes back to step " << meta.cursor << " and the step's batch waits for replay";
      Status r = store->shards_[static_cast<size_t>(k)]->rewind(meta.cursor);
      if (!r.ok()) return r.with_context(store->shard_name(k));
    }
  }
  return store;
}

Status RolloutStore::write_meta(const LogMeta& next, std::string_view what) {
  rocksdb::WriteOptions wo;
  wo.sync = opts_.sync_writes;
  GRPO_RETURN_IF_ERROR(from_rocksdb(
      log_->Put(wo, kMetaKey, encode_meta(next.shards, next.cursor, next.logged_through, next.pruned_through)),
      std::string(what) + " in the step log " + dir_ + "/steps"));
  meta_ = next;
  return ok_status();
}

StatusOr<bool> RolloutStore::put(uint64_t group_id, uint64_t version, std::string_view payload) {
  auto stored = shard_for(group_id).put(group_id, version, payload);
  if (!stored.ok()) return stored.status().with_context(shard_name(shard_of(group_id, shards())));
  return stored;
}

StatusOr<std::vector<StoredGroup>> RolloutStore::peek(uint64_t min_version, size_t n) const {
  std::vector<StoredGroup> out;
  if (n == 0) return out;
  // Each shard's first n are its n lowest ids; the n lowest of their union are the answer.
  for (int k = 0; k < shards(); ++k) {
    auto groups = shards_[static_cast<size_t>(k)]->peek(min_version, n);
    if (!groups.ok()) return groups.status().with_context(shard_name(k));
    for (auto& g : *groups) out.push_back(std::move(g));
  }
  std::sort(out.begin(), out.end(),
            [](const StoredGroup& a, const StoredGroup& b) { return a.group_id < b.group_id; });
  if (out.size() > n) out.resize(n);
  return out;
}

StatusOr<std::optional<std::vector<uint64_t>>> RolloutStore::read_intent(uint64_t step) const {
  std::string value;
  const std::string key = intent_key(step);
  rocksdb::Status s = log_->Get(rocksdb::ReadOptions(), key, &value);
  if (s.IsNotFound()) return std::optional<std::vector<uint64_t>>();
  GRPO_RETURN_IF_ERROR(from_rocksdb(s, "read the intent of step " + std::to_string(step)));
  GRPO_ASSIGN_OR_RETURN(std::vector<uint64_t> ids, decode_ids(step, value));
  return std::optional<std::vector<uint64_t>>(std::move(ids));
}

StatusOr<std::vector<uint64_t>> RolloutStore::waiting_intent_steps() const {
  std::vector<uint64_t> steps;
  if (meta_.logged_through <= meta_.cursor) return steps;
  rocksdb::ReadOptions ro;
  const std::string end = "s0";  // the byte after '/'
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(log_->NewIterator(ro));
  for (it->Seek(intent_key(meta_.cursor + 1)); it->Valid(); it->Next()) {
    if (it->key().size() != kIntentKeySize) {
      return data_loss("corrupt intent key " + internal::printable_key(std::string_view(it->key().data(), it->key().size())) +
                       " in the step log " + dir_ + "/steps");
    }
    steps.push_back(get_be64(it->key().data() + 2));
  }
  GRPO_RETURN_IF_ERROR(from_rocksdb(it->status(), "scan the step log " + dir_ + "/steps"));
  return steps;
}

StatusOr<std::vector<StoredGroup>> RolloutStore::read_groups(const std::vector<uint64_t>& ids) const {
  std::vector<StoredGroup> out;
  out.reserve(ids.size());
  for (uint64_t id : ids) {
    auto g = shard_for(id).read(id);
    if (!g.ok()) return g.status().with_context(shard_name(shard_of(id, shards())));
    out.push_back(std::move(g).value());
  }
  return out;
}

StatusOr<std::vector<uint64_t>> RolloutStore::batch_ids(uint64_t step) const {
  GRPO_ASSIGN_OR_RETURN(auto ids, read_intent(step));
  if (!ids) return not_found("the step log has no batch for step " + std::to_string(step));
  return std::move(*ids);
}

Status RolloutStore::log_intent_locked(uint64_t step, const std::vector<uint64_t>& group_ids) {
  const std::string what = "log the batch of step " + std::to_string(step);
  if (group_ids.empty()) return invalid_argument(what + ": no group ids");
  std::vector<uint64_t> sorted = group_ids;
  std::sort(sorted.begin(), sorted.end());
  auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup != sorted.end()) {
    return invalid_argument(what + ": group " + std::to_string(*dup) + " listed twice");
  }
  if (step <= meta_.logged_through) {
    return failed_precondition(what + ": the step log already holds step " + std::to_string(meta_.logged_through));
  }
  if (meta_.logged_through > meta_.cursor) {
    return failed_precondition(what + ": the batches of steps " + std::to_string(meta_.cursor + 1) + ".." +
                               std::to_string(meta_.logged_through) + " wait for replay");
  }
  for (uint64_t id : sorted) {
    auto info = shard_for(id).lookup(id);
    if (info.status().code() == StatusCode::kNotFound) {
      return failed_precondition(what + ": group " + std::to_string(id) + " is unknown");
    }
    if (!info.ok()) return info.status().with_context(shard_name(shard_of(id, shards())));
    if (info->state != GroupState::kPending) {
      std::string detail = group_state_name(info->state);
      if (info->state == GroupState::kConsumed) detail += " by step " + std::to_string(info->consume_step);
      return failed_precondition(what + ": group " + std::to_string(id) + " is " + detail);
    }
  }
  rocksdb::WriteBatch batch;
  GRPO_RETURN_IF_ERROR(from_rocksdb(batch.Put(intent_key(step), encode_ids(sorted)), what));
  LogMeta next = meta_;
  next.logged_through = step;
  GRPO_RETURN_IF_ERROR(from_rocksdb(
      batch.Put(kMetaKey, encode_meta(next.shards, next.cursor, next.logged_through, next.pruned_through)), what));
  rocksdb::WriteOptions wo;
  wo.sync = opts_.sync_writes;
  GRPO_RETURN_IF_ERROR(from_rocksdb(log_->Write(wo, &batch), what + " in the step log " + dir_ + "/steps"));
  meta_ = next;
  return ok_status();
}

Status RolloutStore::commit_one_locked(uint64_t step, const std::vector<uint64_t>& ids) {
  std::vector<std::vector<uint64_t>> by_shard(shards_.size());
  for (uint64_t id : ids) by_shard[static_cast<size_t>(shard_of(id, shards()))].push_back(id);
  for (int k = 0; k < shards(); ++k) {
    const auto& mine = by_shard[static_cast<size_t>(k)];
    if (mine.empty()) continue;
    RolloutShard& shard = *shards_[static_cast<size_t>(k)];
    const uint64_t c = shard.cursor();
    if (c == step) continue;  // consumed by an earlier attempt of this commit
    if (c > step) {
      return data_loss(shard_name(k) + " is at step " + std::to_string(c) + ", past step " +
                       std::to_string(step) + " being committed");
    }
    Status s = shard.consume(step, mine);
    if (!s.ok()) return s.with_context(shard_name(k));
  }
  LogMeta next = meta_;
  next.cursor = step;
  return write_meta(next, "commit step " + std::to_string(step));
}

Status RolloutStore::commit_locked(uint64_t through_step) {
  GRPO_ASSIGN_OR_RETURN(std::vector<uint64_t> steps, waiting_intent_steps());
  for (uint64_t step : steps) {
    if (step > through_step) break;
    GRPO_ASSIGN_OR_RETURN(auto ids, read_intent(step));
    if (!ids) return data_loss("the intent of step " + std::to_string(step) + " vanished from the step log");
    GRPO_RETURN_IF_ERROR(commit_one_locked(step, *ids));
  }
  return ok_status();
}

Status RolloutStore::log_intent(uint64_t step, const std::vector<uint64_t>& group_ids) {
  std::lock_guard<std::mutex> lock(mu_);
  return log_intent_locked(step, group_ids);
}

Status RolloutStore::commit_intents(uint64_t through_step) {
  std::lock_guard<std::mutex> lock(mu_);
  return commit_locked(through_step);
}

Status RolloutStore::consume(uint64_t step, const std::vector<uint64_t>& group_ids) {
  std::lock_guard<std::mutex> lock(mu_);
  GRPO_RETURN_IF_ERROR(log_intent_locked(step, group_ids));
  return commit_locked(step);
}

StatusOr<std::optional<std::vector<StoredGroup>>> RolloutStore::take_batch(uint64_t step, uint64_t min_version,
                                                                          size_t n) {
  using Result = std::optional<std::vector<StoredGroup>>;
  if (step == 0) return invalid_argument("batch request for step 0: learner steps start at 1");
  std::lock_guard<std::mutex> lock(mu_);
  if (step <= meta_.cursor) {
    // Committed before: the same groups again, nothing changes.
    if (step <= meta_.pruned_through) {
      return failed_precondition("the batch of step " + std::to_string(step) +
                                 " was pruned: the buffer keeps the batches of steps after " +
                                 std::to_string(meta_.pruned_through));
    }
    GRPO_ASSIGN_OR_RETURN(auto ids, read_intent(step));
    if (!ids) {
      return failed_precondition("step " + std::to_string(step) + " was never served (the cursor is at step " +
                                 std::to_string(meta_.cursor) + ")");
    }
    GRPO_ASSIGN_OR_RETURN(std::vector<StoredGroup> groups, read_groups(*ids));
    return Result(std::move(groups));
  }
  // Asking for `step` acknowledges every earlier step.
  GRPO_RETURN_IF_ERROR(commit_locked(step - 1));
  GRPO_ASSIGN_OR_RETURN(auto waiting, read_intent(step));
  if (waiting) {
    GRPO_RETURN_IF_ERROR(commit_one_locked(step, *waiting));
    GRPO_ASSIGN_OR_RETURN(std::vector<StoredGroup> groups, read_groups(*waiting));
    return Result(std::move(groups));
  }
  if (n == 0) return invalid_argument("batch request for step " + std::to_string(step) + " of no groups");
  GRPO_ASSIGN_OR_RETURN(std::vector<StoredGroup> groups, peek(min_version, n));
  if (groups.size() < n) return Result();
  std::vector<uint64_t> ids;
  for (const auto& g : groups) ids.push_back(g.group_id);
  GRPO_RETURN_IF_ERROR(log_intent_locked(step, ids));
  GRPO_RETURN_IF_ERROR(commit_one_locked(step, ids));
  return Result(std::move(groups));
}

Status RolloutStore::rewind_shards_locked(uint64_t step) {
  for (int k = 0; k < shards(); ++k) {
    RolloutShard& shard = *shards_[static_cast<size_t>(k)];
    if (shard.cursor() <= step) continue;
    Status s = shard.rewind(step);
    if (!s.ok()) return s.with_context(shard_name(k));
  }
  return ok_status();
}

Status RolloutStore::rewind(uint64_t step) {
  std::lock_guard<std::mutex> lock(mu_);
  if (step > meta_.cursor) {
    return failed_precondition("rewind to step " + std::to_string(step) + ": the cursor is only at step " +
                               std::to_string(meta_.cursor));
  }
  if (step == meta_.cursor) return ok_status();
  if (step < meta_.pruned_through) {
    return failed_precondition("rewind to step " + std::to_string(step) + ": payloads consumed through step " +
                               std::to_string(meta_.pruned_through) + " were pruned");
  }
  // The cursor first: should the shards' rewinds not all happen, the next open finishes them.
  LogMeta next = meta_;
  next.cursor = step;
  GRPO_RETURN_IF_ERROR(write_meta(next, "rewind to step " + std::to_string(step)));
  return rewind_shards_locked(step);
}

uint64_t RolloutStore::cursor() const {
  std::lock_guard<std::mutex> lock(mu_);
  return meta_.cursor;
}

StatusOr<uint64_t> RolloutStore::max_group_id() const {
  uint64_t best = 0;
  for (int k = 0; k < shards(); ++k) {
    auto id = shards_[static_cast<size_t>(k)]->max_group_id();
    if (!id.ok()) return id.status().with_context(shard_name(k));
    best = std::max(best, *id);
  }
  return best;
}

StatusOr<size_t> RolloutStore::evict_stale(uint64_t min_version) {
  std::lock_guard<std::mutex> lock(mu_);
  if (meta_.logged_through > meta_.cursor) return size_t{0};
  size_t evicted = 0;
  for (int k = 0; k < shards(); ++k) {
    auto n = shards_[static_cast<size_t>(k)]->evict_stale(min_version);
    if (!n.ok()) return n.status().with_context(shard_name(k));
    evicted += *n;
  }
  return evicted;
}

StatusOr<size_t> RolloutStore::discard(const std::vector<uint64_t>& group_ids) {
  std::lock_guard<std::mutex> lock(mu_);
  std::set<uint64_t> held;
  GRPO_ASSIGN_OR_RETURN(std::vector<uint64_t> steps, waiting_intent_steps());
  for (uint64_t step : steps) {
    GRPO_ASSIGN_OR_RETURN(auto ids, read_intent(step));
    if (ids) held.insert(ids->begin(), ids->end());
  }
  std::vector<std::vector<uint64_t>> by_shard(shards_.size());
  for (uint64_t id : group_ids) {
    if (held.count(id) == 0) by_shard[static_cast<size_t>(shard_of(id, shards()))].push_back(id);
  }
  size_t evicted = 0;
  for (int k = 0; k < shards(); ++k) {
    if (by_shard[static_cast<size_t>(k)].empty()) continue;
    auto n = shards_[static_cast<size_t>(k)]->discard(by_shard[static_cast<size_t>(k)]);
    if (!n.ok()) return n.status().with_context(shard_name(k));
    evicted += *n;
  }
  return evicted;
}

Status RolloutStore::prune_consumed(uint64_t up_to_step) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t through = std::min(up_to_step, meta_.cursor);
  if (through <= meta_.pruned_through) return ok_status();
  // Shards first: should the step log's write not happen, the next prune repeats theirs harmlessly.
  for (int k = 0; k < shards(); ++k) {
    Status s = shards_[static_cast<size_t>(k)]->prune_consumed(through);
    if (!s.ok()) return s.with_context(shard_name(k));
  }
  const std::string what = "prune the step log through step " + std::to_string(through);
  rocksdb::WriteBatch batch;
  rocksdb::ReadOptions ro;
  const std::string end = intent_key(through + 1);
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(log_->NewIterator(ro));
  for (it->Seek(intent_key(0)); it->Valid(); it->Next()) {
    GRPO_RETURN_IF_ERROR(from_rocksdb(batch.Delete(it->key()), what));
  }
  GRPO_RETURN_IF_ERROR(from_rocksdb(it->status(), what));
  LogMeta next = meta_;
  next.pruned_through = through;
  GRPO_RETURN_IF_ERROR(from_rocksdb(
      batch.Put(kMetaKey, encode_meta(next.shards, next.cursor, next.logged_through, next.pruned_through)), what));
  rocksdb::WriteOptions wo;
  wo.sync = opts_.sync_writes;
  GRPO_RETURN_IF_ERROR(from_rocksdb(log_->Write(wo, &batch), what + " in " + dir_ + "/steps"));
  meta_ = next;
  return ok_status();
}

StatusOr<GroupInfo> RolloutStore::lookup(uint64_t group_id) const {
  auto info = shard_for(group_id).lookup(group_id);
  if (!info.ok() && info.status().code() != StatusCode::kNotFound) {
    return info.status().with_context(shard_name(shard_of(group_id, shards())));
  }
  return info;
}

RolloutStoreStats RolloutStore::stats() const {
  RolloutStoreStats out;
  out.shards = shards();
  for (const auto& shard : shards_) {
    const RolloutShardStats s = shard->stats();
    out.pending += s.pending;
    out.consumed += s.consumed;
    out.evicted += s.evicted;
    out.pending_bytes += s.pending_bytes;
  }
  out.accepted = out.pending + out.consumed + out.evicted;
  std::lock_guard<std::mutex> lock(mu_);
  out.cursor = meta_.cursor;
  out.logged_through = meta_.logged_through;
  out.pruned_through = meta_.pruned_through;
  return out;
}

}  // namespace grpo::storage
