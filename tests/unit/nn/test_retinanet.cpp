// RetinaNet: outputs per anchor on five levels, target assignment (positives, the best anchor
// of every object, nothing for an empty image), and a small network that learns to find two
// bright squares and tell them apart.
#include "test_support.h"

#include "xformer/models/retinanet.h"
#include "xformer/nn/boxes.h"

namespace models = xformer::models;

namespace {

models::RetinaNetOptions small_retinanet(const std::string& spatial) {
  models::RetinaNetOptions o;
  o.backbone.blocks = {1, 1, 1, 1};
  o.backbone.width = 4, o.backbone.stem_width = 8, o.backbone.in_channels = 1, o.backbone.small_images = true;
  o.backbone.spatial = spatial, o.backbone.heads = 2, o.backbone.kernel = 3;
  o.classes = 2, o.fpn_channels = 16, o.head_convs = 1;
  return o;
}

}  // namespace

TEST_CASE("RetinaNet outputs and target assignment", "[nn][detection]") {
  torch::manual_seed(41);
  models::RetinaNet net(small_retinanet("conv"));
  auto out = net(torch::randn({2, 1, 32, 32}));
  // Levels of 16, 8, 4, 2, 1 cells (strides 2 .. 32), 9 anchors each.
  const int64_t anchors = 9 * (256 + 64 + 16 + 4 + 1);
  CHECK(out.class_logits.sizes() == torch::IntArrayRef({2, anchors, 2}));
  CHECK(out.box_deltas.sizes() == torch::IntArrayRef({2, anchors, 4}));
  REQUIRE(out.anchors.sizes() == torch::IntArrayRef({anchors, 4}));
  // The prior: every anchor starts near probability 0.01.
  CHECK(out.class_logits.sigmoid().mean().item<double>() == Approx(0.01).epsilon(0.2));
  // Finest level, cell (0, 0): centred at (1, 1), scale 1 and ratio 1 with side 4 * 2 = 8.
  auto a = out.anchors[1];
  CHECK(a[0].item<float>() == Approx(-3));
  CHECK(a[2].item<float>() == Approx(5));

  // One object exactly on an anchor: that anchor is positive; an empty image has none.
  std::vector<models::ObjectTargets> targets = {
      {out.anchors.narrow(0, 4 * 9 * 16 + 9 * 5 + 4, 1).clone(), torch::tensor({1}, torch::kLong)},
      {torch::zeros({0, 4}), torch::zeros({0}, torch::kLong)}};
  auto loss = models::retinanet_loss(out, targets);
  CHECK(loss.positives >= 1);
  CHECK(loss.classification.item<double>() > 0);
  CHECK(std::isfinite(loss.regression.item<double>()));
  // A tiny object overlapping no anchor by 0.5 still gets its best anchor.
  targets[0].boxes = torch::tensor({{10.f, 10.f, 11.f, 11.f}});
  CHECK(models::retinanet_loss(out, targets).positives == 1);
  targets[0].labels = torch::tensor({5}, torch::kLong);
  CHECK_THROWS(models::retinanet_loss(out, targets));
}

TEST_CASE("RetinaNet anchors sit on their cells in non-square images of any size", "[nn][detection]") {
  torch::manual_seed(41);
  models::RetinaNet net(small_retinanet("conv"));
  // 24 x 40: levels of 12 x 20, 6 x 10, 3 x 5, 2 x 3 and 1 x 2 cells (the last two rounded up),
  // strides 2, 4, 8, 16, 32 along both axes.
  auto anchors = net(torch::randn({1, 1, 24, 40})).anchors;
  REQUIRE(anchors.size(0) == 9 * (240 + 60 + 15 + 6 + 2));
  auto centre = [&](int64_t row) {
    auto a = anchors[row];
    return std::pair{(a[0].item<double>() + a[2].item<double>()) / 2, (a[1].item<double>() + a[3].item<double>()) / 2};
  };
  CHECK(centre((11 * 20 + 19) * 9 + 1) == std::pair{39.0, 23.0});       // P3's last cell
  CHECK(centre(anchors.size(0) - 9 + 1) == std::pair{48.0, 16.0});      // P7's second cell
  CHECK(centre(anchors.size(0) - 2 * 9 - 6 * 9 + 3 * 9 + 1) == std::pair{8.0, 24.0});  // P6's cell (1, 0)
}

TEST_CASE("RetinaNet learns to find and classify squares", "[nn][detection]") {
  for (const std::string spatial : {"conv", "attention"}) {
    DYNAMIC_SECTION(spatial) {
      torch::manual_seed(42);
      models::RetinaNet net(small_retinanet(spatial));
      // Image 0: a bright 10x10 square at (4, 6) (class 0); image 1: a dim 12x12 one at (16, 12) (class 1).
      auto images = torch::full({2, 1, 32, 32}, -1.0);
      images[0][0].narrow(0, 6, 10).narrow(1, 4, 10).fill_(1.0);
      images[1][0].narrow(0, 12, 12).narrow(1, 16, 12).fill_(0.2);
      std::vector<models::ObjectTargets> targets = {
          {torch::tensor({{4.f, 6.f, 14.f, 16.f}}), torch::tensor({0}, torch::kLong)},
          {torch::tensor({{16.f, 12.f, 28.f, 24.f}}), torch::tensor({1}, torch::kLong)}};
      torch::optim::Adam adam(net->parameters(), torch::optim::AdamOptions(0.005));
      double first = 0, last = 0;
      for (int step = 0; step < 80; ++step) {
        auto loss = models::retinanet_loss(net(images), targets);
        auto total = loss.classification + loss.regression;
        adam.zero_grad();
        total.backward();
        adam.step();
        (step == 0 ? first : last) = total.item<double>();
      }
      CHECK(last < 0.2 * first);
      net->eval();
      torch::NoGradGuard no_grad;
      auto found = models::retinanet_detect(net(images), 32, 32, 0.3);
      for (int b = 0; b < 2; ++b) {
        INFO("image " << b);
        REQUIRE(found[b].boxes.size(0) >= 1);
        CHECK(found[b].labels[0].item<int64_t>() == targets[b].labels[0].item<int64_t>());
        CHECK(xformer::nn::box_iou(found[b].boxes.narrow(0, 0, 1), targets[b].boxes).item<float>() > 0.5);
      }
    }
  }
}
