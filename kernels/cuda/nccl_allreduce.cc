#include "kernels/cuda/nccl_allreduce.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

namespace grpo::kernels {
namespace {

using Clock = std::chrono::steady_clock;

std::string cuda_text(cudaError_t err) {
  return std::string(cudaGetErrorName(err)) + " (" + cudaGetErrorString(err) + ")";
}

const char* nccl_result_name(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "ncclSuccess";
    case ncclUnhandledCudaError: return "ncclUnhandledCudaError";
    case ncclSystemError: return "ncclSystemError";
    case ncclInternalError: return "ncclInternalError";
    case ncclInvalidArgument: return "ncclInvalidArgument";
    case ncclInvalidUsage: return "ncclInvalidUsage";
    case ncclRemoteError: return "ncclRemoteError";
    case ncclInProgress: return "ncclInProgress";
    default: return "ncclResult";
  }
}

StatusCode nccl_status_code(ncclResult_t r) {
  switch (r) {
    case ncclInvalidArgument: return StatusCode::kInvalidArgument;
    case ncclInvalidUsage: return StatusCode::kFailedPrecondition;
    case ncclSystemError:
    case ncclRemoteError: return StatusCode::kUnavailable;
    default: return StatusCode::kInternal;
  }
}

// "ncclAllReduce (rank 1 of 2, device 1): ncclRemoteError (remote process exited or there was a
// network error); NCCL: <last error>".
Status nccl_error(const std::string& where, ncclResult_t r, ncclComm_t comm) {
  std::string msg = where + ": " + nccl_result_name(r) + " (" + ncclGetErrorString(r) + ")";
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && last[0] != '\0') msg += "; NCCL: " + std::string(last);
  return Status(nccl_status_code(r), std::move(msg));
}

std::string rank_text(int rank, int world, int device) {
  return "rank " + std::to_string(rank) + " of " + std::to_string(world) + ", device " +
         std::to_string(device);
}

// Yields for the first polls (a collective that is about to finish), then sleeps with a growing,
// capped interval so that a long wait costs little CPU and adds at most ~0.2 ms of latency.
class Backoff {
 public:
  void pause() {
    if (polls_++ < 64) {
      std::this_thread::yield();
      return;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(sleep_us_));
    sleep_us_ = std::min(sleep_us_ * 2, 200);
  }

 private:
  int polls_ = 0;
  int sleep_us_ = 10;
};

// Makes `device` current for its lifetime and restores the caller's device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    cudaError_t err = cudaGetDevice(&previous_);
    if (err != cudaSuccess) {
      status_ = internal_error("cudaGetDevice: " + cuda_text(err));
      return;
    }
    if (previous_ != device) {
      err = cudaSetDevice(device);
      if (err != cudaSuccess) {
        status_ =
            internal_error("cudaSetDevice(" + std::to_string(device) + "): " + cuda_text(err));
        return;
      }
      restore_ = true;
    }
  }
  ~DeviceGuard() {
    if (restore_) (void)cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

  const Status& status() const { return status_; }

 private:
  int previous_ = 0;
  bool restore_ = false;
  Status status_;
};

// Waits while the communicator's asynchronous state is ncclInProgress (a non-blocking init,
// enqueue or finalize). Returns the final state, or ncclInProgress when the deadline passed; a
// failing ncclCommGetAsyncError call is returned as its own result.
ncclResult_t wait_while_in_progress(ncclComm_t comm, Clock::time_point deadline) {
  Backoff backoff;
  for (;;) {
    ncclResult_t state = ncclInProgress;
    const ncclResult_t r = ncclCommGetAsyncError(comm, &state);
    if (r != ncclSuccess) return r;
    if (state != ncclInProgress) return state;
    if (Clock::now() >= deadline) return ncclInProgress;
    backoff.pause();
  }
}

int version_code() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return 0;
  return v;
}

