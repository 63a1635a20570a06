// Data-parallel collectives between GPUs over NCCL: the CUDA-build counterpart of the ZeroMQ ring
// (cluster/allreduce.h). One NcclAllReduce instance per rank, each bound to one CUDA device; the
// buffers are device memory and the work runs on a CUDA stream the caller names.
//
// Contract (the same as the ring's). all_reduce_sum adds the `world` ranks' buffers element-wise
// and leaves the sum in every rank's buffer (in place); every rank ends with bitwise identical
// bytes (NCCL's all-reduce algorithms compute each element's sum once, on one rank or in the
// switch, and copy it to the others; the multi-GPU test checks this). The order of the float
// additions is NCCL's (ring, tree, ..., chosen per size and topology), so the result can differ
// in the last bits from the ring's or from a local sum, and from one NCCL version, topology or
// size to another; for small integers in float (exact sums) it is exact. broadcast copies
// `bytes` bytes of rank `root`'s buffer into every other rank's. Errors come back as Status
// values; nothing aborts, and nothing waits longer than NcclOptions::timeout_ms (see "Failure
// behaviour").
//
// Why a sum and not ncclAvg. The learner computes every shard's gradient already scaled by the
// whole batch's normalisers (the token count and group sizes of the global batch), so the shard
// gradients add up to the full-batch gradient; averaging (ncclAvg) would divide by `world` a
// second time. Only ncclSum is used.
//
// Setting up. Rank 0 calls nccl_unique_id() once and hands the bytes (NCCL_UNIQUE_ID_BYTES = 128,
// binary, not text) to every other rank by any channel (a message from the coordinator, a file,
// another thread). The id holds the address of a bootstrap listener that NCCL runs in the process
// that made it: that process must stay alive until every rank's create() has returned, every rank
// must be able to reach that address (NCCL_SOCKET_IFNAME picks the interface), and a fresh id is
// needed for every new communicator. Making an id needs the NCCL library but no GPU or driver.
// Then every rank calls NcclAllReduce::create(id, rank, world, device) concurrently (one thread or
// process per rank; creation is collective: it returns only when all `world` ranks have joined,
// or fails after timeout_ms). Each rank must use its own device: two ranks of one communicator on
// the same device are not supported by NCCL.
//
// Calls are collective too: every rank must make the same sequence of all_reduce_sum / broadcast
// calls with the same sizes (and root). A rank that skips a call leaves the others waiting until
// their timeout.
//
// Streams and devices. `stream` is a cudaStream_t passed as void* (nullptr: the legacy default
// stream of the instance's device); it must belong to the instance's device. The collective is
// queued on it after whatever the caller queued before (so a gradient produced on the same stream
// needs no extra synchronisation), and the call returns once the stream has drained up to and
// including the collective (the "stream sync"; it polls instead of blocking, so that it can give
// up). Every device pointer must point into memory of the instance's device (cudaMalloc or managed
// memory); this is checked on the host before NCCL is called. Each method makes the instance's
// device current for its duration and restores the caller's current device before returning.
//
// Failure behaviour. The communicator is non-blocking (ncclConfig_t::blocking = 0): creation and
// every collective are driven by polling, and a wait longer than NcclOptions::timeout_ms (a rank
// that never joins, died, or is stuck before its matching call) aborts the communicator
// (ncclCommAbort) and returns DeadlineExceeded naming the rank, world and device. NCCL errors
// return a Status whose message names the function, ncclGetErrorString's text, NCCL's last error
// message and this rank: ncclInvalidArgument -> InvalidArgument, ncclInvalidUsage ->
// FailedPrecondition, ncclSystemError and ncclRemoteError (network, a peer process exited) ->
// Unavailable, ncclUnhandledCudaError and ncclInternalError -> Internal. CUDA errors (including a
// sticky error of an earlier kernel found while waiting on the stream) return Internal. After any
// failure of a collective the communicator has been aborted: the buffer holds partial results,
// other ranks fail too (or time out), and every later call on this instance returns
// FailedPrecondition. Treat it as a failed step for the whole job: destroy every rank's instance
// and create new ones from a fresh unique id. Argument errors (null or foreign pointers, a bad
// root) are found on the host before NCCL is called; they return InvalidArgument and leave this
// instance usable, but the other ranks have made their matching call and will time out, so treat
// them as a failed step as well.
//
// Threading. Not thread-safe: one caller thread per instance at a time (calls must not overlap;
// handing the instance to another thread needs the usual happens-before, e.g. a join). Distinct
// instances (ranks) may be driven concurrently by different threads of one process, each on its
// own device; one thread must not drive two ranks of the same communicator (each call waits for
// the other ranks).
//
// Ownership and shutdown. The instance owns its communicator. The destructor finalises it
// (ncclCommFinalize, which waits, at most timeout_ms, until the communicator is quiescent on all
// ranks, so destroy the ranks' instances at about the same time) and then frees it
// (ncclCommDestroy); if finalising fails or times out, or the communicator was already aborted, it
// aborts instead. It does not free the caller's buffers or streams.
//
// Layering: this header is plain C++ (no CUDA or NCCL include). It exists only in builds where
// CMake found nvcc and NCCL (GRPO_ENABLE_CUDA and GRPO_ENABLE_NCCL on); such builds define
// GRPO_HAVE_NCCL=1 (and GRPO_HAVE_CUDA=1) for every target that links grpo_kernels_cuda.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "base/status.h"

