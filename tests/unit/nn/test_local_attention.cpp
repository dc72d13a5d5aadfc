// Local attention against full attention with an explicit band mask (each query sees its own
// block up to itself and the previous block), with and without relative positions and key
// padding, values and gradients; the weights' layout; blocks covering the whole sequence equal
// plain causal attention; one step over the cache equals the full pass.
#include "test_support.h"

#include "xformer/nn/attention.h"
#include "xformer/nn/local_attention.h"
#include "xformer/nn/relative_position.h"

using namespace xformer::nn;
using xformer::testing::max_abs_diff;

namespace {

// The O(L^2) reference: softmax over keys j with window_start(i) <= j <= i and not padding
// (a query's own position always counts).
torch::Tensor banded_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               int64_t block, const torch::Tensor& key_padding,
                               const torch::Tensor& table, torch::Tensor* probs_out = nullptr) {
  const int64_t L = q.size(2);
  auto scores = torch::matmul(q / std::sqrt(static_cast<double>(q.size(3))), k.transpose(-2, -1));
  if (table.defined()) scores = scores + relative_logits_naive(q, table, L);
  auto allowed = torch::zeros({L, L}, torch::kBool);
  for (int64_t i = 0; i < L; ++i)
    allowed[i].narrow(0, local_window_start(i, block), i + 1 - local_window_start(i, block)).fill_(true);
  auto blocked = allowed.logical_not().view({1, 1, L, L});
  if (key_padding.defined())
    blocked = blocked.logical_or(key_padding.view({q.size(0), 1, 1, L}).logical_and(torch::eye(L, torch::kBool).logical_not()));
  auto probs = torch::softmax(scores.masked_fill(blocked, -INFINITY), -1);
  if (probs_out) *probs_out = probs;
  return torch::matmul(probs, v);
}

}  // namespace

TEST_CASE("local attention equals full attention under a band mask", "[nn][local]") {
  const int64_t B = 2, H = 3, Dh = 4;
  for (int64_t L : {13, 12}) {            // a partial last block, and whole blocks only
    for (bool relative : {false, true}) {
      for (bool padded : {false, true}) {
        DYNAMIC_SECTION("L " << L << (relative ? ", relative" : "") << (padded ? ", key padding" : "")) {
          torch::manual_seed(61);
          auto q = torch::randn({B, H, L, Dh}, torch::requires_grad());
          auto k = torch::randn({B, H, L, Dh}, torch::requires_grad());
          auto v = torch::randn({B, H, L, Dh}, torch::requires_grad());
          torch::Tensor table, padding;
          if (relative) table = (torch::randn({H, 6, Dh}) * 0.5).requires_grad_(true);
          if (padded) {  // a padded key in the middle of row 1 (position 0 stays visible to all)
            padding = torch::zeros({B, L}, torch::kBool);
            padding[1][5] = true;
          }
          torch::Tensor weights, probs;
          auto out = local_attend(q, k, v, 4, padding, table, 0.0, false, &weights);
          auto ref = banded_reference(q, k, v, 4, padding, table, &probs);
          // Row 1 query 5 (padded itself) attends to the others and itself: compare everything.
          CHECK(max_abs_diff(out, ref) < 1e-5);
          CHECK(max_abs_diff(weights, probs) < 1e-5);

          auto g = torch::randn_like(out);
          auto grads = torch::autograd::grad({out}, {q, k, v}, {g});
          auto ref_grads = torch::autograd::grad({ref}, {q, k, v}, {g});
          for (size_t i = 0; i < 3; ++i) CHECK(max_abs_diff(grads[i], ref_grads[i]) < 1e-5);
          if (relative) {
            auto gt = torch::autograd::grad({local_attend(q, k, v, 4, padding, table, 0.0, false)}, {table}, {g});
            auto gt_ref = torch::autograd::grad({banded_reference(q, k, v, 4, padding, table)}, {table}, {g});
            CHECK(max_abs_diff(gt[0], gt_ref[0]) < 1e-5);
          }
        }
      }
    }
  }
}

TEST_CASE("local attention with one block over everything is plain causal attention", "[nn][local]") {
  torch::manual_seed(62);
  auto q = torch::randn({1, 2, 7, 4}), k = torch::randn({1, 2, 7, 4}), v = torch::randn({1, 2, 7, 4});
  AttentionMask causal;
  causal.causal = true;
  for (int64_t block : {7, 10})
    CHECK(max_abs_diff(local_attend(q, k, v, block, {}, {}, 0.0, false), attend(q, k, v, causal, 0.0, false)) < 1e-6);
  // Smaller blocks do drop the far past: the last query no longer sees positions 0..2.
  CHECK(max_abs_diff(local_attend(q, k, v, 2, {}, {}, 0.0, false), attend(q, k, v, causal, 0.0, false)) > 1e-3);
  CHECK_THROWS(local_attend(q, k, v, 0, {}, {}, 0.0, false));
}

