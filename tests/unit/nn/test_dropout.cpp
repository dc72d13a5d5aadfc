// Tests of xformer's CPU dropout: the kept fraction, the scaling, the gradient (regenerated from
// the seed in backward), reproducibility under torch::manual_seed, and the identity cases.
#include "test_support.h"

#include "xformer/nn/dropout.h"

namespace {
// Not named dropout: argument-dependent lookup would also find at::dropout.
torch::Tensor drop(const torch::Tensor& x, double p, bool training) {
  return xformer::nn::dropout(x, p, training);
}
}  // namespace

TEST_CASE("dropout keeps a 1 - p fraction and scales it by 1 / (1 - p)", "[nn][dropout]") {
  torch::manual_seed(3);
  const int64_t n = 200001;  // odd: not a multiple of the vector width
  const double p = 0.3;
  auto out = drop(torch::ones({n}), p, true);
  auto kept = out.ne(0);
  // Every value is either 0 or exactly 1 / 0.7.
  CHECK(out.masked_select(kept).sub(1.0f / 0.7f).abs().max().item<float>() == 0.0f);
  // Kept fraction: binomial standard deviation sqrt(0.21 / n) ~ 0.001; allow 5 of them.
  const double frac = kept.to(torch::kDouble).mean().item<double>();
  CHECK(frac == Approx(0.7).margin(0.005));
  // Neighbouring elements hash neighbouring indices: their decisions must still be
  // independent (both kept with probability 0.49).
  auto pairs = kept.narrow(0, 0, n - 1).view({-1, 2});
  const double both = pairs.all(1).to(torch::kDouble).mean().item<double>();
  CHECK(both == Approx(0.49).margin(0.01));
  // And the mask has no period along the tensor: two halves differ.
  CHECK(!torch::equal(kept.narrow(0, 0, 1000), kept.narrow(0, 1000, 1000)));
}

TEST_CASE("dropout's gradient is the same mask and scale", "[nn][dropout]") {
  torch::manual_seed(4);
  auto x = (torch::rand({37, 29}) + 0.5).requires_grad_(true);  // no zeros
  auto w = torch::randn({37, 29});
  auto out = drop(x, 0.5, true);
  (out * w).sum().backward();
  // d out / d x is out / x elementwise (0 where dropped, 2 where kept).
  auto expected = (out / x).detach() * w;
  CHECK(xformer::testing::max_abs_diff(x.grad(), expected) < 1e-6);
  CHECK(out.eq(0).any().item<bool>());
}

TEST_CASE("dropout is reproducible from the LibTorch seed and differs between calls",
          "[nn][dropout]") {
  auto x = torch::randn({64, 33});
  torch::manual_seed(9);
  auto a1 = drop(x, 0.1, true), a2 = drop(x, 0.1, true);
  torch::manual_seed(9);
  auto b1 = drop(x, 0.1, true);
  CHECK(torch::equal(a1, b1));
  CHECK(!torch::equal(a1, a2));
}

TEST_CASE("dropout is the identity when not training or p = 0, and zero at p = 1",
          "[nn][dropout]") {
  auto x = torch::randn({5, 7});
  CHECK(torch::equal(drop(x, 0.5, false), x));
  CHECK(torch::equal(drop(x, 0.0, true), x));
  CHECK(drop(x, 1.0, true).abs().sum().item<float>() == 0.0f);
  CHECK_THROWS_WITH(drop(x, 1.5, true), Catch::Contains("1.5"));
  // A non-contiguous input gives the same values as its contiguous copy under the same seed.
  auto t = torch::randn({6, 4}).t();
  torch::manual_seed(2);
  auto a = drop(t, 0.5, true);
  torch::manual_seed(2);
  auto b = drop(t.contiguous(), 0.5, true);
  CHECK(torch::equal(a, b));
}
