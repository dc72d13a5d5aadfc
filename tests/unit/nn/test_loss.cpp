// Tests of the label-smoothed cross entropy against hand arithmetic and LibTorch's own losses.
#include "test_support.h"

#include <cmath>

#include "xformer/nn/loss.h"

namespace {
namespace F = torch::nn::functional;
using xformer::nn::label_smoothed_cross_entropy;
}  // namespace

TEST_CASE("label_smoothed_cross_entropy on a hand-computed 2x3 example", "[nn][loss]") {
  // Row 0: logits (0, 0, 0)    -> p = (1/3, 1/3, 1/3), target 0.
  // Row 1: logits (0, ln 2, 0) -> p = (1/4, 1/2, 1/4), target 1.
  // eps = 0.3, V = 3: per token (1 - eps) * nll + eps/V * sum_v(-log p_v)
  //   row 0: 0.7 * ln 3 + 0.1 * 3 ln 3              = ln 3
  //   row 1: 0.7 * ln 2 + 0.1 * (ln 4 + ln 2 + ln 4) = 0.7 ln 2 + 0.5 ln 2 = 1.2 ln 2
  //   loss = ln 3 + 1.2 ln 2 ~= 1.93040; nll = ln 3 + ln 2 = ln 6 ~= 1.79176.
  const double ln2 = std::log(2.0), ln3 = std::log(3.0);
  auto logits = torch::tensor({0.0, 0.0, 0.0, 0.0, ln2, 0.0}).view({2, 3});
  auto target = torch::tensor({0, 1}, torch::kLong);
  auto out = label_smoothed_cross_entropy(logits, target, 0.3, /*ignore_index=*/-100);
  REQUIRE(out.loss.dim() == 0);
  REQUIRE(out.nll.dim() == 0);
  CHECK(out.loss.item<double>() == Approx(ln3 + 1.2 * ln2).epsilon(1e-6));
  CHECK(out.nll.item<double>() == Approx(std::log(6.0)).epsilon(1e-6));

  // Smoothing moves mass off the reference: a confident correct prediction costs more with
  // eps > 0 than without, so the smoothed loss must differ from the nll here.
  auto confident = label_smoothed_cross_entropy(torch::tensor({{10.0, 0.0, 0.0}}),
                                                torch::tensor({0}, torch::kLong), 0.3, -100);
  CHECK(confident.loss.item<double>() > confident.nll.item<double>() + 1.0);
}

TEST_CASE("label_smoothed_cross_entropy ignores padding positions", "[nn][loss]") {
  const double ln3 = std::log(3.0);
  const int64_t pad = 1;
  // Row 0 of the example above (uniform p, target 0: loss = nll = ln 3) plus two padding rows
  // with arbitrary logits. Only row 0 counts.
  auto logits = torch::tensor({0.0, 0.0, 0.0, 5.0, -7.0, 3.0, -2.0, 9.0, 0.5}).view({3, 3});
  auto target = torch::tensor({int64_t{0}, pad, pad}, torch::kLong);
  auto out = label_smoothed_cross_entropy(logits, target, 0.3, pad);
  CHECK(out.loss.item<double>() == Approx(ln3).epsilon(1e-6));
  CHECK(out.nll.item<double>() == Approx(ln3).epsilon(1e-6));

  // A negative ignore index (LibTorch's default -100) is not a valid class id: it must not be
  // gathered from, and the row must not count.
  auto neg = label_smoothed_cross_entropy(logits, torch::tensor({0, -100, -100}, torch::kLong), 0.3,
                                          -100);
  CHECK(neg.loss.item<double>() == Approx(ln3).epsilon(1e-6));

  // All positions padding: zero loss, and no gradient into the logits.
  auto all_pad_logits = logits.clone().requires_grad_(true);
  auto none = label_smoothed_cross_entropy(all_pad_logits, torch::tensor({pad, pad, pad}, torch::kLong),
                                           0.3, pad);
  CHECK(none.loss.item<double>() == 0.0);
  none.loss.backward();
  CHECK(all_pad_logits.grad().abs().sum().item<double>() == 0.0);
}

