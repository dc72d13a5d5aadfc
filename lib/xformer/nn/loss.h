// Label-smoothed cross entropy (Szegedy et al. 2016) as the Transformer paper trains with it:
// the target distribution puts 1 - eps + eps/V on the reference token and eps/V on every
// token, i.e. loss = (1 - eps) * nll + eps/V * sum_v(-log p_v). Padding positions are ignored.
#pragma once
#include <torch/torch.h>

namespace xformer::nn {

struct SmoothedLoss {
  torch::Tensor loss;  // scalar, summed over non-ignored positions
  torch::Tensor nll;   // scalar, summed plain negative log-likelihood (for perplexity)
};

// logits (N, V), target (N) long.
SmoothedLoss label_smoothed_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target,
                                          double epsilon, int64_t ignore_index);

}  // namespace xformer::nn
