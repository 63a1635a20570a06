// Broadcast of host bytes between the GPUs of one NCCL group, through a device staging buffer: the
// device side of the NCCL weight broadcast (cluster/nccl_weight_channel.h's DeviceBroadcast, as
// adapted by actors/nccl_weights.h).
//
// One instance per rank, wrapping that rank's NcclAllReduce (kernels/cuda/nccl_allreduce.h: read
// its contract first; creation, collectives, timeouts and failures are its). broadcast() is
// collective like NcclAllReduce::broadcast: the root copies the host bytes into its staging
// buffer, the staging buffer is broadcast (ncclBcast), and every rank that asks for them copies
// the bytes back to host memory. The copies and the broadcast run in order on one non-blocking
// CUDA stream the instance owns (so they neither wait for nor hold up the legacy default stream of
// the device's other users); broadcast() returns when the copy back has finished.
//
// Memory: the staging buffer (`staging_bytes` of device memory on the communicator's device) and
// the stream are made once by create() and reused by every call; the host buffers are the
// caller's (pageable memory is fine; the CUDA runtime stages it).
//
// Errors: arguments (bytes beyond the staging buffer, a root out of range, a null pointer the call
// needs) are InvalidArgument before any CUDA or NCCL call, and leave the instance usable, but the
// other ranks have made their matching call and time out. A CUDA copy failure is Internal and
// marks the instance broken, like an NCCL failure does (NcclAllReduce aborts its communicator);
// every later call then fails with FailedPrecondition.
//
// Threading: as NcclAllReduce: one caller thread at a time per instance; distinct ranks may be
// driven by distinct threads of one process, each on its own device.
//
// Layering: plain C++ (no CUDA or NCCL include); exists only in builds with GRPO_HAVE_NCCL.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "kernels/cuda/nccl_allreduce.h"

namespace grpo::kernels {

class NcclHostBroadcast {
 public:
  // Takes over `comm` (one rank of a group) and allocates `staging_bytes` of device memory and a
  // stream on its device. InvalidArgument for a null comm or staging_bytes == 0; Internal when the
  // allocation fails (the message says how much was asked for on which device).
  static StatusOr<std::unique_ptr<NcclHostBroadcast>> create(std::unique_ptr<NcclAllReduce> comm,
                                                             uint64_t staging_bytes);
  // Finalises the communicator (NcclAllReduce's destructor), then frees the staging buffer and the
  // stream.
  ~NcclHostBroadcast();
  NcclHostBroadcast(const NcclHostBroadcast&) = delete;
  NcclHostBroadcast& operator=(const NcclHostBroadcast&) = delete;

  // Collective. On rank `root`: `send` holds `bytes` bytes (not null when bytes > 0); `recv`, when
  // not null, receives the root's staging bytes after the broadcast. On the other ranks: `send` is
  // ignored; `recv`, when not null, receives the root's bytes. bytes <= capacity(); bytes == 0
  // does nothing.
  Status broadcast(const void* send, void* recv, uint64_t bytes, int root);

  int rank() const { return comm_->rank(); }
  int world() const { return comm_->world(); }
  int device() const { return comm_->device(); }
  uint64_t capacity() const { return capacity_; }
  bool healthy() const { return !broken_ && comm_->healthy(); }

 private:
  NcclHostBroadcast(std::unique_ptr<NcclAllReduce> comm, void* staging, void* stream, uint64_t capacity);

  std::unique_ptr<NcclAllReduce> comm_;
  void* staging_ = nullptr;  // device memory, capacity_ bytes
  void* stream_ = nullptr;   // cudaStream_t
  uint64_t capacity_ = 0;
  bool broken_ = false;      // a CUDA copy failed
  std::string broken_reason_;
};

}  // namespace grpo::kernels
