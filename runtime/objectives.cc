#include "runtime/objectives.h"

#include <algorithm>

namespace grpo::runtime {

Status validate_objective(const GrpoOptions& o) {
  if (!(o.clip_eps >= 0)) return invalid_argument("grpo: clip_eps must be >= 0");
  if (!(o.kl_coef >= 0)) return invalid_argument("grpo: kl_coef must be >= 0");
  if (o.kl_estimator != "k1" && o.kl_estimator != "k2" && o.kl_estimator != "k3")
    return invalid_argument("grpo: kl_estimator must be k1, k2 or k3, got '" + o.kl_estimator + "'");
  if (o.aggregation != "seq_mean" && o.aggregation != "token_mean" && o.aggregation != "seq_sum_norm")
    return invalid_argument("grpo: aggregation must be seq_mean, token_mean or seq_sum_norm, got '" +
                            o.aggregation + "'");
  if (o.importance != "behaviour" && o.importance != "decoupled")
    return invalid_argument("grpo: importance must be behaviour or decoupled, got '" + o.importance + "'");
  if (!(o.is_cap >= 0)) return invalid_argument("grpo: is_cap must be >= 0");
  if (!(o.length_norm >= 0)) return invalid_argument("grpo: length_norm must be >= 0");
  return ok_status();
}

ObjectiveResult grpo_objective(const torch::Tensor& logp, const torch::Tensor& behaviour,
                               const torch::Tensor& ref, const torch::Tensor& mask,
                               const torch::Tensor& advantages, const GrpoOptions& o,
                               const BatchTotals* totals) {
  ObjectiveResult out;
  const double clip_high = o.clip_high >= 0 ? o.clip_high : o.clip_eps;
  auto adv = advantages.view({-1, 1});
  torch::Tensor ratio, weight;
  if (o.importance == "decoupled") {
    auto prox = logp.detach();
    ratio = ((logp - prox) * mask).exp();
    weight = ((prox - behaviour) * mask).exp();
    if (o.is_cap > 0) {
      auto capped = (weight > o.is_cap).to(torch::kFloat32) * mask;
      out.weight_capped_fraction = capped.sum().item<double>();
      weight = weight.clamp_max(o.is_cap);
    }
  } else {
    ratio = ((logp - behaviour) * mask).exp();
    weight = torch::ones_like(ratio);
  }
  auto clipped = ratio.clamp(1.0 - o.clip_eps, 1.0 + clip_high);
  auto surrogate = torch::min(ratio * adv, clipped * adv);
  auto per_token = -(weight * surrogate);
  torch::Tensor kl;
  if (o.kl_coef > 0 && ref.defined()) {
    auto x = (ref - logp) * mask;
    if (o.kl_estimator == "k1") {
      kl = -x;
    } else if (o.kl_estimator == "k2") {
      kl = 0.5 * x * x;
    } else {
      kl = x.exp() - x - 1;
    }
    per_token = per_token + o.kl_coef * kl;
  }
  per_token = per_token * mask;
  const auto seq_tokens = mask.sum(1);
  BatchTotals whole;
  if (totals != nullptr) {
    whole = *totals;
  } else {
    whole.sequences = mask.size(0);
    whole.tokens = mask.sum().item<int64_t>();
    whole.max_response = mask.numel() > 0 ? seq_tokens.max().item<int64_t>() : 0;
  }
  const double sequences = std::max<double>(1.0, static_cast<double>(whole.sequences));
  if (o.aggregation == "token_mean") {
    out.loss = per_token.sum() / std::max<double>(1.0, static_cast<double>(whole.tokens));
  } else if (o.aggregation == "seq_sum_norm") {
    const double norm =
        o.length_norm > 0 ? o.length_norm : std::max(1.0, static_cast<double>(whole.max_response));
    out.loss = per_token.sum() / (norm * sequences);
  } else {
    out.loss = (per_token.sum(1) / seq_tokens.clamp_min(1)).sum() / sequences;
  }

  torch::NoGradGuard no_grad;
  out.tokens = mask.sum().item<int64_t>();
  const double denom = std::max<double>(1.0, static_cast<double>(out.tokens));
  const auto valid = mask > 0;
  auto r = ratio.detach();
  if (kl.defined()) out.kl = (kl.detach() * mask).sum().item<double>() / denom;
  out.ratio_mean = (r * mask).sum().item<double>() / denom;
  out.ratio_max = out.tokens > 0 ? r.masked_select(valid).max().item<double>() : 0.0;
  // The clipped branch is taken where min() picks it and it differs from the unclipped one.
  auto took_clip = ((clipped.detach() * adv) < (r * adv)).to(torch::kFloat32) * mask;
  out.clip_fraction = took_clip.sum().item<double>() / denom;
  auto w = weight.detach();
  out.weight_mean = (w * mask).sum().item<double>() / denom;
  out.weight_max = out.tokens > 0 ? w.masked_select(valid).max().item<double>() : 0.0;
  out.weight_min = out.tokens > 0 ? w.masked_select(valid).min().item<double>() : 0.0;
  out.weight_capped_fraction /= denom;
  return out;
}

}  // namespace grpo::runtime
