#include "kernels/cuda/token_logprobs.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace grpo::kernels {
namespace {

// ---- Errors ------------------------------------------------------------------------------------

Status cuda_error(const char* what, cudaError_t err) {
  return internal_error(std::string(what) + ": " + cudaGetErrorName(err) + " (" +
                        cudaGetErrorString(err) + ")");
}

Status cublas_error(const char* what, cublasStatus_t st) {
  return internal_error(std::string(what) + ": " + cublasGetStatusName(st) + " (" +
                        cublasGetStatusString(st) + ")");
}

#define GRPO_CUDA_RETURN(what, expr)                   \
  do {                                                 \
    const cudaError_t grpo_cuda_err_ = (expr);         \
    if (grpo_cuda_err_ != cudaSuccess) return cuda_error((what), grpo_cuda_err_); \
  } while (0)

#define GRPO_CUBLAS_RETURN(what, expr)                 \
  do {                                                 \
    const cublasStatus_t grpo_cublas_st_ = (expr);     \
    if (grpo_cublas_st_ != CUBLAS_STATUS_SUCCESS) return cublas_error((what), grpo_cublas_st_); \
  } while (0)

// A kernel launch reports configuration errors through cudaGetLastError.
#define GRPO_CUDA_LAUNCHED(what) GRPO_CUDA_RETURN((what), cudaGetLastError())

// ---- cuBLAS handles: one per host thread and device, destroyed when the thread exits ------------

struct HandleCache {
  std::vector<cublasHandle_t> by_device;
  ~HandleCache() {
    for (cublasHandle_t h : by_device)
      if (h != nullptr) cublasDestroy(h);
  }
};

Status handle_for(cudaStream_t stream, cublasHandle_t* out) {
  thread_local HandleCache cache;
  int device = 0;
  GRPO_CUDA_RETURN("cudaGetDevice", cudaGetDevice(&device));
  if (device < 0) return internal_error("cudaGetDevice: negative device");
  if (static_cast<size_t>(device) >= cache.by_device.size())
    cache.by_device.resize(static_cast<size_t>(device) + 1, nullptr);
  cublasHandle_t& h = cache.by_device[static_cast<size_t>(device)];
  if (h == nullptr) {
    GRPO_CUBLAS_RETURN("cublasCreate", cublasCreate(&h));
    // Plain f32 products (no TF32): the kernels promise f32 numerics.
    GRPO_CUBLAS_RETURN("cublasSetMathMode", cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
  }
  GRPO_CUBLAS_RETURN("cublasSetStream", cublasSetStream(h, stream));
  *out = h;
  return ok_status();
}

// ---- Workspace layout --------------------------------------------------------------------------

constexpr int64_t kAlign = 256;

int64_t align_up(int64_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

struct Layout {
  int64_t step = 0;  // vocabulary rows per chunk: min(chunk, v)
  int64_t block = 0, run_max = 0, run_sum = 0, run_ent = 0, target = 0, bad = 0;  // offsets
  int64_t total = 0;
};

StatusOr<Layout> layout_for(int64_t n, int64_t v, int64_t chunk) {
  if (n < 0) return invalid_argument("cuda_token_logprobs: n must be >= 0, got " + std::to_string(n));
  if (v < 1) return invalid_argument("cuda_token_logprobs: v must be >= 1, got " + std::to_string(v));
  if (chunk < 1)
    return invalid_argument("cuda_token_logprobs: chunk must be >= 1, got " + std::to_string(chunk));
  Layout l;
  l.step = std::min(chunk, v);
  // Keep every size well inside int64 (and the block inside what one allocation can be).
  constexpr int64_t kMax = int64_t{1} << 60;
  if (n > 0 && l.step > kMax / 4 / n)
    return invalid_argument("cuda_token_logprobs: workspace for n = " + std::to_string(n) +
                            ", chunk = " + std::to_string(l.step) + " overflows");
  const int64_t state = align_up(n * int64_t{sizeof(float)});
  l.block = 0;
  l.run_max = align_up(n * l.step * int64_t{sizeof(float)});
  l.run_sum = l.run_max + state;
  l.run_ent = l.run_sum + state;
  l.target = l.run_ent + state;
  l.bad = l.target + state;
  l.total = l.bad + align_up(sizeof(unsigned long long));
  return l;
}

template <typename T>
T* at(const CudaLogprobWorkspace& ws, int64_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(ws.data) + offset);
}

// ---- Argument checks (host only) ----------------------------------------------------------------

Status check_args(const char* fn, const void* hidden, const void* weight, const void* targets,
                  int64_t n, int64_t d, int64_t v, float temperature, int64_t chunk,
                  const CudaLogprobWorkspace& ws, Layout* layout) {
  const std::string f = fn;
  if (d < 1) return invalid_argument(f + ": d must be >= 1, got " + std::to_string(d));
  if (!(temperature > 0.0f) || !std::isfinite(temperature))
    return invalid_argument(f + ": temperature must be finite and > 0, got " +
                            std::to_string(temperature));
  auto l = layout_for(n, v, chunk);
  if (!l.ok()) return l.status();
  *layout = l.value();
  if (n > INT_MAX || d > INT_MAX || layout->step > INT_MAX)
    return invalid_argument(f + ": n, d and min(chunk, v) must be below 2^31 (cuBLAS int sizes)");
  if (n > 0 && (hidden == nullptr || weight == nullptr || targets == nullptr))
    return invalid_argument(f + ": null hidden, weight or targets");
  if (ws.data == nullptr || ws.bytes < layout->total)
    return invalid_argument(f + ": workspace of " + std::to_string(ws.bytes) + " bytes at " +
                            (ws.data == nullptr ? "null" : "a device address") + ", need " +
                            std::to_string(layout->total));
  if (reinterpret_cast<uintptr_t>(ws.data) % kAlign != 0)
    return invalid_argument(f + ": workspace must be 256-byte aligned (cudaMalloc)");
  return ok_status();
}

// ---- Kernels -----------------------------------------------------------------------------------

constexpr int kMaxThreads = 256;
constexpr int kWarp = 32;

// Threads per row block: one warp for short rows, up to kMaxThreads.
int threads_for(int64_t cols) {
  const int64_t rounded = (cols + kWarp - 1) / kWarp * kWarp;
  return static_cast<int>(std::max<int64_t>(kWarp, std::min<int64_t>(kMaxThreads, rounded)));
}

// Online logsumexp accumulator over x values: m = max, s = sum exp(x - m),
// e = sum exp(x - m) * (x - m) (only with the entropy). Empty: m = -inf, s = e = 0.
struct Acc {
  float m, s, e;
};

// Folds b into a. Either may be empty; a NaN anywhere stays a NaN.
template <bool kEntropy>
__device__ __forceinline__ Acc combine(Acc a, Acc b) {
  const float m = fmaxf(a.m, b.m);
  Acc r{m, 0.0f, 0.0f};
  if (m == -INFINITY) return r;
  if (a.m != -INFINITY) {
    const float ra = expf(a.m - m);
    r.s += a.s * ra;
    if (kEntropy) r.e += ra * (a.e + (a.m - m) * a.s);
  }
  if (b.m != -INFINITY) {
    const float rb = expf(b.m - m);
    r.s += b.s * rb;
    if (kEntropy) r.e += rb * (b.e + (b.m - m) * b.s);
  }
  return r;
}

// Adds one value x to a.
template <bool kEntropy>
__device__ __forceinline__ void push(Acc& a, float x) {
  if (x > a.m) {
    if (a.m == -INFINITY) {
      a = Acc{x, 1.0f, 0.0f};
    } else {
      const float d = a.m - x;  // < 0
      const float r = expf(d);
      if (kEntropy) a.e = r * (a.e + d * a.s);
      a.s = a.s * r + 1.0f;
      a.m = x;
    }
  } else if (x != -INFINITY) {  // exp(-inf) contributes nothing
    const float d = x - a.m;     // <= 0 (a NaN propagates)
    const float ex = expf(d);
    a.s += ex;
    if (kEntropy) a.e += ex * d;
  }
}

template <bool kEntropy>
__device__ __forceinline__ Acc warp_combine(Acc a) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    Acc b;
    b.m = __shfl_down_sync(0xffffffffu, a.m, offset);
    b.s = __shfl_down_sync(0xffffffffu, a.s, offset);
    b.e = kEntropy ? __shfl_down_sync(0xffffffffu, a.e, offset) : 0.0f;
    a = combine<kEntropy>(a, b);
  }
  return a;
}

