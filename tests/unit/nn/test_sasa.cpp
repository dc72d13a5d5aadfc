// Stand-alone self-attention (SASA): the CPU kernels, the offset loop and the unfolded version equal a naive
// per-pixel loop (odd and even neighbourhoods, neighbourhoods larger than the image, heads, odd
// head widths, spatially aware values), in values and gradients; the module is translation
// equivariant away from the borders and pools where it strides.
#include "test_support.h"

#include "xformer/nn/sasa.h"

namespace {

using xformer::testing::max_abs_diff;
namespace nn = xformer::nn;

// The definition, one query pixel at a time: neighbours (a, b) with offsets -(K / 2) ..
// K - 1 - K / 2 inside the image; v (B, N, [M,] dv, H, W), value_mix (K, K, M) or undefined.
torch::Tensor naive_sasa(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                         const torch::Tensor& rel_rows, const torch::Tensor& rel_cols,
                         const torch::Tensor& value_mix = {}) {
  const int64_t B = q.size(0), N = q.size(1), H = q.size(3), W = q.size(4), K = rel_rows.size(0);
  const int64_t dr = rel_rows.size(1), dv = v.size(-3), lo = K / 2;
  auto out = torch::zeros({B, N, dv, H, W}, q.options());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < W; ++j) {
          auto qij = q[b][n].select(1, i).select(1, j);  // (dk)
          std::vector<torch::Tensor> logits, values;
          for (int64_t a = 0; a < K; ++a)
            for (int64_t c = 0; c < K; ++c) {
              const int64_t y = i + a - lo, x = j + c - lo;
              if (y < 0 || y >= H || x < 0 || x >= W) continue;
              auto key = k[b][n].select(1, y).select(1, x);
              logits.push_back(qij.dot(key) + qij.narrow(0, 0, dr).dot(rel_rows[a]) +
                               qij.narrow(0, dr, qij.size(0) - dr).dot(rel_cols[c]));
              if (value_mix.defined()) {
                auto vm = v[b][n].select(2, y).select(2, x);  // (M, dv)
                values.push_back((value_mix[a][c].unsqueeze(1) * vm).sum(0));
              } else {
                values.push_back(v[b][n].select(1, y).select(1, x));
              }
            }
          auto p = torch::stack(logits).softmax(0);
          out[b][n].select(1, i).select(1, j).copy_((p.unsqueeze(1) * torch::stack(values)).sum(0));
        }
  return out;
}

struct Case {
  int64_t B, N, dk, dv, H, W, K;
};

}  // namespace

TEST_CASE("SASA attention equals a naive per-pixel loop, in values and gradients", "[nn][sasa]") {
  for (const auto& c : {Case{2, 2, 4, 3, 5, 6, 3}, Case{1, 3, 5, 2, 6, 4, 4}, Case{1, 1, 6, 6, 3, 5, 7},
                        Case{2, 2, 2, 4, 7, 7, 5}}) {
    DYNAMIC_SECTION("B" << c.B << " N" << c.N << " dk" << c.dk << " " << c.H << "x" << c.W << " K" << c.K) {
      torch::manual_seed(11);
      auto opts = torch::TensorOptions(torch::kDouble).requires_grad(true);
      auto q = torch::randn({c.B, c.N, c.dk, c.H, c.W}, opts), k = torch::randn({c.B, c.N, c.dk, c.H, c.W}, opts);
      auto v = torch::randn({c.B, c.N, c.dv, c.H, c.W}, opts);
      auto rows = torch::randn({c.K, c.dk / 2}, opts), cols = torch::randn({c.K, c.dk - c.dk / 2}, opts);
      auto expected = naive_sasa(q, k, v, rows, cols);
      auto weights = torch::randn_like(expected);
      auto grads = [&](const torch::Tensor& out) {
        return torch::autograd::grad({(out * weights).sum()}, {q, k, v, rows, cols});
      };
      auto g_expected = grads(expected);
      // The CPU kernels (sasa_attend on the CPU), the LibTorch offset loop, the unfolded version.
      for (auto* attend : {&nn::sasa_attend_offsets, &nn::sasa_attend_unfold}) {
        auto out = (*attend)(q, k, v, rows, cols);
        CHECK(max_abs_diff(out, expected) < 1e-10);
        auto g = grads(out);
        for (size_t i = 0; i < g.size(); ++i) CHECK(max_abs_diff(g[i], g_expected[i]) < 1e-9);
      }
      auto kernel = nn::sasa_attend(q, k, v, rows, cols);
      CHECK(max_abs_diff(kernel, expected) < 1e-10);
      auto g = grads(kernel);
      for (size_t i = 0; i < g.size(); ++i) CHECK(max_abs_diff(g[i], g_expected[i]) < 1e-9);
      // Single precision goes through the kernels too, and non-contiguous inputs are fine.
      auto f = [](const torch::Tensor& t) { return t.detach().to(torch::kFloat); };
      auto kt = f(k).transpose(3, 4).contiguous().transpose(3, 4);
      CHECK(max_abs_diff(nn::sasa_attend(f(q), kt, f(v), f(rows), f(cols)).to(torch::kDouble), expected) < 1e-4);
    }
  }
}

