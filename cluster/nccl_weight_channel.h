// The weight-broadcast protocol over a device collective (broadcaster.transport = "nccl"): one
// weight version moves from the root (learner rank 0) to every other member of a group of GPUs by
// collective broadcasts, and each receiver checks every chunk against the manifest's xxh64
// checksums (checksum64, the same check the ZeroMQ chain of cluster/weight_relay.h makes) before
// its owner swaps the weights in. Any failure comes back as a Status; the caller then takes the
// version from the ZeroMQ chain instead.
//
// The device side is injected (DeviceBroadcast): on CUDA builds it is kernels/cuda's
// NcclHostBroadcast (host bytes -> device staging buffer -> ncclBcast -> host), adapted by
// actors/nccl_weights.h; the tests use an in-process fake. This file has no CUDA or NCCL in it, so
// the protocol is built and tested everywhere.
//
// One version on the wire (every rank makes exactly this sequence of collective calls, decided by
// the root alone, so no rank's local problem can make the ranks' sequences differ):
//   1. a header of kNcclWeightHeaderBytes from the root: magic, go/abort, version, total bytes,
//      chunk bytes, chunk count, piece bytes and the xxh64 of the manifest's checksum list. A root
//      that cannot send (its blob does not match its manifest, a chunk larger than the staging
//      buffer) sends "abort" and stops there; so does every receiver.
//   2. the blob in pieces of whole manifest chunks, each at most the root's staging capacity, in
//      order (every receiver's staging buffer must hold the root's pieces: the group's
//      piece_bytes, cluster/nccl_group.h, sizes them all).
// A receiver whose manifest differs from the root's header (another version, another chunking)
// still takes part in every piece, without keeping the bytes, and then fails with
// FailedPrecondition. A receiver verifies each piece's chunks as the piece lands in its blob; the
// version is accepted only when all of them match. Corrupt chunks do not stop the transfer (the
// others keep going): receive() lists them and returns DataLoss, so the caller can fetch just
// those chunks (WeightChunkRequest) or the whole version from the chain.
//
// Failure of the device broadcast itself (NCCL error, a rank that died or never called, the
// timeout) is returned at once; the DeviceBroadcast is then unusable (healthy() false) and the
// group has to be formed again from a fresh unique id (see kernels/cuda/nccl_allreduce.h,
// "Failure behaviour").
//
// Threading: a channel is owned by one thread at a time and is not synchronized; each rank's
// channel is driven by its own thread or process, concurrently with the other ranks'.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "cluster/messages.h"