// Thread 0 gets the block's combined accumulator (other threads: unspecified).
template <bool kEntropy>
__device__ __forceinline__ Acc block_combine(Acc a) {
  __shared__ Acc partial[kMaxThreads / kWarp];
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  a = warp_combine<kEntropy>(a);
  if (lane == 0) partial[warp] = a;
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x / kWarp;
    a = lane < warps ? partial[lane] : Acc{-INFINITY, 0.0f, 0.0f};
    a = warp_combine<kEntropy>(a);
  }
  return a;
}

// One block per token row of the [n, cols] logits block (columns [c0, c0 + cols) of the
// vocabulary). first: ignore the running state (it is uninitialised); last: write the outputs
// instead of the state.
template <bool kEntropy>
__global__ void __launch_bounds__(kMaxThreads)
fold_chunk_kernel(const float* __restrict__ block, int64_t cols, int64_t c0,
                  const int64_t* __restrict__ targets, float inv_t, bool first, bool last,
                  float* __restrict__ run_max, float* __restrict__ run_sum,
                  float* __restrict__ run_ent, float* __restrict__ target_x,
                  float* __restrict__ out_logprobs, float* __restrict__ out_lse,
                  float* __restrict__ out_entropy) {
  const int64_t i = blockIdx.x;
  const float* row = block + i * cols;
  Acc acc{-INFINITY, 0.0f, 0.0f};
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) push<kEntropy>(acc, row[j] * inv_t);
  acc = block_combine<kEntropy>(acc);
  if (threadIdx.x != 0) return;

  float tx = first ? 0.0f : target_x[i];
  const int64_t tcol = targets[i] - c0;
  if (tcol >= 0 && tcol < cols) tx = row[tcol] * inv_t;
  if (!first) acc = combine<kEntropy>(Acc{run_max[i], run_sum[i], kEntropy ? run_ent[i] : 0.0f}, acc);
  if (!last) {
    run_max[i] = acc.m;
    run_sum[i] = acc.s;
    if (kEntropy) run_ent[i] = acc.e;
    target_x[i] = tx;
    return;
  }
  const float log_s = logf(acc.s);
  const float lse = acc.m + log_s;
  if (out_lse != nullptr) out_lse[i] = lse;
  if (out_logprobs != nullptr) out_logprobs[i] = tx - lse;
  // entropy = lse - sum_j p_j x_j = log s - e / s  (x relative to m on both sides).
  if (kEntropy) out_entropy[i] = log_s - acc.e / acc.s;
}