namespace grpo::kernels {

// OK when the NCCL library answers (ncclGetVersion) with the major version this build was compiled
// against and at least one CUDA device is visible; Unavailable otherwise, with the reason
// ("cudaGetDeviceCount: cudaErrorNoDevice (...)", ...). Never aborts, never initialises NCCL's
// network side.
Status nccl_available();

// "2.28.9": the version of the NCCL library in use (ncclGetVersion), or "unknown".
std::string nccl_version_string();

// Visible CUDA devices (cudaGetDeviceCount); Unavailable where there is no driver or device.
StatusOr<int> nccl_cuda_device_count();
// Makes `device` current for the calling thread (cudaSetDevice); InvalidArgument when out of range.
Status nccl_cuda_set_device(int device);

// A fresh NCCL unique id (ncclGetUniqueId): NCCL_UNIQUE_ID_BYTES (128) raw bytes. Call it once per
// communicator, on the rank-0 side; it starts NCCL's bootstrap listener in this process (see
// "Setting up"). Needs no CUDA device. Unavailable when NCCL cannot make one (no usable network
// interface, ...).
StatusOr<std::string> nccl_unique_id();

// Size of the ids nccl_unique_id() makes and create() takes (NCCL_UNIQUE_ID_BYTES).
size_t nccl_unique_id_bytes();

struct NcclOptions {
  // Longest wait, in milliseconds, for the communicator's creation, for each collective (from the
  // call until the stream has drained) and for the destructor's finalisation. Must be > 0. Generous
  // by default: it also covers waiting for the slowest rank to reach the matching call.
  int timeout_ms = 300000;
};

class NcclAllReduce {
 public:
  // Joins the communicator `unique_id` as `rank` of `world`, on CUDA device `device`. Collective:
  // every rank must call it concurrently with the same id and world. InvalidArgument, before any
  // NCCL or CUDA call, for world < 1, rank outside [0, world), device < 0, a unique id whose size
  // is not NCCL_UNIQUE_ID_BYTES, or timeout_ms <= 0; Unavailable when there is no CUDA device,
  // InvalidArgument when `device` is not below the device count; DeadlineExceeded when not all
  // ranks joined within timeout_ms; NCCL errors as described above.
  static StatusOr<std::unique_ptr<NcclAllReduce>> create(
      const std::string& unique_id, int rank, int world, int device,
      const NcclOptions& options = NcclOptions());

  ~NcclAllReduce();
  NcclAllReduce(const NcclAllReduce&) = delete;
  NcclAllReduce& operator=(const NcclAllReduce&) = delete;

  // In-place sum of n floats over all ranks (ncclAllReduce, ncclFloat, ncclSum), then the stream
  // sync. n == 0 does nothing and returns OK at once on every rank (device_data may be null).
  Status all_reduce_sum(float* device_data, size_t n, void* stream);

  // In-place broadcast of `bytes` bytes from rank `root` (ncclBcast, ncclUint8), then the stream
  // sync. root must lie in [0, world). bytes == 0 does nothing (device_data may be null).
  Status broadcast(void* device_data, size_t bytes, int root, void* stream);

  int rank() const { return rank_; }
  int world() const { return world_; }
  int device() const { return device_; }
  // False once a failure has aborted the communicator (every call then fails).
  bool healthy() const { return comm_ != nullptr; }

 private:
  struct Impl;  // the NCCL-typed helpers, in nccl_allreduce.cc
  friend struct Impl;
  NcclAllReduce(void* comm, int rank, int world, int device, const NcclOptions& options);

  void* comm_ = nullptr;  // ncclComm_t; null once aborted
  int rank_ = 0;
  int world_ = 1;
  int device_ = 0;
  NcclOptions options_;
  std::string abort_reason_;  // why the communicator was aborted, for later calls' errors
};

}  // namespace grpo::kernels
