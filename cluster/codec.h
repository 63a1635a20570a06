// Converts the message value types of cluster/messages.h to and from bytes on the wire, and splits
// a weight blob into checksummed chunks and back.
//
// Wire format: every message is one Cap'n Proto `Envelope` (cluster/messages.capnp) holding the
// schema version and a union of the message bodies, serialized as an UNPACKED flat array (the
// standard segment table followed by the segments, as capnp::writeMessage produces). Unpacked
// because the largest messages (weight chunks) are incompressible binary that packing would only
// slow down. No Cap'n Proto type appears in this header.
//
// decode() treats its input as hostile: it never crashes and never throws. It returns
//   - InvalidArgument for a message that is well formed but not acceptable: too large, the wrong
//     kind, another schema version, an unknown union member, inconsistent lengths (a Completion
//     whose token_ids / logprobs / versions differ in length, a ScoredGroup whose rewards do not
//     match its completions one to one), a list of group ids longer than kMaxReportedGroupIds
//     (Heartbeat.stored_ids, StoredQuery.ids);
//   - DataLoss for bytes that are not a valid message: empty, truncated, misaligned length, garbage
//     pointers, trailing bytes, or a Cap'n Proto traversal / nesting limit exceeded.
//
// Thread safety: the free functions are pure and may be called from any thread. A WeightAssembler
// is owned by one thread (its owner) and is not synchronized.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "cluster/messages.h"

namespace grpo::cluster {

// The kinds of top-level messages (one per Envelope.body member).
enum class MessageKind {
  kLeaseRequest,
  kPromptLease,
  kRolloutGroup,
  kScoredGroup,
  kTrainBatchRequest,
  kTrainBatch,
  kWeightManifest,
  kWeightChunk,
  kHeartbeat,
  kLeaseGrant,
  kAdminRequest,
  kAdminReply,
  kWeightChunkRequest,
  kStoredQuery,
  // NCCL group set-up (cluster/nccl_group.h), numbered apart from the kinds above.
  kNcclGroupRequest = 20,
  kNcclGroup = 21,
};

// "LeaseRequest", "PromptLease", ...
const char* message_kind_name(MessageKind kind);

// Largest encoded message decode() accepts.
constexpr size_t kMaxMessageBytes = size_t{512} << 20;  // 512 MiB
// Largest weight chunk make_chunks() produces (4-64 MiB chunks are the sensible range).
constexpr uint32_t kMaxChunkBytes = uint32_t{256} << 20;  // 256 MiB
// Deepest struct / list nesting decode() follows (the schema itself needs about 8).
constexpr int kMaxNestingDepth = 16;
// Most group ids one Heartbeat.stored_ids or StoredQuery.ids may carry (senders split longer lists).
constexpr size_t kMaxReportedGroupIds = 4096;

struct DecodeOptions {
  size_t max_message_bytes = kMaxMessageBytes;
  // Cap'n Proto traversal limit in 8-byte words. 0 = automatic: 4 x the message's own size in words
  // (+ 1024), so that a small hostile message whose pointers alias one big object cannot make
  // decode() read (and allocate) far more than it received.
  uint64_t traversal_limit_words = 0;
  int nesting_limit = kMaxNestingDepth;
};

// Encoding does not fail for any message decode() would accept; the result is what decode() of
// the same type reads back. A list or blob beyond Cap'n Proto's limit (2^29 - 1 elements) is a
// GRPO_CHECK failure, which is why weight chunks are capped at kMaxChunkBytes.
std::string encode(const LeaseRequest& m);
std::string encode(const PromptLease& m);
std::string encode(const RolloutGroup& m);
std::string encode(const ScoredGroup& m);
std::string encode(const TrainBatchRequest& m);
std::string encode(const TrainBatch& m);
std::string encode(const WeightManifest& m);
std::string encode(const WeightChunk& m);
std::string encode(const Heartbeat& m);
std::string encode(const LeaseGrant& m);
std::string encode(const AdminRequest& m);
std::string encode(const AdminReply& m);
std::string encode(const WeightChunkRequest& m);
std::string encode(const StoredQuery& m);

// Reads only the envelope (size, framing, schema version, which body) without decoding the body,
// so a receiver can dispatch on it.
StatusOr<MessageKind> peek_kind(std::string_view bytes, const DecodeOptions& options = {});

// Decodes `bytes` into `*out`. On error `*out` is left unspecified (possibly partly written).
Status decode(std::string_view bytes, LeaseRequest* out, const DecodeOptions& options = {});
Status decode(std::string_view bytes, PromptLease* out, const DecodeOptions& options = {});
Status decode(std::string_view bytes, RolloutGroup* out, const DecodeOptions& options = {});
Status decode(std::string_view bytes, ScoredGroup* out, const DecodeOptions& options = {});
Status decode(std::string_view bytes, TrainBatchRequest* out, const DecodeOptions& options = {});
Status decode(std::string_view bytes, TrainBatch* out, const DecodeOptions& options = {});
Status decode(std::string_view bytes, WeightManifest* out, const DecodeOptions& options = {});
Status decode(std::string_view bytes, WeightChunk* out, const DecodeOptions& options = {});
Status decode(std::string_view bytes, Heartbeat* out, const DecodeOptions& options = {});
Status decode(std::string_view bytes, LeaseGrant* out, const DecodeOptions& options = {});
Status decode(std::string_view bytes, AdminRequest* out, const DecodeOptions& options = {});
Status decode(std::string_view bytes, AdminReply* out, const DecodeOptions& options = {});
Status decode(std::string_view bytes, WeightChunkRequest* out, const DecodeOptions& options = {});
Status decode(std::string_view bytes, StoredQuery* out, const DecodeOptions& options = {});

// A WeightChunk read in place: `data` points into the encoded message, so a relay can check and
// store a chunk without copying its payload, then forward the same bytes.
struct WeightChunkView {
  uint64_t version = 0;
  uint32_t index = 0;
  uint64_t checksum = 0;
  std::string_view data;  // valid while the decoded bytes are
};
// Decodes a WeightChunk without copying its data. `bytes` must be 8-byte aligned (any heap
// std::string is); InvalidArgument otherwise, besides decode()'s errors.
Status decode(std::string_view bytes, WeightChunkView* out, const DecodeOptions& options = {});

// NCCL group set-up (cluster/nccl_group.h). Besides the errors above, decode() refuses with
// InvalidArgument a unique id that is neither empty nor kNcclUniqueIdBytes long, more than
// kMaxNcclGroupMembers members, a member name longer than kMaxNcclMemberNameBytes, piece_bytes
// above kMaxNcclPieceBytes, an error text longer than kMaxNcclErrorBytes, and an NcclGroup whose
// rank is outside [-1, members) or that gives a rank without a unique id.
std::string encode(const NcclGroupRequest& m);
std::string encode(const NcclGroup& m);
Status decode(std::string_view bytes, NcclGroupRequest* out, const DecodeOptions& options = {});
Status decode(std::string_view bytes, NcclGroup* out, const DecodeOptions& options = {});

// XXH64 of `data` with seed 0: the checksum of weight chunks.
uint64_t checksum64(std::string_view data);

// Splits `blob` into ceil(size / chunk_bytes) chunks of `chunk_bytes` (the last may be shorter;
// an empty blob gives no chunks), each carrying `version`, its index and its checksum. Fills
// manifest->version, total_bytes, chunk_bytes and chunk_checksums; leaves manifest->tensors to the
// caller. `chunk_bytes` must be in [1, kMaxChunkBytes] and `manifest` non-null (GRPO_CHECK).
std::vector<WeightChunk> make_chunks(uint64_t version, std::string_view blob, uint32_t chunk_bytes,
                                     WeightManifest* manifest);

// The consistency checks of a manifest (WeightAssembler::begin makes them; a relay that only
// verifies and forwards makes them without assembling): total_bytes within max_total_bytes,
// chunk_bytes not 0 when there are bytes, at most 2^32 chunks, one checksum per chunk, and every
// tensor inside the blob. InvalidArgument naming the version and the fault.
Status check_weight_manifest(const WeightManifest& manifest, uint64_t max_total_bytes);

// Reassembles the blob of one weight version from its manifest and chunks arriving in any order.
//
//   WeightAssembler a;
//   GRPO_RETURN_IF_ERROR(a.begin(manifest));
//   for each chunk received: if (!a.add_chunk(chunk).ok()) fetch that chunk again;
//   if (a.complete()) { GRPO_ASSIGN_OR_RETURN(std::string blob, a.take_blob()); ... }
//
// A rejected chunk changes nothing, so it can simply be fetched again. Duplicates of an accepted
// chunk are ignored (OK). begin() discards whatever was being assembled. Not thread-safe: owned
// and called by one thread.
class WeightAssembler {
 public:
  // Largest blob a manifest may announce (protects against a manifest that asks for absurd
  // amounts of memory).
  static constexpr uint64_t kDefaultMaxTotalBytes = uint64_t{1} << 40;  // 1 TiB