// Turns the [n, cols] logits block, in place, into d(sum_i grad_out_i * logprob_i) / d logits.
__global__ void __launch_bounds__(kMaxThreads)
grad_chunk_kernel(float* __restrict__ block, int64_t cols, int64_t c0,
                  const int64_t* __restrict__ targets, const float* __restrict__ lse,
                  const float* __restrict__ grad_out, float inv_t) {
  const int64_t i = blockIdx.x;
  float* row = block + i * cols;
  const float g = grad_out[i] * inv_t;
  const float l = lse[i];
  const int64_t tcol = targets[i] - c0;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    float val = -g * expf(row[j] * inv_t - l);
    if (j == tcol) val += g;
    row[j] = val;
  }
}

// first_bad = the smallest token index whose target is outside [0, v) (stays all-ones if none).
__global__ void check_targets_kernel(const int64_t* __restrict__ targets, int64_t n, int64_t v,
                                     unsigned long long* first_bad) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = targets[i];
    if (t < 0 || t >= v) atomicMin(first_bad, static_cast<unsigned long long>(i));
  }
}

// Runs the target check and waits for it (see the header).
Status validate_targets(const char* fn, const int64_t* targets, int64_t n, int64_t v,
                        const CudaLogprobWorkspace& ws, const Layout& l, cudaStream_t stream) {
  if (n == 0) return ok_status();
  auto* bad = at<unsigned long long>(ws, l.bad);
  GRPO_CUDA_RETURN("cudaMemsetAsync", cudaMemsetAsync(bad, 0xff, sizeof(*bad), stream));
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 1024);
  check_targets_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(targets, n, v, bad);
  GRPO_CUDA_LAUNCHED("check_targets_kernel launch");
  unsigned long long first_bad = 0;
  GRPO_CUDA_RETURN("cudaMemcpyAsync(target check)",
                   cudaMemcpyAsync(&first_bad, bad, sizeof(first_bad), cudaMemcpyDeviceToHost,
                                   stream));
  GRPO_CUDA_RETURN("cudaStreamSynchronize(target check)", cudaStreamSynchronize(stream));
  if (first_bad == ~0ull) return ok_status();
  int64_t value = 0;
  GRPO_CUDA_RETURN("cudaMemcpyAsync(bad target)",
                   cudaMemcpyAsync(&value, targets + first_bad, sizeof(value),
                                   cudaMemcpyDeviceToHost, stream));
  GRPO_CUDA_RETURN("cudaStreamSynchronize(bad target)", cudaStreamSynchronize(stream));
  return invalid_argument(std::string(fn) + ": target " + std::to_string(value) + " of token " +
                          std::to_string(first_bad) + " is outside [0, " + std::to_string(v) +
                          ")");
}

