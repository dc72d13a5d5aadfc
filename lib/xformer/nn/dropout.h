// Dropout (Srivastava et al. 2014): zero each element with probability p and scale the rest by
// 1 / (1 - p) while training; the identity otherwise.
//
// On the CPU the keep/drop decisions come from a counter-based hash of (seed, element index), so
// the mask costs no memory: backward regenerates it from the seed. The seed is drawn from
// LibTorch's default CPU generator, so torch::manual_seed and checkpointed RNG state make runs
// and resumes reproducible. LibTorch's own CPU dropout draws one Bernoulli variate per element
// from a Mersenne twister and was ~10x slower (8% of a training step of the benchmark model).
// Other devices and dtypes use LibTorch's dropout.
#pragma once
#include <torch/torch.h>

namespace xformer::nn {

torch::Tensor dropout(const torch::Tensor& x, double p, bool training);

}  // namespace xformer::nn
