// ResNets with convolution or SASA spatial layers: parameters and FLOPs equal hand counts on a
// small net, ResNet-50 matches the well-known 25,557,032 parameters / ~8.2 GFLOPs and the
// attention variants land near the SASA paper's table; shapes of the stages; both variants fit
// a fixed batch.
#include "test_support.h"

#include "xformer/models/resnet.h"

namespace {

namespace models = xformer::models;

// One block per stage, widths 2 .. 16 (outputs 8 .. 64), 4 stem channels, 1 input channel,
// 3 classes, resolution kept by the stem.
models::ResNetOptions small_net(const std::string& spatial) {
  models::ResNetOptions o;
  o.blocks = {1, 1, 1, 1};
  o.width = 2, o.stem_width = 4, o.in_channels = 1, o.classes = 3;
  o.small_images = true, o.spatial = spatial, o.heads = 1, o.kernel = 3;
  return o;
}

}  // namespace

TEST_CASE("ResNet parameters and FLOPs equal hand counts on a small net", "[nn][resnet]") {
  // Parameters: stem 1*4*9 + BN 8 = 44; stage s with input c and width w: 1x1 c*w, spatial
  // 9 w^2, 1x1 w*4w, shortcut c*4w, BNs 2w + 2w + 8w + 8w: 132, 448, 1632, 6208; classifier
  // 64*3 + 3 = 195. Total 8659.
  models::ResNet conv(small_net("conv"));
  auto s = conv->stats(8, 8);
  CHECK(s.parameters == 8659);
  // FLOPs (2 per multiply-add) at 8x8: stem 4608; stage 0 (8x8) 1024 + 4608 + 2048 + 4096;
  // stages 1..3 each 4096 + 4608 + 2048 + 4096 (the 1x1 reduce before the stride, the rest
  // after it); classifier 384. Total 61312.
  CHECK(s.flops == 61312.0);
  // Attention (1 head, K = 3): q, k, v 3 w^2 and relative tables 3 w instead of 9 w^2:
  // 8659 - (18 + 84 + 360 + 1488) = 6709. Its FLOPs 2 h w (3 w^2 + w (2 * 9 + 3)), at the
  // block's input resolution: 6912, 16896, 11520, 8832 instead of 4 * 4608.
  models::ResNet attention(small_net("attention"));
  auto a = attention->stats(8, 8);
  CHECK(a.parameters == 6709);
  CHECK(a.flops == 61312.0 - 4 * 4608 + 6912 + 16896 + 11520 + 8832);
}

TEST_CASE("ResNet-50/26 at ImageNet size: the reference counts and the SASA paper's table", "[nn][resnet]") {
  auto stats = [](int64_t depth, const std::string& spatial, const std::string& stem) {
    models::ResNetOptions o;
    o.blocks = models::resnet_blocks(depth);
    o.spatial = spatial, o.stem = stem;
    return models::ResNet(o)->stats(224, 224);
  };
  auto r50 = stats(50, "conv", "conv");
  CHECK(r50.parameters == 25557032);  // the standard ResNet-50 (v1.5, strided 3x3)
  CHECK(r50.flops == Approx(8.2e9).epsilon(0.01));
  auto r50_attention = stats(50, "attention", "attention");
  CHECK(r50_attention.parameters == Approx(18.0e6).epsilon(0.02));
  CHECK(r50_attention.flops == Approx(7.2e9).epsilon(0.1));
  auto r26 = stats(26, "conv", "conv");
  CHECK(r26.parameters == Approx(13.7e6).epsilon(0.02));
  CHECK(r26.flops == Approx(4.7e9).epsilon(0.05));
  auto r26_attention = stats(26, "attention", "attention");
  CHECK(r26_attention.parameters == Approx(10.3e6).epsilon(0.02));
  CHECK(r26_attention.flops == Approx(4.5e9).epsilon(0.1));
  CHECK_THROWS(models::resnet_blocks(34));
}

TEST_CASE("ResNet stages' shapes, and both variants fit a fixed batch", "[nn][resnet]") {
  for (const std::string spatial : {"conv", "attention"}) {
    DYNAMIC_SECTION(spatial) {
      torch::manual_seed(21);
      models::ResNet net(small_net(spatial));
      auto x = torch::randn({6, 1, 8, 8});
      auto features = net->features(x);
      REQUIRE(features.size() == 4);
      CHECK(features[0].sizes() == torch::IntArrayRef({6, 8, 8, 8}));
      CHECK(features[3].sizes() == torch::IntArrayRef({6, 64, 1, 1}));
      auto labels = torch::tensor({0, 1, 2, 0, 1, 2}, torch::kLong);
      torch::optim::Adam adam(net->parameters(), torch::optim::AdamOptions(0.01));
      double first = 0, last = 0;
      for (int step = 0; step < 30; ++step) {
        auto loss = torch::nn::functional::cross_entropy(net(x), labels);
        adam.zero_grad();
        loss.backward();
        adam.step();
        (step == 0 ? first : last) = loss.item<double>();
      }
      CHECK(last < 0.5 * first);
    }
  }
  CHECK_THROWS(models::ResNet(small_net("nope")));
  models::ResNet net(small_net("conv"));
  CHECK_THROWS(net(torch::randn({1, 3, 8, 8})));
}