  explicit WeightAssembler(uint64_t max_total_bytes = kDefaultMaxTotalBytes);

  // Starts assembling `manifest.version`. InvalidArgument when the manifest is inconsistent
  // (chunk count vs total_bytes / chunk_bytes, a tensor outside the blob, too large); OutOfRange
  // when the blob cannot be allocated.
  Status begin(const WeightManifest& manifest);

  // FailedPrecondition before begin(); InvalidArgument for another version or an index out of
  // range; DataLoss for a wrong size or checksum (both the manifest's and the chunk's own).
  Status add_chunk(const WeightChunk& chunk);
  Status add_chunk(const WeightChunkView& chunk);  // the same, from a chunk read in place

  bool started() const { return started_; }
  bool complete() const { return started_ && received_ == num_chunks_; }
  uint64_t version() const { return manifest_.version; }
  const WeightManifest& manifest() const { return manifest_; }
  uint32_t chunks_received() const { return received_; }
  uint32_t chunks_total() const { return num_chunks_; }
  // Indices not yet accepted, ascending.
  std::vector<uint32_t> missing_chunks() const;

  // Moves the finished blob out and resets the assembler (started() becomes false).
  // FailedPrecondition while incomplete.
  StatusOr<std::string> take_blob();

  // Hands back a buffer (normally a blob taken earlier) for the next begin() to write into when it
  // is large enough, instead of allocating: each fresh page of a new blob costs a page fault, which
  // for a large version takes longer than receiving it. Keeps one buffer.
  void recycle(std::string buffer) { spare_ = std::move(buffer); }

 private:
  uint64_t max_total_bytes_;
  bool started_ = false;
  WeightManifest manifest_;
  uint32_t num_chunks_ = 0;
  uint32_t received_ = 0;
  std::vector<bool> have_;
  std::string blob_;
  std::string spare_;  // see recycle()
};

}  // namespace grpo::cluster
