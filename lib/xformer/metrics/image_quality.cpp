#include "xformer/metrics/image_quality.h"

#include <cmath>
#include <limits>

namespace xformer::metrics {

namespace {

void check_pair(const torch::Tensor& a, const torch::Tensor& b, const char* what) {
  TORCH_CHECK(a.dim() == 3 && a.sizes() == b.sizes(), what, ": two (C, H, W) images of one shape expected, got ",
              a.sizes(), " and ", b.sizes());
}

// (1, 1, n, n) normalised Gaussian, float64.
torch::Tensor gaussian_window(int64_t n, double sigma) {
  auto x = torch::arange(n, torch::kDouble) - (n - 1) / 2.0;
  auto g = torch::exp(-x.square() / (2 * sigma * sigma));
  g = g / g.sum();
  return torch::outer(g, g).view({1, 1, n, n});
}

}  // namespace

double psnr(const torch::Tensor& image, const torch::Tensor& reference, double peak) {
  check_pair(image, reference, "psnr");
  const double mse = (image.to(torch::kDouble) - reference.to(torch::kDouble)).square().mean().item<double>();
  if (mse == 0) return std::numeric_limits<double>::infinity();
  return 10 * std::log10(peak * peak / mse);
}

double ssim(const torch::Tensor& image, const torch::Tensor& reference, double peak) {
  check_pair(image, reference, "ssim");
  const int64_t fits = std::min(image.size(1), image.size(2));
  const int64_t n = std::min<int64_t>(11, fits % 2 == 1 ? fits : fits - 1);
  TORCH_CHECK(n >= 1, "ssim: empty image");
  const double c1 = std::pow(0.01 * peak, 2), c2 = std::pow(0.03 * peak, 2);
  // Each channel as a batch row, one window: local means, variances and covariance.
  auto x = image.to(torch::kCPU, torch::kDouble).unsqueeze(1);      // (C, 1, H, W)
  auto y = reference.to(torch::kCPU, torch::kDouble).unsqueeze(1);
  auto w = gaussian_window(n, 1.5);
  auto filter = [&](const torch::Tensor& t) { return torch::conv2d(t, w); };
  auto mx = filter(x), my = filter(y);
  auto vx = filter(x * x) - mx * mx, vy = filter(y * y) - my * my, cxy = filter(x * y) - mx * my;
  auto map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
  return map.mean().item<double>();
}

double bits_per_dim(double nll_nats, double dims) { return nll_nats / (dims * std::log(2.0)); }

}  // namespace xformer::metrics
