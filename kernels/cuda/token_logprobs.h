// CUDA per-token log-probabilities of target tokens straight from the last hidden states and the
// lm_head (or tied embedding) weight, without materialising the [tokens, vocab] logits: the GPU
// counterpart of the CPU path (kernels/cpu/token_logprobs.h driven by runtime/fused_logprobs.cc),
// computing the same function. With x_ij = (hidden_i . weight_j) / T:
//
//   logprob_i = x_{i,t_i} - logsumexp_j x_ij            (out_lse_i = logsumexp_j x_ij)
//   entropy_i = logsumexp_j x_ij - sum_j softmax_ij x_ij (optional; a metric, no gradient)
//
// Forward: for every vocabulary chunk c of `chunk` rows, one cuBLAS SGEMM writes the logits
// L_c = H W_c^T into an [n, cols] block of the workspace, and one kernel folds the block into a
// per-token online logsumexp (running max, running sum of exp(x - max), and for the entropy the
// running sum of exp(x - max) * (x - max), i.e. the sum of exp(x - max) * x kept relative to the
// max so that a peaked distribution's entropy does not cancel away); the last chunk writes the
// outputs. Backward: per chunk, the logits are recomputed, a kernel turns them in place into
// G_c = d(sum_i grad_out_i * logprob_i) / d logits = grad_out_i * ([j == t_i] - softmax_ij) / T,
// and two GEMMs accumulate grad_hidden += G_c W_c and write grad_weight[c] = G_c^T H.
// Peak extra memory is the workspace: one [n, min(chunk, v)] f32 block plus O(n) state.
//
// Precision: f32 storage and f32 accumulation (cuBLAS default math, no TF32 unless the process
// forces it, e.g. NVIDIA_TF32_OVERRIDE), expf/logf (no fast-math intrinsics).
//
// Conventions: every pointer named "device" lives in the memory of the current CUDA device
// (cudaSetDevice is the caller's business); matrices are row-major and contiguous: hidden [n, d],
// weight [v, d], grad_hidden [n, d], grad_weight [v, d]. `stream` is a cudaStream_t passed as
// void* (nullptr: the legacy default stream); all work is queued on it. The workspace must come
// from cudaMalloc (256-byte aligned) with at least cuda_token_logprobs_workspace_bytes() bytes,
// and must not be used by another call in flight. One cuBLAS handle per host thread and device is
// created on first use and kept until the thread exits. Calls from several host threads are fine
// as long as they use separate workspaces.
//
// Targets: every target must lie in [0, v). Targets live on the device, so each forward and
// backward call first runs a small check kernel and synchronises the stream once to read its
// result (like targets.min()/max().item() on a GPU tensor): an out-of-range target returns
// InvalidArgument naming the first bad token, before any logits are computed, and leaves the
// outputs untouched. Argument errors (shapes, temperature, workspace size) are found on the host
// without touching the device. CUDA and cuBLAS failures return Internal with the function and the
// error's name and text.
//
// Layering: this header is plain C++ (no CUDA include) so that any layer allowed to include
// kernels/ (runtime, actors, tests) may use it; the CUDA and cuBLAS headers themselves may be
// included only under kernels/cuda/ (tests/layering enforces this). It exists only in builds
// where CMake found nvcc and GRPO_ENABLE_CUDA is on; such builds define GRPO_HAVE_CUDA=1 for every
// target that links grpo_kernels_cuda.
#pragma once

#include <cstdint>

#include "base/status.h"

namespace grpo::kernels {

// ---- Device discovery and plain memory helpers (for tests and tools; the runtime has its own
// allocator). None of them aborts or throws when no driver or device is present.

// OK when at least one CUDA device is visible; Unavailable otherwise, with the CUDA runtime's error
// ("cudaGetDeviceCount: cudaErrorNoDevice (no CUDA-capable device is detected)", ...).
Status cuda_device_status();
// cuda_device_status().ok().
bool cuda_device_available();

Status cuda_alloc(void** device_ptr, int64_t bytes);  // cudaMalloc; bytes == 0 gives nullptr
Status cuda_free(void* device_ptr);                    // cudaFree; nullptr is fine
Status cuda_copy_to_device(void* device_dst, const void* host_src, int64_t bytes);  // synchronous
Status cuda_copy_to_host(void* host_dst, const void* device_src, int64_t bytes);    // synchronous
Status cuda_stream_synchronize(void* stream);

// ---- Fused lm_head + log-softmax + gather.

// Caller-owned device scratch memory.
struct CudaLogprobWorkspace {
  void* data = nullptr;  // device memory, 256-byte aligned (cudaMalloc)
  int64_t bytes = 0;     // its size
};

// Workspace bytes that forward and backward need for n tokens, vocabulary v and the given chunk:
// an [n, min(chunk, v)] f32 block, four [n] f32 state arrays and a flag, each 256-byte aligned,
// i.e. O(n * chunk), independent of v once v >= chunk. InvalidArgument for n < 0, v < 1,
// chunk < 1, or a size that overflows.
StatusOr<int64_t> cuda_token_logprobs_workspace_bytes(int64_t n, int64_t v, int64_t chunk);

// hidden [n, d], weight [v, d], targets [n] (int64, in [0, v)): device. n >= 0 (n == 0 does
// nothing), d >= 1, v >= 1, n, d and min(chunk, v) below 2^31, temperature > 0 and finite,
// chunk >= 1. Outputs [n] f32 on the device, each nullable: out_logprobs, out_lse (the logsumexp
// of x, which the backward takes), out_entropy (in nats).
Status cuda_token_logprobs_forward(const float* hidden, const float* weight,
                                   const int64_t* targets, int64_t n, int64_t d, int64_t v,
                                   float temperature, int64_t chunk, float* out_logprobs,
                                   float* out_lse, float* out_entropy,
                                   CudaLogprobWorkspace workspace, void* stream);

// Gradient of sum_i grad_out_i * logprob_i with respect to hidden and weight. Same inputs as the
// forward (chunk may differ from the forward's), plus lse [n] (the forward's out_lse) and grad_out
// [n], device. grad_hidden [n, d] and grad_weight [v, d] (device) are overwritten; either may be
// null to skip it. With n == 0, grad_weight is set to zero.
Status cuda_token_logprobs_backward(const float* hidden, const float* weight,
                                    const int64_t* targets, int64_t n, int64_t d, int64_t v,
                                    float temperature, int64_t chunk, const float* lse,
                                    const float* grad_out, float* grad_hidden, float* grad_weight,
                                    CudaLogprobWorkspace workspace, void* stream);

}  // namespace grpo::kernels
