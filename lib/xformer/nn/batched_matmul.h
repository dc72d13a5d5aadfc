// Batched matrix product a (..., M, K) · b (..., K, N) -> (..., M, N) with equal batch
// dimensions (no broadcasting), for attention's many small products.
//
// On the CPU (float) it calls BLAS sgemm once per matrix, straight on the operands' memory:
// any batch strides, and row- or column-major matrices, so the (B, T, H, Dh) -> (B, H, T, Dh)
// views of split heads and transposed keys are used without copies. LibTorch 1.13's bmm
// instead loops over select() + addmm per matrix and copies non-contiguous operands: with
// (B*H, T, Dh) = (256, 32, 64) that overhead was ~15% of a training step of the benchmark model
// (docs/performance.md). Elsewhere it is torch::matmul.
#pragma once
#include <torch/torch.h>

namespace xformer::nn {

torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace xformer::nn
