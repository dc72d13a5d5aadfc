// PSNR, SSIM and bits/dim against hand-computed values and a direct per-window SSIM loop.
#include "test_support.h"

#include <cmath>

#include "xformer/metrics/image_quality.h"

using namespace xformer::metrics;

namespace {

// SSIM by its definition: every 11 x 11 window explicitly, Gaussian weights, double loops.
double ssim_by_loops(const torch::Tensor& a, const torch::Tensor& b) {
  const int64_t C = a.size(0), H = a.size(1), W = a.size(2), n = 11;
  std::vector<double> g(n);
  double gs = 0;
  for (int64_t i = 0; i < n; ++i) gs += g[i] = std::exp(-std::pow(i - 5.0, 2) / (2 * 1.5 * 1.5));
  const double c1 = std::pow(0.01 * 255, 2), c2 = std::pow(0.03 * 255, 2);
  auto ad = a.to(torch::kDouble), bd = b.to(torch::kDouble);
  auto A = ad.accessor<double, 3>(), B = bd.accessor<double, 3>();
  double total = 0;
  int64_t count = 0;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y + n <= H; ++y)
      for (int64_t x = 0; x + n <= W; ++x) {
        double mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0;
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < n; ++j) {
            const double w = g[i] * g[j] / (gs * gs);
            const double p = A[c][y + i][x + j], q = B[c][y + i][x + j];
            mx += w * p, my += w * q, sxx += w * p * p, syy += w * q * q, sxy += w * p * q;
          }
        const double vx = sxx - mx * mx, vy = syy - my * my, cxy = sxy - mx * my;
        total += (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2));
        ++count;
      }
  return total / count;
}

}  // namespace

TEST_CASE("PSNR on hand-computed cases", "[metrics][image]") {
  auto a = torch::full({3, 8, 8}, 100.f);
  CHECK(psnr(a + 10, a) == Approx(10 * std::log10(255.0 * 255.0 / 100.0)));  // 28.1308 dB
  CHECK(std::isinf(psnr(a, a)));
  auto b = a.clone();
  b[0][0][0] = 110;  // one pixel of 192 off by 10: MSE 100 / 192
  CHECK(psnr(b, a) == Approx(10 * std::log10(255.0 * 255.0 * 192 / 100.0)));
  CHECK_THROWS(psnr(a, torch::zeros({3, 8, 7})));
}

TEST_CASE("SSIM equals its definition and known values", "[metrics][image]") {
  torch::manual_seed(71);
  auto x = torch::rand({3, 20, 24}) * 255;
  auto y = (x + torch::randn({3, 20, 24}) * 20).clamp(0, 255);
  CHECK(ssim(x, x) == Approx(1.0));
  CHECK(ssim(y, x) == Approx(ssim_by_loops(y, x)).epsilon(1e-9));
  CHECK(ssim(y, x) < 0.99);  // noise costs similarity
  CHECK(ssim(255 - x, x) < 0);  // an inverted image anti-correlates
  // Two constant images: only the luminance term remains, (2ab + C1) / (a^2 + b^2 + C1).
  const double c1 = std::pow(0.01 * 255, 2);
  CHECK(ssim(torch::full({1, 16, 16}, 100.f), torch::full({1, 16, 16}, 110.f)) ==
        Approx((2 * 100 * 110 + c1) / (100 * 100 + 110 * 110 + c1)));
  // Images smaller than the window use a smaller one, and identical ones still score 1.
  auto small = torch::rand({3, 8, 8}) * 255;
  CHECK(ssim(small, small) == Approx(1.0));
}

TEST_CASE("bits per dimension is NLL / (dims ln 2)", "[metrics][image]") {
  CHECK(bits_per_dim(3072 * std::log(256.0), 3072) == Approx(8.0));  // a uniform 8-bit model
  CHECK(bits_per_dim(0, 10) == 0);
}