// NCCL_VERSION(X, Y, Z) is X*10000 + Y*100 + Z from 2.9 on, X*1000 + Y*100 + Z before.
void split_version(int v, int* major, int* minor, int* patch) {
  if (v >= 10000) {
    *major = v / 10000;
    *minor = v % 10000 / 100;
  } else {
    *major = v / 1000;
    *minor = v % 1000 / 100;
  }
  *patch = v % 100;
}

}  // namespace

// ---- NCCL-typed members -------------------------------------------------------------------------

struct NcclAllReduce::Impl {
  static ncclComm_t comm(const NcclAllReduce& self) { return static_cast<ncclComm_t>(self.comm_); }

  static std::string where(const NcclAllReduce& self, const char* fn) {
    return std::string(fn) + " (" + rank_text(self.rank_, self.world_, self.device_) + ")";
  }

  // Aborts the communicator (it is unusable after a failed or timed-out collective) and remembers
  // why; returns `status`. The caller has made the instance's device current.
  static Status abort(NcclAllReduce& self, Status status) {
    if (self.comm_ != nullptr) {
      (void)ncclCommAbort(comm(self));
      self.comm_ = nullptr;
      self.abort_reason_ = status.to_string();
    }
    return status;
  }

  // Host-side check that `ptr` is device (or managed) memory of the instance's device.
  static Status check_pointer(const NcclAllReduce& self, const char* fn, const void* ptr) {
    if (ptr == nullptr) return invalid_argument(where(self, fn) + ": null device pointer");
    cudaPointerAttributes attr{};
    const cudaError_t err = cudaPointerGetAttributes(&attr, ptr);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();  // not sticky; leave nothing behind for the next caller
      return invalid_argument(where(self, fn) + ": cudaPointerGetAttributes: " + cuda_text(err));
    }
    if (attr.type == cudaMemoryTypeManaged) return ok_status();
    if (attr.type != cudaMemoryTypeDevice)
      return invalid_argument(where(self, fn) + ": the buffer is not device memory (cudaMalloc)");
    if (attr.device != self.device_)
      return invalid_argument(where(self, fn) + ": the buffer lives on device " +
                              std::to_string(attr.device) + ", not on the communicator's device");
    return ok_status();
  }

  // Enqueues one collective with `launch`, waits until it is enqueued (non-blocking
  // communicator), then until the stream has drained; aborts the communicator on any failure or
  // when the deadline passes.
  template <typename Launch>
  static Status run(NcclAllReduce& self, const char* fn, cudaStream_t stream, Launch launch) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(self.options_.timeout_ms);
    const std::string w = where(self, fn);
    ncclResult_t r = launch(comm(self));
    if (r == ncclInProgress) r = wait_while_in_progress(comm(self), deadline);
    if (r == ncclInProgress)
      return abort(self, deadline_exceeded(w + ": not enqueued within " +
                                           std::to_string(self.options_.timeout_ms) + " ms"));
    if (r != ncclSuccess) return abort(self, nccl_error(w, r, comm(self)));

    Backoff backoff;
    for (;;) {
      const cudaError_t err = cudaStreamQuery(stream);
      if (err == cudaSuccess) return ok_status();
      if (err != cudaErrorNotReady)
        return abort(self, internal_error(w + ": cudaStreamQuery: " + cuda_text(err)));
      ncclResult_t state = ncclSuccess;
      const ncclResult_t q = ncclCommGetAsyncError(comm(self), &state);
      if (q != ncclSuccess)
        return abort(self, nccl_error(w + ": ncclCommGetAsyncError", q, comm(self)));
      if (state != ncclSuccess && state != ncclInProgress)
        return abort(self, nccl_error(w, state, comm(self)));
      if (Clock::now() >= deadline)
        return abort(self, deadline_exceeded(w + ": not finished within " +
                                             std::to_string(self.options_.timeout_ms) +
                                             " ms (a rank missing, dead or stuck before its "
                                             "matching call)"));
      backoff.pause();
    }
  }
};

