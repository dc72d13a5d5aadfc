// Label-smoothed cross entropy (Szegedy et al. 2016) as the Transformer paper trains with it:
// the target distribution puts 1 - eps + eps/V on the reference token and eps/V on every
// token, i.e. loss = (1 - eps) * nll + eps/V * sum_v(-log p_v). Padding positions are ignored.
#pragma once
#include <torch/torch.h>

namespace xformer::nn {

struct SmoothedLoss {
  torch::Tensor loss;  // scalar, summed over non-ignored positions
  torch::Tensor nll;   // scalar, summed plain negative log-likelihood (for perplexity)
  // Both in float32, computed from float16/bfloat16/float32 inputs; in double from doubles.
};

// logits (N, V), target (N) long.
SmoothedLoss label_smoothed_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target,
                                          double epsilon, int64_t ignore_index);

// The same loss of logits = hidden · weightᵀ (an output projection without bias), fused with
// that projection: hidden (N, D), weight (V, D), target (N) long.
//
// Rows are processed in chunks of `chunk_rows` (0: about 4M logits per chunk), so the (N, V)
// logits never exist in full. When gradients are needed, the gradient of the logits,
// softmax - (1 - eps) * onehot - eps/V, is formed while the chunk is at hand and multiplied
// straight into the gradients of hidden and weight; backward only scales those by the incoming
// gradient. Against projecting then calling label_smoothed_cross_entropy this saves the
// separate log-softmax, gather, sum and their backward passes over N x V floats (and their
// memory), at the same matrix products.
SmoothedLoss linear_label_smoothed_cross_entropy(const torch::Tensor& hidden,
                                                 const torch::Tensor& weight,
                                                 const torch::Tensor& target, double epsilon,
                                                 int64_t ignore_index, int64_t chunk_rows = 0);

// Sigmoid focal loss (Lin et al. 2017), summed: logits and 0/1 targets of the same shape;
// each element adds -alpha_t (1 - p_t)^gamma log p_t with p_t the probability of its target
// and alpha_t = alpha for positives, 1 - alpha for negatives.
torch::Tensor sigmoid_focal_loss(const torch::Tensor& logits, const torch::Tensor& targets, double alpha = 0.25,
                                 double gamma = 2.0);

}  // namespace xformer::nn