TEST_CASE("local attention with right padding longer than a block stays finite", "[nn][local]") {
  // Row 0 is padded from position 4 on: queries 6 and 7 (block 2) have only padding in their
  // window but their own position. Values and every gradient stay finite, the real positions
  // are what the unpadded sentences give, and a cached pass gives the same outputs.
  torch::manual_seed(64);
  MultiheadAttention layer(8, 2, 0.0, 0, LocalWindow{/*block=*/2, /*grid_cols=*/0, {}});
  auto x = torch::randn({2, 8, 8});
  AttentionMask mask;
  mask.causal = true;
  mask.key_padding = torch::zeros({2, 8}, torch::kBool);
  mask.key_padding[0].narrow(0, 4, 4).fill_(true);
  auto y = layer(x, x, mask);
  CHECK(torch::isfinite(y).all().item<bool>());
  {
    torch::NoGradGuard no_grad;
    AttentionMask plain;
    plain.causal = true;
    auto row0 = x.narrow(0, 0, 1).narrow(1, 0, 4), row1 = x.narrow(0, 1, 1);
    CHECK(max_abs_diff(y.narrow(0, 0, 1).narrow(1, 0, 4), layer(row0, row0, plain)) < 1e-5);
    CHECK(max_abs_diff(y.narrow(0, 1, 1), layer(row1, row1, plain)) < 1e-5);
  }
  y.narrow(1, 0, 4).sum().backward();
  for (const auto& p : layer->parameters()) CHECK(torch::isfinite(p.grad()).all().item<bool>());
  torch::NoGradGuard no_grad;
  KVCache cache;
  for (int64_t t = 0; t < 8; ++t) {
    auto xt = x.narrow(1, t, 1);
    AttentionMask step = mask;
    step.key_padding = mask.key_padding.narrow(1, 0, t + 1);
    CHECK(max_abs_diff(layer(xt, xt, step, &cache), y.narrow(1, t, 1)) < 1e-5);
  }
}

TEST_CASE("local attention layer: cached steps equal the full pass", "[nn][local]") {
  for (int64_t r : {0, 5}) {
    DYNAMIC_SECTION((r ? "relative" : "plain")) {
      torch::manual_seed(63);
      MultiheadAttention layer(8, 2, 0.0, r, LocalWindow{/*block=*/3, /*grid_cols=*/0, {}});
      layer->eval();
      torch::NoGradGuard no_grad;
      auto x = torch::randn({2, 10, 8});
      AttentionMask causal;
      causal.causal = true;
      torch::Tensor full_weights;
      auto full = layer(x, x, causal, nullptr, false, &full_weights);
      KVCache cache;
      for (int64_t t = 0; t < 10; ++t) {
        auto xt = x.narrow(1, t, 1);
        torch::Tensor w;
        auto step = layer(xt, xt, causal, &cache, false, &w);
        CHECK(max_abs_diff(step, full.narrow(1, t, 1)) < 1e-5);
        CHECK(max_abs_diff(w, full_weights.narrow(2, t, 1).narrow(3, 0, t + 1)) < 1e-5);
      }
      // Several new positions over a non-empty cache are refused, not computed wrongly.
      CHECK_THROWS(layer(x.narrow(1, 0, 2), x.narrow(1, 0, 2), causal, &cache));
    }
  }
}

namespace {

// May query p see key k on an R x C grid under local 2D attention? By the definition: k is not
// after p in raster order and lies in p's block extended by the flanges.
bool visible_2d(int64_t p, int64_t k, int64_t C, const Local2D& s) {
  const int64_t pr = p / C, pc = p % C, kr = k / C, kc = k % C;
  const int64_t r0 = pr / s.rows * s.rows, c0 = pc / s.cols * s.cols;
  return k <= p && kr >= r0 - s.flange_rows && kr < r0 + s.rows && kc >= c0 - s.flange_cols &&
         kc < c0 + s.cols + s.flange_cols;
}

}  // namespace