TEST_CASE("label_smoothed_cross_entropy with eps = 0 is plain cross entropy", "[nn][loss]") {
  torch::manual_seed(5);
  const int64_t N = 7, V = 11, pad = 0;
  auto logits = torch::randn({N, V}) * 3;
  auto target = torch::randint(1, V, {N}, torch::kLong);
  target[2] = pad;
  target[5] = pad;

  auto ce = F::cross_entropy(logits, target,
                             F::CrossEntropyFuncOptions().reduction(torch::kSum).ignore_index(pad));
  auto nll = F::nll_loss(torch::log_softmax(logits, -1), target,
                         F::NLLLossFuncOptions().reduction(torch::kSum).ignore_index(pad));

  auto plain = label_smoothed_cross_entropy(logits, target, 0.0, pad);
  CHECK(plain.loss.item<double>() == Approx(ce.item<double>()).epsilon(1e-5));
  CHECK(plain.nll.item<double>() == Approx(nll.item<double>()).epsilon(1e-5));

  // With smoothing the nll output is still the plain NLL; the loss is
  // (1 - eps) * nll + eps/V * sum over kept rows of sum_v(-log p_v).
  const double eps = 0.1;
  auto smoothed = label_smoothed_cross_entropy(logits, target, eps, pad);
  CHECK(smoothed.nll.item<double>() == Approx(nll.item<double>()).epsilon(1e-5));
  auto keep = target.ne(pad);
  auto uniform = (-torch::log_softmax(logits, -1)).sum(-1).masked_select(keep).sum();
  const double expected = (1 - eps) * nll.item<double>() + eps / V * uniform.item<double>();
  CHECK(smoothed.loss.item<double>() == Approx(expected).epsilon(1e-5));

  // Its gradient with eps = 0 equals cross entropy's.
  auto a = logits.clone().requires_grad_(true), b = logits.clone().requires_grad_(true);
  label_smoothed_cross_entropy(a, target, 0.0, pad).loss.backward();
  F::cross_entropy(b, target, F::CrossEntropyFuncOptions().reduction(torch::kSum).ignore_index(pad))
      .backward();
  CHECK(xformer::testing::max_abs_diff(a.grad(), b.grad()) < 1e-5);
}

TEST_CASE("the fused projection + loss equals projecting then label_smoothed_cross_entropy",
          "[nn][loss]") {
  using xformer::nn::linear_label_smoothed_cross_entropy;
  torch::manual_seed(11);
  const int64_t N = 10, D = 6, V = 17, pad = 0;
  const double eps = 0.1;
  auto hidden = torch::randn({N, D});
  auto weight = torch::randn({V, D});
  auto target = torch::randint(1, V, {N}, torch::kLong);
  target[3] = pad;
  target[8] = pad;

  // Reference: the plain loss on explicit logits, scaled by an incoming gradient of 0.37 (as
  // the trainer's 1 / tokens) so that backward's scaling is checked too.
  auto h_ref = hidden.clone().requires_grad_(true), w_ref = weight.clone().requires_grad_(true);
  auto ref = label_smoothed_cross_entropy(F::linear(h_ref, w_ref), target, eps, pad);
  (ref.loss * 0.37).backward();

  // Chunks of 1 row, 3 rows (N not a multiple) and the default (one chunk here).
  for (int64_t chunk : {1, 3, 0}) {
    DYNAMIC_SECTION("chunk_rows " << chunk) {
      auto h = hidden.clone().requires_grad_(true), w = weight.clone().requires_grad_(true);
      auto out = linear_label_smoothed_cross_entropy(h, w, target, eps, pad, chunk);
      CHECK(out.loss.item<double>() == Approx(ref.loss.item<double>()).epsilon(1e-5));
      CHECK(out.nll.item<double>() == Approx(ref.nll.item<double>()).epsilon(1e-5));
      (out.loss * 0.37).backward();
      CHECK(xformer::testing::max_abs_diff(h.grad(), h_ref.grad()) < 1e-5);
      CHECK(xformer::testing::max_abs_diff(w.grad(), w_ref.grad()) < 1e-5);
      // Padding rows get no gradient.
      CHECK(h.grad()[3].abs().sum().item<double>() == 0.0);
    }
  }

  SECTION("without gradients (evaluation) the values are the same") {
    torch::NoGradGuard no_grad;
    auto out = linear_label_smoothed_cross_entropy(hidden, weight, target, eps, pad, 4);
    CHECK(out.loss.item<double>() == Approx(ref.loss.item<double>()).epsilon(1e-5));
    CHECK(out.nll.item<double>() == Approx(ref.nll.item<double>()).epsilon(1e-5));
  }

  SECTION("a negative ignore index is never gathered from") {
    auto t = target.masked_fill(target.eq(pad), -100);
    auto out = linear_label_smoothed_cross_entropy(hidden, weight, t, eps, -100, 3);
    CHECK(out.loss.item<double>() == Approx(ref.loss.item<double>()).epsilon(1e-5));
  }

  SECTION("doubles stay doubles, and bfloat16 weights and inputs train too") {
    auto h = hidden.to(torch::kDouble).requires_grad_(true), w = weight.to(torch::kDouble).requires_grad_(true);
    auto hd = h.detach().clone().requires_grad_(true), wd = w.detach().clone().requires_grad_(true);
    auto plain = label_smoothed_cross_entropy(F::linear(hd, wd), target, eps, pad);
    CHECK(plain.loss.scalar_type() == torch::kDouble);
    plain.loss.backward();
    auto out = linear_label_smoothed_cross_entropy(h, w, target, eps, pad, 3);
    CHECK(out.loss.scalar_type() == torch::kDouble);
    CHECK(out.loss.item<double>() == Approx(plain.loss.item<double>()).epsilon(1e-12));
    out.loss.backward();
    CHECK(xformer::testing::max_abs_diff(h.grad(), hd.grad()) < 1e-12);
    CHECK(xformer::testing::max_abs_diff(w.grad(), wd.grad()) < 1e-12);

    auto hb = hidden.to(torch::kBFloat16).requires_grad_(true), wb = weight.to(torch::kBFloat16).requires_grad_(true);
    auto low = linear_label_smoothed_cross_entropy(hb, wb, target, eps, pad, 3);
    CHECK(low.loss.scalar_type() == torch::kFloat);
    CHECK(low.loss.item<double>() == Approx(ref.loss.item<double>()).epsilon(0.03));
    low.loss.backward();
    CHECK(hb.grad().scalar_type() == torch::kBFloat16);
    CHECK(xformer::testing::max_abs_diff(hb.grad().to(torch::kFloat), h_ref.grad() / 0.37) < 0.1);
  }

  SECTION("mismatched shapes are refused with both shapes named") {
    CHECK_THROWS_WITH(linear_label_smoothed_cross_entropy(hidden, torch::randn({V, D + 1}), target,
                                                          eps, pad),
                      Catch::Contains("[10, 6]") && Catch::Contains("[17, 7]"));
  }
}

