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

// The O(L^2) reference: softmax over keys j with window_start(i) <= j <= i and not padding.
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
  if (key_padding.defined()) blocked = blocked.logical_or(key_padding.view({q.size(0), 1, 1, L}));
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
          // Row 1 query 5 (padded itself) still attends to the others: compare everything.
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

TEST_CASE("local attention layer: cached steps equal the full pass", "[nn][local]") {
  for (int64_t r : {0, 5}) {
    DYNAMIC_SECTION((r ? "relative" : "plain")) {
      torch::manual_seed(63);
      MultiheadAttention layer(8, 2, 0.0, r, /*local_block=*/3);
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
