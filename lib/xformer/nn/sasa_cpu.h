// CPU kernels of SASA attention (see sasa.h), without value mixtures: loops over image rows with
// the inner loops over a row's pixels (contiguous, vectorised) and images/heads in parallel;
// LibTorch's softmax in between. For float and double.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace xformer::nn {

// q, k (B, N, dk, H, W), v (B, N, dv, H, W), rel_rows (K, dk / 2), rel_cols (K, dk - dk / 2)
// -> {out (B, N, dv, H, W), p (B, N, K^2, H, W) the attention weights (0 outside the image)}.
std::vector<torch::Tensor> sasa_cpu_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                            const torch::Tensor& rel_rows, const torch::Tensor& rel_cols);

// Gradient of out -> {grad q, grad k, grad v, grad rel_rows, grad rel_cols}.
std::vector<torch::Tensor> sasa_cpu_backward(const torch::Tensor& grad_out, const torch::Tensor& q,
                                             const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& p,
                                             const torch::Tensor& rel_rows, const torch::Tensor& rel_cols);

}  // namespace xformer::nn
