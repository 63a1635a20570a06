#include "runtime/fused_logprobs.h"

#include <algorithm>

#include "base/status.h"
#include "kernels/cpu/token_logprobs.h"
#ifdef GRPO_HAVE_CUDA
#include "kernels/cuda/token_logprobs.h"
#endif

namespace grpo::runtime {
namespace {

void check_inputs(const torch::Tensor& hidden, const torch::Tensor& weight,
                  const torch::Tensor& targets, double temperature, int64_t chunk) {
  GRPO_CHECK_MSG(hidden.dim() == 2 && weight.dim() == 2 && hidden.size(1) == weight.size(1),
                 "fused_token_logprobs: hidden [N, D] and weight [V, D] expected");
  GRPO_CHECK_MSG(hidden.scalar_type() == torch::kFloat && weight.scalar_type() == torch::kFloat,
                 "fused_token_logprobs: f32 hidden and weight expected");
  GRPO_CHECK_MSG(targets.dim() == 1 && targets.size(0) == hidden.size(0) &&
                     targets.scalar_type() == torch::kLong,
                 "fused_token_logprobs: targets [N] int64 expected");
  GRPO_CHECK_MSG(hidden.device() == weight.device() && hidden.device() == targets.device(),
                 "fused_token_logprobs: hidden, weight and targets must be on one device");
#ifdef GRPO_HAVE_CUDA
  GRPO_CHECK_MSG(hidden.device().is_cpu() || hidden.device().is_cuda(),
                 "fused_token_logprobs: CPU or CUDA tensors expected");
#else
  GRPO_CHECK_MSG(hidden.device().is_cpu(),
                 "fused_token_logprobs: CPU tensors expected (built without CUDA)");
#endif
  GRPO_CHECK_MSG(temperature > 0.0, "fused_token_logprobs: temperature must be > 0");
  GRPO_CHECK_MSG(chunk >= 1, "fused_token_logprobs: chunk must be >= 1");
  // On CUDA the kernel checks the targets on the device (one flag, no [N] copy to the host).
  if (targets.numel() > 0 && hidden.device().is_cpu()) {
    GRPO_CHECK_MSG(targets.min().item<int64_t>() >= 0 &&
                       targets.max().item<int64_t>() < weight.size(0),
                   "fused_token_logprobs: target out of [0, vocab)");
  }
}

// A contiguous [n, cols] view at the start of a reused contiguous [n, step] buffer (cols <= step),
// so every chunk, the last shorter one included, is a plain row-major block for BLAS and the kernel.
torch::Tensor first_rows(const torch::Tensor& block, int64_t n, int64_t cols) {
  return block.view({-1}).narrow(0, 0, n * cols).view({n, cols});
}

#ifdef GRPO_HAVE_CUDA
// The CUDA kernels (kernels/cuda/token_logprobs.h) on LibTorch tensors: a device workspace of one
// [N, chunk] block, the default stream.
kernels::CudaLogprobWorkspace cuda_workspace(const torch::Tensor& like, int64_t n, int64_t vocab,
                                             int64_t chunk, torch::Tensor* keep) {
  auto bytes = kernels::cuda_token_logprobs_workspace_bytes(n, vocab, chunk);
  GRPO_CHECK_MSG(bytes.ok(), "fused_token_logprobs: " + bytes.status().to_string());
  *keep = torch::empty({std::max<int64_t>(*bytes, 1)}, like.options().dtype(torch::kUInt8));
  return {keep->data_ptr(), *bytes};
}

void cuda_or_throw(const Status& st) {
  if (!st.ok()) throw std::runtime_error("fused_token_logprobs (CUDA): " + st.to_string());
}
#endif

}  // namespace

torch::autograd::variable_list FusedTokenLogprobs::forward(
    torch::autograd::AutogradContext* ctx, const torch::Tensor& hidden_in,
    const torch::Tensor& weight_in, const torch::Tensor& targets_in, double temperature,
    int64_t chunk, bool with_entropy) {
  check_inputs(hidden_in, weight_in, targets_in, temperature, chunk);
  const torch::Tensor hidden = hidden_in.contiguous();
  const torch::Tensor weight = weight_in.contiguous();
  const torch::Tensor targets = targets_in.contiguous();
  const int64_t n = hidden.size(0);
  const int64_t vocab = weight.size(0);
  const float inv_t = static_cast<float>(1.0 / temperature);
#ifdef GRPO_HAVE_CUDA
  if (hidden.is_cuda()) {
    torch::Tensor keep;
    auto ws = cuda_workspace(hidden, n, vocab, chunk, &keep);
    torch::Tensor logprobs = torch::empty({n}, hidden.options());
    torch::Tensor lse = torch::empty({n}, hidden.options());
    torch::Tensor entropy = torch::empty({with_entropy ? n : 0}, hidden.options());
    cuda_or_throw(kernels::cuda_token_logprobs_forward(
        hidden.data_ptr<float>(), weight.data_ptr<float>(), targets.data_ptr<int64_t>(), n,
        hidden.size(1), vocab, static_cast<float>(temperature), chunk, logprobs.data_ptr<float>(),
        lse.data_ptr<float>(), with_entropy ? entropy.data_ptr<float>() : nullptr, ws, nullptr));
    ctx->mark_non_differentiable({entropy});
    ctx->save_for_backward({hidden, weight, targets, lse});
    ctx->saved_data["inv_t"] = static_cast<double>(inv_t);
    ctx->saved_data["chunk"] = std::min(chunk, std::max<int64_t>(vocab, 1));
    return {logprobs, entropy};
  }
#endif

  const auto f32 = torch::TensorOptions().dtype(torch::kFloat);
  torch::Tensor state = torch::empty({4, n}, f32);
  kernels::TokenLogprobState st{state[0].data_ptr<float>(), state[1].data_ptr<float>(),
                                state[2].data_ptr<float>(),
                                with_entropy ? state[3].data_ptr<float>() : nullptr};
  kernels::token_logprobs_init(n, st);
  const int64_t step = std::min(chunk, std::max<int64_t>(vocab, 1));
  torch::Tensor block = torch::empty({n, step}, f32);  // reused for every chunk
  for (int64_t c0 = 0; c0 < vocab; c0 += step) {
    const int64_t cols = std::min(step, vocab - c0);
    torch::Tensor logits = first_rows(block, n, cols);
    torch::mm_out(logits, hidden, weight.narrow(0, c0, cols).t());
    kernels::token_logprobs_chunk_forward(logits.data_ptr<float>(), n, cols, logits.stride(0), c0,
                                          targets.data_ptr<int64_t>(), inv_t, st);
  }
  torch::Tensor logprobs = torch::empty({n}, f32);
  torch::Tensor lse = torch::empty({n}, f32);
  kernels::token_logprobs_finalize(n, st, logprobs.data_ptr<float>(), lse.data_ptr<float>());
  torch::Tensor entropy = torch::empty({with_entropy ? n : 0}, f32);
  if (with_entropy) kernels::token_logprobs_entropy(n, st, entropy.data_ptr<float>());
  ctx->mark_non_differentiable({entropy});

  ctx->save_for_backward({hidden, weight, targets, lse});
  ctx->saved_data["inv_t"] = static_cast<double>(inv_t);
  ctx->saved_data["chunk"] = step;
  return {logprobs, entropy};
}

torch::autograd::variable_list FusedTokenLogprobs::backward(
    torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grad_outputs) {
  const auto saved = ctx->get_saved_variables();
  const torch::Tensor& hidden = saved[0];
  const torch::Tensor& weight = saved[1];
  const torch::Tensor& targets = saved[2];
  const torch::Tensor& lse = saved[3];
  const float inv_t = static_cast<float>(ctx->saved_data["inv_t"].toDouble());
  const int64_t step = ctx->saved_data["chunk"].toInt();
  const int64_t n = hidden.size(0);
  const int64_t vocab = weight.size(0);
  const bool want_hidden = ctx->needs_input_grad(0);
  const bool want_weight = ctx->needs_input_grad(1);

  torch::Tensor grad_out = grad_outputs[0];
  if (!grad_out.defined()) grad_out = torch::zeros({n}, hidden.options());
  grad_out = grad_out.to(torch::kFloat).contiguous();

  torch::Tensor grad_hidden = want_hidden ? torch::zeros_like(hidden) : torch::Tensor();
  torch::Tensor grad_weight = want_weight ? torch::empty_like(weight) : torch::Tensor();
#ifdef GRPO_HAVE_CUDA
  if (hidden.is_cuda()) {
    if (want_hidden || want_weight) {
      torch::Tensor keep;
      auto ws = cuda_workspace(hidden, n, vocab, step, &keep);
      cuda_or_throw(kernels::cuda_token_logprobs_backward(
          hidden.data_ptr<float>(), weight.data_ptr<float>(), targets.data_ptr<int64_t>(), n,
          hidden.size(1), vocab, static_cast<float>(1.0 / inv_t), step, lse.data_ptr<float>(),
          grad_out.data_ptr<float>(), want_hidden ? grad_hidden.data_ptr<float>() : nullptr,
          want_weight ? grad_weight.data_ptr<float>() : nullptr, ws, nullptr));
    }
    return {grad_hidden, grad_weight, torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor()};
  }
#endif
  if (want_hidden || want_weight) {
    torch::Tensor block = torch::empty({n, step}, hidden.options());
    for (int64_t c0 = 0; c0 < vocab; c0 += step) {
      const int64_t cols = std::min(step, vocab - c0);
      const torch::Tensor w = weight.narrow(0, c0, cols);
      torch::Tensor g = first_rows(block, n, cols);
      torch::mm_out(g, hidden, w.t());
      kernels::token_logprobs_chunk_backward(g.data_ptr<float>(), n, cols, g.stride(0), c0,
                                             targets.data_ptr<int64_t>(), lse.data_ptr<float>(),
                                             grad_out.data_ptr<float>(), inv_t);
      if (want_hidden) grad_hidden.addmm_(g, w);
      if (want_weight) {
        torch::Tensor gw = grad_weight.narrow(0, c0, cols);
        torch::mm_out(gw, g.t(), hidden);
      }
    }
  }
  return {grad_hidden, grad_weight, torch::Tensor(), torch::Tensor(), torch::Tensor(),
          torch::Tensor()};
}

torch::Tensor fused_token_logprobs(const torch::Tensor& hidden, const torch::Tensor& weight,
                                   const torch::Tensor& targets, double temperature,
                                   int64_t chunk) {
  return FusedTokenLogprobs::apply(hidden, weight, targets, temperature, chunk, false)[0];
}

LogprobsAndEntropy fused_token_logprobs_entropy(const torch::Tensor& hidden,
                                                const torch::Tensor& weight,
                                                const torch::Tensor& targets, double temperature,
                                                int64_t chunk) {
  auto out = FusedTokenLogprobs::apply(hidden, weight, targets, temperature, chunk, true);
  return {out[0], out[1]};
}

}  // namespace grpo::runtime