// ---- Free functions -----------------------------------------------------------------------------

std::string nccl_version_string() {
  const int v = version_code();
  if (v <= 0) return "unknown";
  int major = 0, minor = 0, patch = 0;
  split_version(v, &major, &minor, &patch);
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

StatusOr<int> nccl_cuda_device_count() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // leave no error behind for the next caller
    return unavailable("cudaGetDeviceCount: " + cuda_text(err));
  }
  return count;
}

Status nccl_cuda_set_device(int device) {
  GRPO_ASSIGN_OR_RETURN(const int count, nccl_cuda_device_count());
  if (device < 0 || device >= count)
    return invalid_argument("cudaSetDevice: device " + std::to_string(device) + " not in [0, " +
                            std::to_string(count) + ")");
  const cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) return internal_error("cudaSetDevice: " + cuda_text(err));
  return ok_status();
}

Status nccl_available() {
  int v = 0;
  const ncclResult_t r = ncclGetVersion(&v);
  if (r != ncclSuccess)
    return unavailable(std::string("ncclGetVersion: ") + nccl_result_name(r) + " (" +
                       ncclGetErrorString(r) + ")");
  int major = 0, minor = 0, patch = 0;
  split_version(v, &major, &minor, &patch);
  if (major != NCCL_MAJOR)
    return unavailable("NCCL library " + nccl_version_string() + " does not match the headers (" +
                       std::to_string(NCCL_MAJOR) + "." + std::to_string(NCCL_MINOR) + ")");
  GRPO_ASSIGN_OR_RETURN(const int count, nccl_cuda_device_count());
  if (count <= 0) return unavailable("cudaGetDeviceCount: 0 devices");
  return ok_status();
}

size_t nccl_unique_id_bytes() { return NCCL_UNIQUE_ID_BYTES; }

StatusOr<std::string> nccl_unique_id() {
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  const ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess) {
    std::string msg = std::string("ncclGetUniqueId: ") + nccl_result_name(r) + " (" +
                      ncclGetErrorString(r) + ")";
    const char* last = ncclGetLastError(nullptr);
    if (last != nullptr && last[0] != '\0') msg += "; NCCL: " + std::string(last);
    return unavailable(std::move(msg));
  }
  return std::string(id.internal, NCCL_UNIQUE_ID_BYTES);
}

// ---- NcclAllReduce ------------------------------------------------------------------------------

NcclAllReduce::NcclAllReduce(void* comm, int rank, int world, int device,
                             const NcclOptions& options)
    : comm_(comm), rank_(rank), world_(world), device_(device), options_(options) {}

