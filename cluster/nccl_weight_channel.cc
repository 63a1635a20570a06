#include "cluster/nccl_weight_channel.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>
#include <utility>

#include "cluster/codec.h"

namespace grpo::cluster {
namespace {

// "GRPONCW1" read as a little-endian uint64: the first word of every header.
constexpr uint64_t kHeaderMagic = 0x3157434E4F505247ull;
constexpr uint64_t kGo = 0;
constexpr uint64_t kAbort = 1;

// The header, as eight uint64 words (the ranks of one group run on hosts of one byte order).
struct Header {
  uint64_t magic = kHeaderMagic;
  uint64_t flag = kGo;
  uint64_t version = 0;
  uint64_t total_bytes = 0;
  uint64_t chunk_bytes = 0;
  uint64_t num_chunks = 0;
  uint64_t piece_bytes = 0;
  uint64_t digest = 0;  // checksum64 of the manifest's checksum list
};
static_assert(sizeof(Header) == kNcclWeightHeaderBytes, "the header is 8 words");

uint64_t checksums_digest(const WeightManifest& m) {
  return checksum64(std::string_view(reinterpret_cast<const char*>(m.chunk_checksums.data()),
                                     m.chunk_checksums.size() * sizeof(uint64_t)));
}

std::string bad_list(const std::vector<uint32_t>& bad) {
  std::string out;
  const size_t shown = std::min<size_t>(bad.size(), 16);
  for (size_t i = 0; i < shown; ++i) out += (i ? ", " : "") + std::to_string(bad[i]);
  if (shown < bad.size()) out += ", ... (" + std::to_string(bad.size() - shown) + " more)";
  return out;
}

std::string rank_text(int rank, int world) {
  return "rank " + std::to_string(rank) + " of " + std::to_string(world);
}

// What differs between the root's header and this receiver's manifest ("" when nothing does).
std::string header_mismatch(const Header& h, const WeightManifest& m) {
  auto field = [](const char* name, uint64_t root, uint64_t mine) {
    return std::string(name) + " " + std::to_string(root) + " (the root's) vs " + std::to_string(mine);
  };
  if (h.version != m.version) return field("version", h.version, m.version);
  if (h.total_bytes != m.total_bytes) return field("total_bytes", h.total_bytes, m.total_bytes);
  if (h.chunk_bytes != m.chunk_bytes) return field("chunk_bytes", h.chunk_bytes, m.chunk_bytes);
  if (h.num_chunks != m.chunk_checksums.size())
    return field("chunk count", h.num_chunks, m.chunk_checksums.size());
  if (h.digest != checksums_digest(m)) return "the chunk checksums differ";
  return "";
}

}  // namespace

uint64_t NcclPiecePlan::piece_size(uint32_t i) const {
  const uint64_t offset = piece_offset(i);
  return offset >= total_bytes ? 0 : std::min(piece_bytes(), total_bytes - offset);
}

namespace {

// The plan of a layout (see plan_nccl_pieces), from its numbers alone.
StatusOr<NcclPiecePlan> plan_layout(uint64_t version, uint64_t total_bytes, uint64_t chunk_bytes,
                                    uint64_t num_checksums, uint64_t capacity) {
  const std::string what = "manifest v" + std::to_string(version) + ": ";
  if (chunk_bytes == 0 || chunk_bytes > kMaxChunkBytes)
    return invalid_argument(what + "chunk_bytes " + std::to_string(chunk_bytes) + " not in [1, " +
                            std::to_string(kMaxChunkBytes) + "]");
  const uint64_t chunks = total_bytes / chunk_bytes + (total_bytes % chunk_bytes != 0 ? 1 : 0);
  if (chunks != num_checksums)
    return invalid_argument(what + std::to_string(num_checksums) + " chunk checksums for " +
                            std::to_string(total_bytes) + " bytes in chunks of " + std::to_string(chunk_bytes) +
                            " (" + std::to_string(chunks) + " chunks)");
  if (chunks > UINT32_MAX) return invalid_argument(what + std::to_string(chunks) + " chunks are too many");
  if (chunk_bytes > capacity)
    return invalid_argument(what + "chunk_bytes " + std::to_string(chunk_bytes) +
                            " exceeds the device staging buffer of " + std::to_string(capacity) + " bytes");
  NcclPiecePlan plan;
  plan.total_bytes = total_bytes;
  plan.chunk_bytes = static_cast<uint32_t>(chunk_bytes);
  plan.num_chunks = static_cast<uint32_t>(chunks);
  const uint64_t per_piece = std::max<uint64_t>(1, std::min<uint64_t>(capacity / chunk_bytes, chunks));
  plan.chunks_per_piece = static_cast<uint32_t>(per_piece);
  plan.num_pieces = static_cast<uint32_t>((chunks + per_piece - 1) / per_piece);
  return plan;
}

}  // namespace

StatusOr<NcclPiecePlan> plan_nccl_pieces(const WeightManifest& m, uint64_t capacity) {
  return plan_layout(m.version, m.total_bytes, m.chunk_bytes, m.chunk_checksums.size(), capacity);
}

uint32_t verify_nccl_piece(const WeightManifest& m, const NcclPiecePlan& plan, uint32_t piece,
                           std::string_view bytes, std::vector<uint32_t>* bad) {
  GRPO_CHECK(bad != nullptr && piece < plan.num_pieces && bytes.size() == plan.piece_size(piece));
  GRPO_CHECK(m.chunk_checksums.size() == plan.num_chunks);
  uint32_t n = 0;
  const uint32_t first = plan.first_chunk(piece);
  const uint32_t last = std::min(plan.num_chunks, first + plan.chunks_per_piece);
  for (uint32_t c = first; c < last; ++c) {
    const uint64_t at = uint64_t{c - first} * plan.chunk_bytes;
    const std::string_view chunk = bytes.substr(at, std::min<uint64_t>(plan.chunk_bytes, bytes.size() - at));
    if (checksum64(chunk) != m.chunk_checksums[c]) {
      bad->push_back(c);
      ++n;
    }
  }
  return n;
}

StatusOr<std::unique_ptr<NcclWeightChannel>> NcclWeightChannel::create(
    std::unique_ptr<DeviceBroadcast> device, NcclWeightChannelOptions options) {
  if (device == nullptr) return invalid_argument("NcclWeightChannel: no device broadcast");
  if (device->capacity() < kNcclWeightHeaderBytes)
    return invalid_argument("NcclWeightChannel: staging capacity " + std::to_string(device->capacity()) +
                            " is below the " + std::to_string(kNcclWeightHeaderBytes) + "-byte header");
  if (options.root < 0 || options.root >= device->world())
    return invalid_argument("NcclWeightChannel: root " + std::to_string(options.root) + " not in [0, " +
                            std::to_string(device->world()) + ")");
  return std::unique_ptr<NcclWeightChannel>(new NcclWeightChannel(std::move(device), options));
}

NcclWeightChannel::NcclWeightChannel(std::unique_ptr<DeviceBroadcast> device,
                                     NcclWeightChannelOptions options)
    : device_(std::move(device)), options_(options) {}

Status NcclWeightChannel::broadcast(const char* send, char* recv, uint64_t bytes) {
  Status s = device_->broadcast(send, recv, bytes, options_.root);
  if (!s.ok()) ++stats_.failures;
  return s;
}

Status NcclWeightChannel::send(const WeightManifest& manifest, std::string_view blob) {
  const std::string who = "NcclWeightChannel send v" + std::to_string(manifest.version) + " (" +
                          rank_text(rank(), world()) + ")";
  if (rank() != options_.root) return failed_precondition(who + ": only the root sends");
  Header h;
  h.version = manifest.version;
  h.total_bytes = manifest.total_bytes;
  h.chunk_bytes = manifest.chunk_bytes;
  h.num_chunks = manifest.chunk_checksums.size();
  h.digest = checksums_digest(manifest);
  auto plan = plan_nccl_pieces(manifest, capacity());
  Status problem = plan.status();
  if (problem.ok() && blob.size() != manifest.total_bytes)
    problem = invalid_argument("blob of " + std::to_string(blob.size()) + " bytes, manifest says " +
                               std::to_string(manifest.total_bytes));
  if (!problem.ok()) {
    // The receivers are waiting for a header: tell them this version is off, then stop.
    h.flag = kAbort;
    Status sent = broadcast(reinterpret_cast<const char*>(&h), nullptr, sizeof(h));
    ++stats_.aborted;
    if (!sent.ok()) return Status(problem.code(), who + ": " + problem.message() + "; telling the receivers failed too: " + sent.message());
    return problem.with_context(who);
  }
  h.piece_bytes = plan->piece_bytes();
  GRPO_RETURN_IF_ERROR(broadcast(reinterpret_cast<const char*>(&h), nullptr, sizeof(h)).with_context(who));

  std::vector<uint32_t> bad;
  if (options_.verify_root && scratch_.size() < capacity()) scratch_.resize(capacity());
  for (uint32_t i = 0; i < plan->num_pieces; ++i) {
    const uint64_t size = plan->piece_size(i);
    const char* data = blob.data() + plan->piece_offset(i);
    char* back = options_.verify_root ? &scratch_[0] : nullptr;
    Status s = broadcast(data, back, size);
    if (!s.ok()) return s.with_context(who + " piece " + std::to_string(i) + " of " + std::to_string(plan->num_pieces));
    ++stats_.pieces;
    if (back != nullptr) verify_nccl_piece(manifest, *plan, i, std::string_view(back, size), &bad);
  }
  stats_.bytes += manifest.total_bytes;
  if (!bad.empty()) {
    stats_.corrupt_chunks += bad.size();
    return data_loss(who + ": " + std::to_string(bad.size()) + " of " + std::to_string(plan->num_chunks) +
                     " chunks changed on the root's device: " + bad_list(bad));
  }
  ++stats_.versions_sent;
  return ok_status();
}

Status NcclWeightChannel::receive(const WeightManifest& manifest, std::string* blob,
                                  std::vector<uint32_t>* bad_chunks) {
  GRPO_CHECK(blob != nullptr);
  if (bad_chunks != nullptr) bad_chunks->clear();
  const std::string who = "NcclWeightChannel receive v" + std::to_string(manifest.version) + " (" +
                          rank_text(rank(), world()) + ")";
  if (rank() == options_.root) return failed_precondition(who + ": the root does not receive");
  Header h;
  GRPO_RETURN_IF_ERROR(broadcast(nullptr, reinterpret_cast<char*>(&h), sizeof(h)).with_context(who + " header"));
  if (h.magic != kHeaderMagic)
    return data_loss(who + ": the header broadcast did not hold a header (magic " + std::to_string(h.magic) + ")");
  if (h.flag == kAbort) {
    ++stats_.aborted;
    return unavailable(who + ": the root aborted version " + std::to_string(h.version));
  }
  if (h.flag != kGo) return data_loss(who + ": header flag " + std::to_string(h.flag));

  // The pieces follow the root's header, whatever this rank's manifest says, so that every rank
  // makes the same calls.
  auto plan = h.piece_bytes <= capacity()
                  ? plan_layout(h.version, h.total_bytes, h.chunk_bytes, h.num_chunks, h.piece_bytes)
                  : StatusOr<NcclPiecePlan>(invalid_argument("larger than the staging buffer"));
  if (!plan.ok() || plan->piece_bytes() != h.piece_bytes) {
    // Cannot follow the root (a staging buffer smaller than the root's pieces, or a header out of
    // range): the other ranks' next broadcast fails on their timeout.
    return failed_precondition(who + ": cannot follow the root's pieces of " + std::to_string(h.piece_bytes) +
                               " bytes with a staging buffer of " + std::to_string(capacity()) + " bytes" +
                               (plan.ok() ? std::string() : " (" + plan.status().message() + ")"));
  }
  std::string mismatch = header_mismatch(h, manifest);
  if (mismatch.empty()) {
    try {
      blob->resize(manifest.total_bytes);
    } catch (const std::bad_alloc&) {
      mismatch = "no memory for a blob of " + std::to_string(manifest.total_bytes) + " bytes";
    } catch (const std::length_error&) {
      mismatch = "no memory for a blob of " + std::to_string(manifest.total_bytes) + " bytes";
    }
  }

  std::vector<uint32_t> bad;
  for (uint32_t i = 0; i < plan->num_pieces; ++i) {
    const uint64_t size = plan->piece_size(i);
    char* dst = mismatch.empty() ? &(*blob)[0] + plan->piece_offset(i) : nullptr;
    Status s = broadcast(nullptr, dst, size);
    if (!s.ok()) return s.with_context(who + " piece " + std::to_string(i) + " of " + std::to_string(plan->num_pieces));
    ++stats_.pieces;
    if (dst != nullptr) verify_nccl_piece(manifest, *plan, i, std::string_view(dst, size), &bad);
  }
  if (!mismatch.empty()) {
    ++stats_.mismatched;
    return failed_precondition(who + ": not taken: " + mismatch);
  }
  stats_.bytes += manifest.total_bytes;
  if (!bad.empty()) {
    stats_.corrupt_chunks += bad.size();
    Status s = data_loss(who + ": " + std::to_string(bad.size()) + " of " + std::to_string(plan->num_chunks) +
                         " chunks failed their checksum: " + bad_list(bad));
    if (bad_chunks != nullptr) *bad_chunks = std::move(bad);
    return s;
  }
  ++stats_.versions_received;
  return ok_status();
}

}  // namespace grpo::cluster