// Row-major logits block [n, cols] = hidden [n, d] . weight[c0 : c0 + cols]^T, i.e. in cuBLAS's
// column-major terms block^T [cols, n] = W_c [cols, d] (op T of the col-major [d, cols]) times
// hidden^T [d, n].
Status chunk_logits(cublasHandle_t h, const float* hidden, const float* weight, int64_t n,
                    int64_t d, int64_t c0, int64_t cols, float* block) {
  const float one = 1.0f, zero = 0.0f;
  GRPO_CUBLAS_RETURN("cublasSgemm(logits)",
                     cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(cols),
                                 static_cast<int>(n), static_cast<int>(d), &one, weight + c0 * d,
                                 static_cast<int>(d), hidden, static_cast<int>(d), &zero, block,
                                 static_cast<int>(cols)));
  return ok_status();
}

}  // namespace

// ---- Device helpers ----------------------------------------------------------------------------

Status cuda_device_status() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // leave no error behind for the next caller
    return unavailable(std::string("cudaGetDeviceCount: ") + cudaGetErrorName(err) + " (" +
                       cudaGetErrorString(err) + ")");
  }
  if (count <= 0) return unavailable("cudaGetDeviceCount: 0 devices");
  return ok_status();
}

bool cuda_device_available() { return cuda_device_status().ok(); }

Status cuda_alloc(void** device_ptr, int64_t bytes) {
  if (device_ptr == nullptr || bytes < 0) return invalid_argument("cuda_alloc: bad arguments");
  *device_ptr = nullptr;
  if (bytes == 0) return ok_status();
  GRPO_CUDA_RETURN("cudaMalloc", cudaMalloc(device_ptr, static_cast<size_t>(bytes)));
  return ok_status();
}

Status cuda_free(void* device_ptr) {
  if (device_ptr == nullptr) return ok_status();
  GRPO_CUDA_RETURN("cudaFree", cudaFree(device_ptr));
  return ok_status();
}

Status cuda_copy_to_device(void* device_dst, const void* host_src, int64_t bytes) {
  if (bytes < 0) return invalid_argument("cuda_copy_to_device: negative size");
  if (bytes == 0) return ok_status();
  GRPO_CUDA_RETURN("cudaMemcpy(host to device)",
                   cudaMemcpy(device_dst, host_src, static_cast<size_t>(bytes),
                              cudaMemcpyHostToDevice));
  return ok_status();
}

Status cuda_copy_to_host(void* host_dst, const void* device_src, int64_t bytes) {
  if (bytes < 0) return invalid_argument("cuda_copy_to_host: negative size");
  if (bytes == 0) return ok_status();
  GRPO_CUDA_RETURN("cudaMemcpy(device to host)",
                   cudaMemcpy(host_dst, device_src, static_cast<size_t>(bytes),
                              cudaMemcpyDeviceToHost));
  return ok_status();
}

