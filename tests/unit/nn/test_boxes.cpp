// Box geometry: IoU by hand, NMS against a brute-force reference, per-class NMS, anchors,
// box coding round trip, and the focal loss against a hand-computed value.
#include "test_support.h"

#include "xformer/nn/boxes.h"
#include "xformer/nn/loss.h"

namespace nn = xformer::nn;
using xformer::testing::max_abs_diff;

namespace {

// The definition: repeatedly keep the best remaining box and drop those overlapping it.
std::vector<int64_t> brute_force_nms(const torch::Tensor& boxes, const torch::Tensor& scores, double threshold) {
  std::vector<int64_t> remaining(boxes.size(0)), keep;
  std::iota(remaining.begin(), remaining.end(), 0);
  auto iou = nn::box_iou(boxes, boxes);
  while (!remaining.empty()) {
    auto best = std::max_element(remaining.begin(), remaining.end(), [&](int64_t a, int64_t b) {
      return scores[a].item<float>() < scores[b].item<float>();
    });
    const int64_t i = *best;
    keep.push_back(i);
    std::vector<int64_t> next;
    for (int64_t j : remaining)
      if (j != i && iou[i][j].item<float>() <= threshold) next.push_back(j);
    remaining = next;
  }
  return keep;
}

}  // namespace

TEST_CASE("box IoU, NMS and per-class NMS", "[nn][detection]") {
  auto a = torch::tensor({{0.f, 0.f, 10.f, 10.f}, {5.f, 5.f, 15.f, 15.f}});
  auto b = torch::tensor({{0.f, 0.f, 10.f, 10.f}, {20.f, 20.f, 30.f, 30.f}, {0.f, 0.f, 5.f, 10.f}});
  auto iou = nn::box_iou(a, b);
  CHECK(iou[0][0].item<float>() == Approx(1.0));
  CHECK(iou[0][1].item<float>() == 0.0f);
  CHECK(iou[0][2].item<float>() == Approx(0.5));
  CHECK(iou[1][0].item<float>() == Approx(25.0 / 175));

  torch::manual_seed(31);
  for (double threshold : {0.3, 0.5, 0.7}) {
    auto corner = torch::rand({60, 2}) * 50, size = torch::rand({60, 2}) * 20 + 2;
    auto boxes = torch::cat({corner, corner + size}, 1);
    auto scores = torch::rand({60});
    auto kept = nn::nms(boxes, scores, threshold);
    auto expected = brute_force_nms(boxes, scores, threshold);
    REQUIRE(kept.size(0) == static_cast<int64_t>(expected.size()));
    for (size_t i = 0; i < expected.size(); ++i) CHECK(kept[i].item<int64_t>() == expected[i]);
  }
  // Two identical boxes of different classes both survive per-class NMS.
  auto same = torch::tensor({{0.f, 0.f, 10.f, 10.f}, {0.f, 0.f, 10.f, 10.f}, {1.f, 0.f, 10.f, 10.f}});
  auto kept = nn::batched_nms(same, torch::tensor({0.9f, 0.8f, 0.7f}), torch::tensor({0, 1, 0}), 0.5);
  CHECK(kept.size(0) == 2);
  CHECK(kept[0].item<int64_t>() == 0);
  CHECK(kept[1].item<int64_t>() == 1);
}

TEST_CASE("anchors, box coding and the focal loss", "[nn][detection]") {
  const std::vector<double> scales = {1.0, std::pow(2.0, 1.0 / 3), std::pow(2.0, 2.0 / 3)}, ratios = {0.5, 1.0, 2.0};
  auto anchors = nn::level_anchors(3, 4, 8, 32, scales, ratios);  // stride 8, size 32
  REQUIRE(anchors.sizes() == torch::IntArrayRef({3 * 4 * 9, 4}));
  auto w = anchors.select(1, 2) - anchors.select(1, 0), h = anchors.select(1, 3) - anchors.select(1, 1);
  // Cell (0, 0), scale 1, ratio 0.5: centred at (4, 4), area 32^2, h / w = 0.5.
  CHECK((anchors[0][0] + anchors[0][2]).item<float>() / 2 == Approx(4));
  CHECK((w[0] * h[0]).item<float>() == Approx(1024));
  CHECK((h[0] / w[0]).item<float>() == Approx(0.5));
  // Anchor 9 * 5 + 4 (cell (1, 1), scale 2^(1/3), ratio 1): centre (12, 12), side 32 * 2^(1/3).
  CHECK((anchors[49][1] + anchors[49][3]).item<float>() / 2 == Approx(12));
  CHECK(w[49].item<float>() == Approx(32 * std::pow(2.0, 1.0 / 3)));

  auto boxes = torch::tensor({{3.f, 4.f, 40.f, 30.f}, {10.f, 0.f, 12.f, 50.f}});
  auto some = anchors.narrow(0, 10, 2);
  CHECK(max_abs_diff(nn::decode_boxes(some, nn::encode_boxes(some, boxes)), boxes) < 1e-4);
  CHECK(max_abs_diff(nn::encode_boxes(some, some), torch::zeros({2, 4})) < 1e-6);

  // Focal loss (alpha 0.25, gamma 2): logit 0 for a positive: 0.25 * 0.5^2 * ln 2 = 0.0433217;
  // logit 2 for a negative: p = 0.8808, 0.75 * 0.8808^2 * -ln(1 - 0.8808) = 1.2375586.
  auto loss = nn::sigmoid_focal_loss(torch::tensor({0.f, 2.f}), torch::tensor({1.f, 0.f}));
  CHECK(loss.item<double>() == Approx(1.2808803).epsilon(1e-5));
  // gamma 0 and alpha 0.5 is half the binary cross-entropy.
  auto x = torch::randn({5, 3}), t = (torch::rand({5, 3}) > 0.5).to(torch::kFloat);
  auto bce = torch::nn::functional::binary_cross_entropy_with_logits(
      x, t, torch::nn::functional::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kSum));
  CHECK(nn::sigmoid_focal_loss(x, t, 0.5, 0.0).item<double>() == Approx(0.5 * bce.item<double>()));
}
