// Relative position attention: the skewed logits equal the naive O(L^2 D) gather (square and
// cached shapes, several distances and head counts, values and gradients); the attention module
// with relative positions leaks nothing from the future and gives the same outputs step by step
// over its key/value cache as over the whole sequence.
#include "test_support.h"

#include "xformer/nn/attention.h"
#include "xformer/nn/relative_position.h"

namespace {

using xformer::testing::max_abs_diff;
namespace nn = xformer::nn;

// (Tq, Tk) bool: true where key j is at or before query i's position (Tk - Tq + i).
torch::Tensor causal_region(int64_t Tq, int64_t Tk) {
  return torch::ones({Tq, Tk}, torch::kBool).tril(Tk - Tq);
}

}  // namespace

TEST_CASE("skewed relative logits equal the naive gather", "[nn][relative]") {
  torch::manual_seed(41);
  struct Case {
    int64_t B, H, Tq, Tk, Dh, R;
  };
  const Case cases[] = {
      {2, 1, 1, 1, 4, 1},   {2, 2, 5, 5, 3, 1},   {1, 4, 16, 16, 8, 3},  // square, R < L
      {2, 2, 9, 9, 4, 8},   {1, 3, 6, 6, 5, 20},                          // R = L - 1, R > L
      {2, 2, 1, 7, 4, 3},   {2, 2, 3, 7, 4, 2},   {1, 2, 4, 11, 6, 30},  // cached: Tq < Tk
  };
  for (const auto& c : cases) {
    DYNAMIC_SECTION("B " << c.B << " H " << c.H << " Tq " << c.Tq << " Tk " << c.Tk << " Dh "
                         << c.Dh << " R " << c.R) {
      auto q = torch::randn({c.B, c.H, c.Tq, c.Dh}, torch::kDouble);
      auto table = torch::randn({c.H, c.R + 1, c.Dh}, torch::kDouble);
      auto past = causal_region(c.Tq, c.Tk);
      auto q1 = q.clone().requires_grad_(true), t1 = table.clone().requires_grad_(true);
      auto q2 = q.clone().requires_grad_(true), t2 = table.clone().requires_grad_(true);
      auto skewed = nn::relative_logits(q1, t1, c.Tk);
      auto naive = nn::relative_logits_naive(q2, t2, c.Tk);
      REQUIRE(skewed.sizes() == naive.sizes());
      CHECK(max_abs_diff(skewed.masked_fill(~past, 0), naive) < 1e-10);
      // By hand for one entry: query i, key j = i - 1 (or 0), distance min(p_i - j, R).
      const int64_t i = c.Tq - 1, j = std::max<int64_t>(0, c.Tk - 2);
      const int64_t row = std::min(c.Tk - 1 - j, c.R);
      const double expected = (q[0][0][i] * table[0][row]).sum().item<double>();
      CHECK(skewed[0][0][i][j].item<double>() == Approx(expected).epsilon(1e-9));
      // Gradients through the causal region agree too.
      auto w = torch::randn({c.B, c.H, c.Tq, c.Tk}, torch::kDouble) * past;
      (skewed * w).sum().backward();
      (naive * w).sum().backward();
      CHECK(max_abs_diff(q1.grad(), q2.grad()) < 1e-10);
      CHECK(max_abs_diff(t1.grad(), t2.grad()) < 1e-10);
    }
  }
}

TEST_CASE("relative logits refuse inconsistent shapes", "[nn][relative]") {
  auto q = torch::randn({1, 2, 3, 4});
  CHECK_THROWS_WITH(nn::relative_logits(q, torch::randn({3, 5, 4}), 3),
                    Catch::Contains("[1, 2, 3, 4]") && Catch::Contains("[3, 5, 4]"));
  CHECK_THROWS_WITH(nn::relative_logits(q, torch::randn({2, 5, 4}), 2), Catch::Contains("3 queries"));
}

TEST_CASE("relative attention leaks nothing from future positions", "[nn][relative]") {
  torch::manual_seed(42);
  const int64_t B = 2, L = 9, D = 16;
  nn::MultiheadAttention attn(D, 4, 0.0, /*max_relative_position=*/4);
  attn->eval();
  nn::AttentionMask causal;
  causal.causal = true;
  auto x = torch::randn({B, L, D}, torch::requires_grad());
  auto out = attn(x, x, causal);
  for (int64_t i = 0; i < L; ++i) {
    auto grad = torch::autograd::grad({out.select(1, i).sum()}, {x}, {}, /*retain_graph=*/true)[0];
    if (i + 1 < L) CHECK(grad.narrow(1, i + 1, L - i - 1).abs().max().item<double>() == 0.0);
    CHECK(grad.narrow(1, 0, i + 1).abs().sum().item<double>() > 0.0);  // the past does count
  }
  // The relative table received gradient, i.e. the positions are in use.
  out.sum().backward();
  CHECK(attn->relative_table.grad().abs().sum().item<double>() > 0.0);
}

TEST_CASE("relative attention over the key/value cache equals full recomputation",
          "[nn][relative]") {
  torch::manual_seed(43);
  const int64_t B = 3, L = 12, D = 16;
  nn::MultiheadAttention attn(D, 2, 0.0, /*max_relative_position=*/5);
  attn->eval();
  torch::NoGradGuard no_grad;
  nn::AttentionMask causal;
  causal.causal = true;
  auto x = torch::randn({B, L, D});
  auto full = attn(x, x, causal);  // (B, L, D)
  nn::KVCache cache;
  // First a prefix of 4 positions at once, then one position per call.
  auto prefix = x.narrow(1, 0, 4);
  auto first = attn(prefix, prefix, causal, &cache);
  CHECK(max_abs_diff(first, full.narrow(1, 0, 4)) < 1e-5);
  for (int64_t t = 4; t < L; ++t) {
    auto step_in = x.narrow(1, t, 1);
    auto step = attn(step_in, step_in, causal, &cache);
    CHECK(max_abs_diff(step, full.narrow(1, t, 1)) < 1e-5);
  }
}

TEST_CASE("relative attention is refused where it is not implemented", "[nn][relative]") {
  nn::MultiheadAttention attn(8, 2, 0.0, 3);
  auto x = torch::randn({1, 4, 8}), memory = torch::randn({1, 5, 8});
  CHECK_THROWS_WITH(attn(x, x), Catch::Contains("causal self-attention"));
  nn::AttentionMask causal;
  causal.causal = true;
  CHECK_THROWS_WITH(attn(x, memory, causal), Catch::Contains("causal self-attention"));
  CHECK_THROWS_WITH(nn::MultiheadAttention(8, 2, 0.0, -1), Catch::Contains("-1"));
}