TEST_CASE("SASA spatially aware values (attention stem) equal the naive loop", "[nn][sasa]") {
  torch::manual_seed(12);
  auto opts = torch::TensorOptions(torch::kDouble);
  const int64_t B = 1, N = 2, dk = 4, M = 3, H = 5, W = 4, K = 4;
  auto q = torch::randn({B, N, dk, H, W}, opts), k = torch::randn({B, N, dk, H, W}, opts);
  auto v = torch::randn({B, N, M, 3, H, W}, opts);
  auto rows = torch::randn({K, 2}, opts), cols = torch::randn({K, 2}, opts);
  auto mix = torch::randn({K, K, M}, opts).softmax(-1);
  CHECK(max_abs_diff(nn::sasa_attend(q, k, v, rows, cols, mix), naive_sasa(q, k, v, rows, cols, mix)) < 1e-10);
  CHECK_THROWS(nn::sasa_attend(q, k, v, rows, cols));  // a 6-dim v needs its mixture
}

TEST_CASE("SASA layer: translation equivariant away from the borders; strides pool", "[nn][sasa]") {
  torch::manual_seed(13);
  for (int64_t mixtures : {0, 4}) {
    DYNAMIC_SECTION("value mixtures " << mixtures) {
      nn::SelfAttention2d layer(nn::SelfAttention2dOptions{6, 8, 2, 3, 1, mixtures});
      torch::NoGradGuard no_grad;
      auto x = torch::randn({1, 6, 12, 12});
      // Move the picture 2 rows down and 1 column right.
      auto shifted = torch::zeros_like(x);
      shifted.narrow(2, 2, 10).narrow(3, 1, 11).copy_(x.narrow(2, 0, 10).narrow(3, 0, 11));
      auto y = layer(x), ys = layer(shifted);
      REQUIRE(y.sizes() == torch::IntArrayRef({1, 8, 12, 12}));
      // Pixels whose 3x3 neighbourhood is inside the image in both: rows 1..9 of y, 1..9 columns.
      auto inner = y.narrow(2, 1, 8).narrow(3, 1, 9);
      auto inner_shifted = ys.narrow(2, 3, 8).narrow(3, 2, 9);
      CHECK(max_abs_diff(inner, inner_shifted) < 1e-5);
      // At the border the masked neighbourhood differs from a zero-padded one: not equivariant.
      CHECK(max_abs_diff(y.select(2, 0).narrow(2, 1, 9), ys.select(2, 2).narrow(2, 2, 9)) > 1e-3);
    }
  }
  nn::SelfAttention2d strided(nn::SelfAttention2dOptions{4, 8, 4, 5, 2, 0});
  auto x = torch::randn({2, 4, 7, 6});
  auto full = nn::SelfAttention2d(nn::SelfAttention2dOptions{4, 8, 4, 5, 1, 0});
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < full->parameters().size(); ++i) full->parameters()[i].copy_(strided->parameters()[i]);
  }
  auto y = strided(x);
  REQUIRE(y.sizes() == torch::IntArrayRef({2, 8, 4, 3}));  // ceil(7 / 2) x 6 / 2
  auto unpooled = full(x);
  CHECK(max_abs_diff(y.select(2, 0).select(2, 0), unpooled.narrow(2, 0, 2).narrow(3, 0, 2).mean({2, 3})) < 1e-5);
  CHECK(max_abs_diff(y.select(2, 3).select(2, 2), unpooled.select(2, 6).narrow(2, 4, 2).mean(2)) < 1e-5);
  CHECK_THROWS(nn::SelfAttention2d(nn::SelfAttention2dOptions{4, 6, 4, 3, 1, 0}));  // 6 channels, 4 heads
  CHECK_THROWS(strided(torch::randn({1, 3, 8, 8})));
}
