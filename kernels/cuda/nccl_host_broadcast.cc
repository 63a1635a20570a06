#include "kernels/cuda/nccl_host_broadcast.h"

#include <cuda_runtime.h>

#include <utility>

namespace grpo::kernels {
namespace {

std::string cuda_text(cudaError_t err) {
  return std::string(cudaGetErrorName(err)) + " (" + cudaGetErrorString(err) + ")";
}

// Makes a device current for its lifetime; the caller's current device comes back afterwards.
class CurrentDevice {
 public:
  explicit CurrentDevice(int device) {
    cudaError_t err = cudaGetDevice(&previous_);
    if (err == cudaSuccess && previous_ != device) {
      err = cudaSetDevice(device);
      switched_ = err == cudaSuccess;
    }
    if (err != cudaSuccess)
      status_ = internal_error("selecting CUDA device " + std::to_string(device) + ": " + cuda_text(err));
  }
  ~CurrentDevice() {
    if (switched_) (void)cudaSetDevice(previous_);
  }
  CurrentDevice(const CurrentDevice&) = delete;
  CurrentDevice& operator=(const CurrentDevice&) = delete;
  const Status& status() const { return status_; }

 private:
  int previous_ = 0;
  bool switched_ = false;
  Status status_;
};

}  // namespace

StatusOr<std::unique_ptr<NcclHostBroadcast>> NcclHostBroadcast::create(std::unique_ptr<NcclAllReduce> comm,
                                                                       uint64_t staging_bytes) {
  if (comm == nullptr) return invalid_argument("NcclHostBroadcast: no communicator");
  if (staging_bytes == 0) return invalid_argument("NcclHostBroadcast: staging_bytes must be > 0");
  const std::string where = "NcclHostBroadcast (device " + std::to_string(comm->device()) + ")";
  CurrentDevice current(comm->device());
  GRPO_RETURN_IF_ERROR(current.status().with_context(where));
  void* staging = nullptr;
  cudaError_t err = cudaMalloc(&staging, staging_bytes);
  if (err != cudaSuccess)
    return internal_error(where + ": cudaMalloc of a " + std::to_string(staging_bytes) +
                          "-byte staging buffer: " + cuda_text(err));
  cudaStream_t stream = nullptr;
  err = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  if (err != cudaSuccess) {
    (void)cudaFree(staging);
    return internal_error(where + ": cudaStreamCreateWithFlags: " + cuda_text(err));
  }
  return std::unique_ptr<NcclHostBroadcast>(
      new NcclHostBroadcast(std::move(comm), staging, static_cast<void*>(stream), staging_bytes));
}

NcclHostBroadcast::NcclHostBroadcast(std::unique_ptr<NcclAllReduce> comm, void* staging, void* stream,
                                     uint64_t capacity)
    : comm_(std::move(comm)), staging_(staging), stream_(stream), capacity_(capacity) {}

NcclHostBroadcast::~NcclHostBroadcast() {
  const int device = comm_->device();
  comm_.reset();  // finalise the communicator before its buffer goes
  CurrentDevice current(device);
  if (stream_ != nullptr) {
    (void)cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
    (void)cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
  }
  (void)cudaFree(staging_);
}

Status NcclHostBroadcast::broadcast(const void* send, void* recv, uint64_t bytes, int root) {
  const std::string where = "NcclHostBroadcast (rank " + std::to_string(rank()) + " of " +
                            std::to_string(world()) + ", device " + std::to_string(device()) + ")";
  if (root < 0 || root >= world())
    return invalid_argument(where + ": root " + std::to_string(root) + " not in [0, " + std::to_string(world()) + ")");
  if (bytes > capacity_)
    return invalid_argument(where + ": " + std::to_string(bytes) + " bytes exceed the staging buffer of " +
                            std::to_string(capacity_));
  if (broken_) return failed_precondition(where + ": broken by an earlier failure: " + broken_reason_);
  if (bytes == 0) return ok_status();
  const bool is_root = rank() == root;
  if (is_root && send == nullptr) return invalid_argument(where + ": the root's send buffer is null");

  CurrentDevice current(device());
  GRPO_RETURN_IF_ERROR(current.status().with_context(where));
  cudaStream_t stream = static_cast<cudaStream_t>(stream_);
  auto fail = [&](const char* what, cudaError_t err) {
    broken_ = true;
    broken_reason_ = std::string(what) + ": " + cuda_text(err);
    return internal_error(where + ": " + broken_reason_);
  };
  if (is_root) {
    cudaError_t err = cudaMemcpyAsync(staging_, send, bytes, cudaMemcpyHostToDevice, stream);
    if (err != cudaSuccess) return fail("cudaMemcpyAsync host to device", err);
  }
  // Queued after the copy on the same stream; returns once the stream drained (or the timeout).
  GRPO_RETURN_IF_ERROR(comm_->broadcast(staging_, bytes, root, stream_).with_context(where));
  if (recv != nullptr) {
    cudaError_t err = cudaMemcpyAsync(recv, staging_, bytes, cudaMemcpyDeviceToHost, stream);
    if (err != cudaSuccess) return fail("cudaMemcpyAsync device to host", err);
    err = cudaStreamSynchronize(stream);
    if (err != cudaSuccess) return fail("cudaStreamSynchronize after the copy back", err);
  }
  return ok_status();
}

}  // namespace grpo::kernels