StatusOr<std::unique_ptr<NcclAllReduce>> NcclAllReduce::create(const std::string& unique_id,
                                                               int rank, int world, int device,
                                                               const NcclOptions& options) {
  // Arguments first, on the host only: no CUDA or NCCL call for a bad one.
  if (world < 1)
    return invalid_argument("NcclAllReduce::create: world must be >= 1, got " +
                            std::to_string(world));
  if (rank < 0 || rank >= world)
    return invalid_argument("NcclAllReduce::create: rank " + std::to_string(rank) +
                            " not in [0, " + std::to_string(world) + ")");
  if (device < 0)
    return invalid_argument("NcclAllReduce::create: device must be >= 0, got " +
                            std::to_string(device));
  if (unique_id.size() != NCCL_UNIQUE_ID_BYTES)
    return invalid_argument("NcclAllReduce::create: unique id of " +
                            std::to_string(unique_id.size()) + " bytes, need " +
                            std::to_string(NCCL_UNIQUE_ID_BYTES) + " (from nccl_unique_id())");
  if (options.timeout_ms <= 0)
    return invalid_argument("NcclAllReduce::create: timeout_ms must be > 0, got " +
                            std::to_string(options.timeout_ms));

  const std::string where = "ncclCommInitRankConfig (" + rank_text(rank, world, device) + ")";
  GRPO_ASSIGN_OR_RETURN(const int count, nccl_cuda_device_count());
  if (count <= 0) return unavailable(where + ": no CUDA device");
  if (device >= count)
    return invalid_argument(where + ": device " + std::to_string(device) + " not below the " +
                            std::to_string(count) + " visible devices");

  DeviceGuard guard(device);
  GRPO_RETURN_IF_ERROR(guard.status());

  ncclUniqueId id;
  std::memcpy(id.internal, unique_id.data(), NCCL_UNIQUE_ID_BYTES);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // init and collectives return at once; we poll with a deadline
  ncclComm_t comm = nullptr;
  const auto deadline = Clock::now() + std::chrono::milliseconds(options.timeout_ms);
  ncclResult_t r = ncclCommInitRankConfig(&comm, world, id, rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    Status s = nccl_error(where, r, comm);
    if (comm != nullptr) (void)ncclCommAbort(comm);
    return s;
  }
  if (comm == nullptr) return internal_error(where + ": no communicator returned");
  r = wait_while_in_progress(comm, deadline);
  if (r == ncclInProgress) {
    (void)ncclCommAbort(comm);
    return deadline_exceeded(where + ": not all " + std::to_string(world) +
                             " ranks joined within " + std::to_string(options.timeout_ms) + " ms");
  }
  if (r != ncclSuccess) {
    Status s = nccl_error(where, r, comm);
    (void)ncclCommAbort(comm);
    return s;
  }
  return std::unique_ptr<NcclAllReduce>(new NcclAllReduce(comm, rank, world, device, options));
}

NcclAllReduce::~NcclAllReduce() {
  if (comm_ == nullptr) return;  // never created, or already aborted
  DeviceGuard guard(device_);
  ncclComm_t comm = Impl::comm(*this);
  comm_ = nullptr;
  const auto deadline = Clock::now() + std::chrono::milliseconds(options_.timeout_ms);
  ncclResult_t r = ncclCommFinalize(comm);
  if (r == ncclSuccess || r == ncclInProgress) r = wait_while_in_progress(comm, deadline);
  if (r == ncclSuccess)
    (void)ncclCommDestroy(comm);
  else
    (void)ncclCommAbort(comm);
}

Status NcclAllReduce::all_reduce_sum(float* device_data, size_t n, void* stream) {
  const char* fn = "ncclAllReduce";
  if (comm_ == nullptr)
    return failed_precondition(Impl::where(*this, fn) +
                               ": communicator aborted after an earlier failure: " + abort_reason_);
  if (n == 0) return ok_status();
  DeviceGuard guard(device_);
  GRPO_RETURN_IF_ERROR(guard.status());
  GRPO_RETURN_IF_ERROR(Impl::check_pointer(*this, fn, device_data));
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  return Impl::run(*this, fn, s, [&](ncclComm_t comm) {
    return ncclAllReduce(device_data, device_data, n, ncclFloat, ncclSum, comm, s);
  });
}

Status NcclAllReduce::broadcast(void* device_data, size_t bytes, int root, void* stream) {
  const char* fn = "ncclBcast";
  if (root < 0 || root >= world_)
    return invalid_argument(Impl::where(*this, fn) + ": root " + std::to_string(root) +
                            " not in [0, " + std::to_string(world_) + ")");
  if (comm_ == nullptr)
    return failed_precondition(Impl::where(*this, fn) +
                               ": communicator aborted after an earlier failure: " + abort_reason_);
  if (bytes == 0) return ok_status();
  DeviceGuard guard(device_);
  GRPO_RETURN_IF_ERROR(guard.status());
  GRPO_RETURN_IF_ERROR(Impl::check_pointer(*this, fn, device_data));
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  return Impl::run(*this, fn, s, [&](ncclComm_t comm) {
    return ncclBcast(device_data, bytes, ncclUint8, root, comm, s);
  });
}

}  // namespace grpo::kernels