namespace grpo::cluster {

// Size of the header broadcast before each version's pieces; a DeviceBroadcast's capacity must be
// at least this.
constexpr uint64_t kNcclWeightHeaderBytes = 64;

// One rank's side of a collective broadcast between devices (NCCL), moving host bytes.
//
// broadcast() is collective: every rank calls it with the same `bytes` and `root`, in the same
// order. On rank `root`, `send` holds the `bytes` input bytes; `recv` may be null, or receives the
// bytes as the root's device holds them after the broadcast (a check of the root's own copy). On
// every other rank `send` is ignored and `recv` receives the root's bytes, or is null when the
// caller does not want them (they then only pass through the device). bytes <= capacity();
// bytes == 0 does nothing. After an error the group is broken (healthy() false): every later call
// fails and the other ranks fail or time out too.
class DeviceBroadcast {
 public:
  virtual ~DeviceBroadcast() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // Largest `bytes` one broadcast() takes: the size of the device staging buffer.
  virtual uint64_t capacity() const = 0;
  virtual bool healthy() const = 0;
  virtual Status broadcast(const char* send, char* recv, uint64_t bytes, int root) = 0;
};

struct NcclWeightChannelOptions {
  int root = 0;  // the sending rank (learner rank 0)
  // The root copies each piece back from its device and checks its chunks too (costs one more
  // device-to-host copy per piece; a one-rank group uses it to check the whole path).
  bool verify_root = false;
};

struct NcclWeightChannelStats {
  uint64_t versions_sent = 0;      // root: versions broadcast to the end
  uint64_t versions_received = 0;  // receiver: versions received with every chunk verified
  uint64_t bytes = 0;              // blob bytes broadcast or received
  uint64_t pieces = 0;             // collective broadcasts of blob pieces
  uint64_t corrupt_chunks = 0;     // chunks whose checksum did not match after the broadcast
  uint64_t aborted = 0;            // versions the root aborted (its header said so)
  uint64_t mismatched = 0;         // receiver: versions whose header did not match its manifest
  uint64_t failures = 0;           // device broadcast errors (the group is then broken)
};

// How a version is cut into pieces: `chunks_per_piece` whole manifest chunks per broadcast (the
// last piece may be shorter), so that a piece never exceeds `capacity` bytes. InvalidArgument when
// the manifest is inconsistent (chunk_bytes outside [1, kMaxChunkBytes], a checksum count other
// than ceil(total_bytes / chunk_bytes)) or one chunk exceeds `capacity`.
struct NcclPiecePlan {
  uint64_t total_bytes = 0;
  uint32_t chunk_bytes = 0;
  uint32_t num_chunks = 0;
  uint32_t chunks_per_piece = 0;
  uint32_t num_pieces = 0;
  uint64_t piece_bytes() const { return uint64_t{chunks_per_piece} * chunk_bytes; }
  // Byte offset and size of piece i (i < num_pieces), and its first chunk.
  uint64_t piece_offset(uint32_t i) const { return uint64_t{i} * piece_bytes(); }
  uint64_t piece_size(uint32_t i) const;
  uint32_t first_chunk(uint32_t i) const { return i * chunks_per_piece; }
};
StatusOr<NcclPiecePlan> plan_nccl_pieces(const WeightManifest& manifest, uint64_t capacity);

// Checks the chunks of `piece` (bytes at the piece's offset of the blob: piece_size(i) of them)
// against the manifest's checksums with checksum64; appends the indices of those that differ to
// *bad (ascending). Returns how many were bad.
uint32_t verify_nccl_piece(const WeightManifest& manifest, const NcclPiecePlan& plan, uint32_t piece,
                           std::string_view bytes, std::vector<uint32_t>* bad);

class NcclWeightChannel {
 public:
  // InvalidArgument for a null device, a capacity below kNcclWeightHeaderBytes, or a root outside
  // [0, world).
  static StatusOr<std::unique_ptr<NcclWeightChannel>> create(std::unique_ptr<DeviceBroadcast> device,
                                                             NcclWeightChannelOptions options = {});

  // Root only (FailedPrecondition on another rank, before any collective). Broadcasts the version
  // `manifest` describes, whose bytes are `blob`. InvalidArgument when blob and manifest disagree
  // or a chunk is larger than the staging capacity (the receivers are told to abort); DataLoss when
  // verify_root found a chunk changed on the root's device; the device's error when a broadcast
  // failed.
  Status send(const WeightManifest& manifest, std::string_view blob);

  // Every rank but the root. Receives the version into *blob (resized to manifest.total_bytes; its
  // old capacity is reused) and checks every chunk. OK only when the root's header matched
  // `manifest` and every chunk's checksum matched. Otherwise: Unavailable when the root aborted
  // the version; FailedPrecondition when the root's header named another version or layout, or
  // *blob could not be allocated (receive() still took part in every piece), or when the root's
  // pieces are larger than this rank's staging buffer (it then takes no part in them, and the
  // other ranks fail on their timeout); DataLoss when chunks failed their checksum, whose indices
  // are then in *bad_chunks (when non-null; cleared first); DataLoss for a header that is not one;
  // the device's error when a broadcast failed. *blob is unspecified unless OK.
  Status receive(const WeightManifest& manifest, std::string* blob,
                 std::vector<uint32_t>* bad_chunks = nullptr);

  int rank() const { return device_->rank(); }
  int world() const { return device_->world(); }
  uint64_t capacity() const { return device_->capacity(); }
  bool healthy() const { return device_->healthy(); }
  const NcclWeightChannelStats& stats() const { return stats_; }

 private:
  NcclWeightChannel(std::unique_ptr<DeviceBroadcast> device, NcclWeightChannelOptions options);
  Status broadcast(const char* send, char* recv, uint64_t bytes);

  std::unique_ptr<DeviceBroadcast> device_;
  NcclWeightChannelOptions options_;
  std::string scratch_;  // the root's copy-back of each piece (verify_root); sized once
  NcclWeightChannelStats stats_;
};

}  // namespace grpo::cluster