Status cuda_stream_synchronize(void* stream) {
  GRPO_CUDA_RETURN("cudaStreamSynchronize",
                   cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
  return ok_status();
}

// ---- Fused logprobs -----------------------------------------------------------------------------

StatusOr<int64_t> cuda_token_logprobs_workspace_bytes(int64_t n, int64_t v, int64_t chunk) {
  auto l = layout_for(n, v, chunk);
  if (!l.ok()) return l.status();
  return l.value().total;
}

Status cuda_token_logprobs_forward(const float* hidden, const float* weight,
                                   const int64_t* targets, int64_t n, int64_t d, int64_t v,
                                   float temperature, int64_t chunk, float* out_logprobs,
                                   float* out_lse, float* out_entropy,
                                   CudaLogprobWorkspace workspace, void* stream_ptr) {
  constexpr const char* kFn = "cuda_token_logprobs_forward";
  Layout l;
  GRPO_RETURN_IF_ERROR(
      check_args(kFn, hidden, weight, targets, n, d, v, temperature, chunk, workspace, &l));
  if (n == 0) return ok_status();
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  GRPO_RETURN_IF_ERROR(validate_targets(kFn, targets, n, v, workspace, l, stream));
  cublasHandle_t h = nullptr;
  GRPO_RETURN_IF_ERROR(handle_for(stream, &h));

  const float inv_t = 1.0f / temperature;
  float* block = at<float>(workspace, l.block);
  float* run_max = at<float>(workspace, l.run_max);
  float* run_sum = at<float>(workspace, l.run_sum);
  float* run_ent = at<float>(workspace, l.run_ent);
  float* target_x = at<float>(workspace, l.target);
  for (int64_t c0 = 0; c0 < v; c0 += l.step) {
    const int64_t cols = std::min(l.step, v - c0);
    GRPO_RETURN_IF_ERROR(chunk_logits(h, hidden, weight, n, d, c0, cols, block));
    const bool first = c0 == 0, last = c0 + cols >= v;
    const dim3 grid(static_cast<unsigned>(n));
    const int threads = threads_for(cols);
    if (out_entropy != nullptr) {
      fold_chunk_kernel<true><<<grid, threads, 0, stream>>>(
          block, cols, c0, targets, inv_t, first, last, run_max, run_sum, run_ent, target_x,
          out_logprobs, out_lse, out_entropy);
    } else {
      fold_chunk_kernel<false><<<grid, threads, 0, stream>>>(
          block, cols, c0, targets, inv_t, first, last, run_max, run_sum, run_ent, target_x,
          out_logprobs, out_lse, nullptr);
    }
    GRPO_CUDA_LAUNCHED("fold_chunk_kernel launch");
  }
  return ok_status();
}

Status cuda_token_logprobs_backward(const float* hidden, const float* weight,
                                    const int64_t* targets, int64_t n, int64_t d, int64_t v,
                                    float temperature, int64_t chunk, const float* lse,
                                    const float* grad_out, float* grad_hidden, float* grad_weight,
                                    CudaLogprobWorkspace workspace, void* stream_ptr) {
  constexpr const char* kFn = "cuda_token_logprobs_backward";
  Layout l;
  GRPO_RETURN_IF_ERROR(
      check_args(kFn, hidden, weight, targets, n, d, v, temperature, chunk, workspace, &l));
  if (n > 0 && (lse == nullptr || grad_out == nullptr))
    return invalid_argument(std::string(kFn) + ": null lse or grad_out");
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  if (grad_hidden == nullptr && grad_weight == nullptr) return ok_status();
  if (n == 0) {  // no token: the weight gradient is zero
    if (grad_weight != nullptr)
      GRPO_CUDA_RETURN("cudaMemsetAsync(grad_weight)",
                       cudaMemsetAsync(grad_weight, 0,
                                       static_cast<size_t>(v * d) * sizeof(float), stream));
    return ok_status();
  }
  GRPO_RETURN_IF_ERROR(validate_targets(kFn, targets, n, v, workspace, l, stream));
  cublasHandle_t h = nullptr;
  GRPO_RETURN_IF_ERROR(handle_for(stream, &h));

  const float inv_t = 1.0f / temperature;
  const float one = 1.0f, zero = 0.0f;
  float* block = at<float>(workspace, l.block);
  for (int64_t c0 = 0; c0 < v; c0 += l.step) {
    const int64_t cols = std::min(l.step, v - c0);
    GRPO_RETURN_IF_ERROR(chunk_logits(h, hidden, weight, n, d, c0, cols, block));
    grad_chunk_kernel<<<static_cast<unsigned>(n), threads_for(cols), 0, stream>>>(
        block, cols, c0, targets, lse, grad_out, inv_t);
    GRPO_CUDA_LAUNCHED("grad_chunk_kernel launch");
    const float* w = weight + c0 * d;
    if (grad_hidden != nullptr) {
      // grad_hidden [n, d] (+)= G [n, cols] W_c [cols, d]; column-major:
      // grad_hidden^T [d, n] (+)= W_c^T [d, cols] G^T [cols, n]. The first chunk overwrites.
      GRPO_CUBLAS_RETURN("cublasSgemm(grad_hidden)",
                         cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(d),
                                     static_cast<int>(n), static_cast<int>(cols), &one, w,
                                     static_cast<int>(d), block, static_cast<int>(cols),
                                     c0 == 0 ? &zero : &one, grad_hidden, static_cast<int>(d)));
    }
    if (grad_weight != nullptr) {
      // grad_weight[c] [cols, d] = G^T [cols, n] H [n, d]; column-major:
      // grad_weight[c]^T [d, cols] = H^T [d, n] G [n, cols] (op T of the col-major [cols, n]).
      GRPO_CUBLAS_RETURN("cublasSgemm(grad_weight)",
                         cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, static_cast<int>(d),
                                     static_cast<int>(cols), static_cast<int>(n), &one, hidden,
                                     static_cast<int>(d), block, static_cast<int>(cols), &zero,
                                     grad_weight + c0 * d, static_cast<int>(d)));
    }
  }
  return ok_status();
}

}  // namespace grpo::kernels
