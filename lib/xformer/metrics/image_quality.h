// Image quality against a reference (super-resolution): PSNR, SSIM, and bits per dimension of a
// likelihood model.
#pragma once
#include <torch/torch.h>

namespace xformer::metrics {

// Peak signal-to-noise ratio in dB of `image` against `reference`, both (C, H, W) in [0, peak]:
// 10 log10(peak^2 / MSE); +infinity for identical images.
double psnr(const torch::Tensor& image, const torch::Tensor& reference, double peak = 255.0);

// Structural similarity (Wang et al. 2004): 11 x 11 Gaussian window (sigma 1.5), K1 = 0.01,
// K2 = 0.03, over the positions where the window fits, averaged over positions and channels.
// Images smaller than 11 pixels use the largest odd window that fits.
double ssim(const torch::Tensor& image, const torch::Tensor& reference, double peak = 255.0);

// Bits per dimension from a summed negative log-likelihood in nats over `dims` values
// (e.g. pixels x channels): nll / (dims ln 2).
double bits_per_dim(double nll_nats, double dims);

}  // namespace xformer::metrics