TEST_CASE("the CPU row kernel matches float64 LibTorch over a wide vocabulary and logit range",
          "[nn][loss]") {
  // V = 1003 (not a multiple of the vector width), logits from -60 to +40 so that exp
  // underflows for some entries, and a row whose target dominates (softmax ~ one-hot).
  using xformer::nn::linear_label_smoothed_cross_entropy;
  torch::manual_seed(5);
  const int64_t N = 37, D = 8, V = 1003, pad = 2;
  const double eps = 0.1;
  auto hidden = torch::randn({N, D}) * 3;
  auto weight = torch::randn({V, D}) * 2;
  auto target = torch::randint(0, V, {N}, torch::kLong);
  target[5] = pad;
  weight[target[7].item<int64_t>()] = hidden[7] * 10;  // row 7: its target's logit far above the rest

  auto h64 = hidden.to(torch::kDouble).requires_grad_(true), w64 = weight.to(torch::kDouble).requires_grad_(true);
  auto ref = label_smoothed_cross_entropy(F::linear(h64, w64), target, eps, pad);
  ref.loss.backward();

  auto h = hidden.clone().requires_grad_(true), w = weight.clone().requires_grad_(true);
  auto out = linear_label_smoothed_cross_entropy(h, w, target, eps, pad, 8);
  CHECK(out.loss.item<double>() == Approx(ref.loss.item<double>()).epsilon(1e-6));
  CHECK(out.nll.item<double>() == Approx(ref.nll.item<double>()).epsilon(1e-6));
  out.loss.backward();
  const double scale_h = h64.grad().abs().max().item<double>(), scale_w = w64.grad().abs().max().item<double>();
  CHECK(xformer::testing::max_abs_diff(h.grad(), h64.grad().to(torch::kFloat)) < 1e-5 * scale_h);
  CHECK(xformer::testing::max_abs_diff(w.grad(), w64.grad().to(torch::kFloat)) < 1e-5 * scale_w);
  CHECK(h.grad()[5].abs().sum().item<double>() == 0.0);  // the padding row
}

TEST_CASE("the fused loss turns a non-finite logit into NaN and refuses a bad target",
          "[nn][loss]") {
  using xformer::nn::linear_label_smoothed_cross_entropy;
  auto hidden = torch::randn({4, 3});
  auto weight = torch::randn({6, 3});
  auto target = torch::tensor({1, 2, 0, 5}, torch::kLong);
  for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    DYNAMIC_SECTION("hidden holding " << bad) {
      auto h = hidden.clone();
      h[2][1] = bad;
      auto hg = h.clone().requires_grad_(true);
      auto out = linear_label_smoothed_cross_entropy(hg, weight, target, 0.1, -100);
      CHECK(std::isnan(out.loss.item<double>()));
      CHECK(std::isnan(out.nll.item<double>()));
      out.loss.backward();
      CHECK(hg.grad()[2].isnan().all().item<bool>());
      CHECK(hg.grad()[0].isfinite().all().item<bool>());  // the other rows keep their gradient
    }
  }
  CHECK_THROWS_WITH(linear_label_smoothed_cross_entropy(hidden, weight, torch::tensor({1, 2, 6, 0}, torch::kLong),
                                                        0.1, -100),
                    Catch::Contains("outside [0, 6)"));
  CHECK_THROWS_WITH(linear_label_smoothed_cross_entropy(hidden, weight, torch::tensor({1, -1, 3, 0}, torch::kLong),
                                                        0.1, -100),
                    Catch::Contains("outside [0, 6)") && Catch::Contains("-100"));
  // The other paths refuse them too: the composed loss, and the fused one in double (LibTorch ops).
  CHECK_THROWS_WITH(label_smoothed_cross_entropy(torch::mm(hidden, weight.t()), torch::tensor({1, -2, 3, 0}, torch::kLong),
                                                 0.1, -100),
                    Catch::Contains("outside [0, 6)"));
  CHECK_THROWS_WITH(linear_label_smoothed_cross_entropy(hidden.to(torch::kDouble), weight.to(torch::kDouble),
                                                        torch::tensor({1, 2, 3, 6}, torch::kLong), 0.1, -100),
                    Catch::Contains("outside [0, 6)"));
}
