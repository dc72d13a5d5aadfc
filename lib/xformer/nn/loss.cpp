#include "xformer/nn/loss.h"

namespace xformer::nn {

SmoothedLoss label_smoothed_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target,
                                          double epsilon, int64_t ignore_index) {
  auto logp = torch::log_softmax(logits.to(torch::kFloat), -1);  // (N, V)
  auto keep = target.ne(ignore_index);                             // (N)
  auto nll = -logp.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1);  // (N)
  auto uniform = -logp.sum(-1);                                                 // (N)
  const double V = static_cast<double>(logits.size(-1));
  auto per_token = (1.0 - epsilon) * nll + (epsilon / V) * uniform;
  SmoothedLoss out;
  out.loss = per_token.masked_fill(~keep, 0).sum();
  out.nll = nll.masked_fill(~keep, 0).sum();
  return out;
}

}  // namespace xformer::nn