TEST_CASE("local 2D attention equals full attention under its explicit mask", "[nn][local]") {
  struct Case { int64_t R, C; Local2D s; };
  const std::vector<Case> cases = {
      {6, 9, {2, 3, 2, 3}},   // blocks that tile the grid exactly
      {7, 10, {3, 4, 2, 2}},  // partial blocks at the bottom and the right
      {5, 5, {2, 2, 0, 0}},   // no flange: attention inside the block only
      {4, 12, {4, 12, 1, 0}}, // one block over everything: plain causal attention
  };
  for (size_t n = 0; n < cases.size(); ++n) {
    const auto& [R, C, s] = cases[n];
    for (int64_t H : {1, 3}) {
      DYNAMIC_SECTION("grid " << R << "x" << C << ", blocks " << s.rows << "x" << s.cols << ", flange "
                              << s.flange_rows << "/" << s.flange_cols << ", " << H << " heads") {
        torch::manual_seed(64 + n);
        const int64_t N = R * C;
        auto q = torch::randn({2, H, N, 4}, torch::requires_grad());
        auto k = torch::randn({2, H, N, 4}, torch::requires_grad());
        auto v = torch::randn({2, H, N, 4}, torch::requires_grad());
        auto out = local_attend_2d(q, k, v, R, C, s, 0.0, false);
        auto blocked = torch::ones({N, N}, torch::kBool);
        for (int64_t p = 0; p < N; ++p) {
          std::vector<int64_t> expected;
          for (int64_t key = 0; key < N; ++key)
            if (visible_2d(p, key, C, s)) blocked[p][key] = false, expected.push_back(key);
          CHECK(local_2d_keys(p, R, C, s) == expected);
        }
        AttentionMask mask;
        mask.blocked = blocked;
        auto ref = attend(q, k, v, mask, 0.0, false);
        CHECK(max_abs_diff(out, ref) < 1e-5);
        auto g = torch::randn_like(out);
        auto grads = torch::autograd::grad({out}, {q, k, v}, {g});
        auto ref_grads = torch::autograd::grad({ref}, {q, k, v}, {g});
        for (size_t i = 0; i < 3; ++i) CHECK(max_abs_diff(grads[i], ref_grads[i]) < 1e-5);
      }
    }
  }
}

TEST_CASE("local 2D attention leaks nothing from later pixels", "[nn][local]") {
  torch::manual_seed(70);
  const int64_t R = 6, C = 6, N = R * C;
  const Local2D s{2, 2, 2, 2};
  auto q = torch::randn({1, 2, N, 4}), k = torch::randn({1, 2, N, 4}), v = torch::randn({1, 2, N, 4});
  auto base = local_attend_2d(q, k, v, R, C, s, 0.0, false);
  const int64_t p = 20;  // change position 20's key and value
  auto k2 = k.clone(), v2 = v.clone();
  k2.select(2, p).add_(1.0), v2.select(2, p).add_(1.0);
  auto changed = local_attend_2d(q, k2, v2, R, C, s, 0.0, false);
  CHECK(max_abs_diff(changed.narrow(2, 0, p), base.narrow(2, 0, p)) == 0.0);
  CHECK(max_abs_diff(changed.select(2, p), base.select(2, p)) > 1e-4);
}

TEST_CASE("local 2D attention layer: cached steps and prefixes equal the full pass", "[nn][local]") {
  torch::manual_seed(72);
  const int64_t R = 5, C = 6;  // e.g. 5 rows of 2 pixels x 3 channels
  LocalWindow local;
  local.grid_cols = C;
  local.shape = {2, 3, 1, 3};
  MultiheadAttention layer(8, 2, 0.0, 0, local);
  layer->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, R * C, 8});
  AttentionMask causal;
  causal.causal = true;
  auto full = layer(x, x, causal);
  KVCache cache;
  for (int64_t t = 0; t < R * C; ++t) {
    auto xt = x.narrow(1, t, 1);
    CHECK(max_abs_diff(layer(xt, xt, causal, &cache), full.narrow(1, t, 1)) < 1e-5);
  }
  // A prefix that ends inside a row (recomputation without a cache) gives the same rows.
  auto prefix = x.narrow(1, 0, 14);
  CHECK(max_abs_diff(layer(prefix, prefix, causal), full.narrow(1, 0, 14)) < 1e-5);
  // 1D and 2D at once, or relative positions with 2D, are refused.
  LocalWindow both = local;
  both.block = 4;
  CHECK_THROWS(MultiheadAttention(8, 2, 0.0, 0, both));
  CHECK_THROWS(MultiheadAttention(8, 2, 0.0, 4, local));
}
