// The Image Transformer: sampling over the caches equals full recomputation (local 1D and 2D,
// unconditional and conditional), and nothing leaks through the raster order across channels:
// the logits of a position depend on the intensities before it only, including the earlier
// channels of its own pixel. The conditional decoder's aligned path reads the low-resolution
// intensity under each position.
#include "test_support.h"

#include "xformer/models/image_transformer.h"

namespace {

using xformer::testing::max_abs_diff;
namespace models = xformer::models;

models::ImageTransformerOptions small(const std::string& attention, int64_t encoder_layers) {
  models::ImageTransformerOptions o;
  o.height = 4, o.width = 6, o.channels = 3;
  o.d_model = 16, o.heads = 2, o.ffn_dim = 32, o.layers = 2, o.dropout = 0.0;
  o.attention = attention;
  o.block_length = 7;
  o.local_2d = {2, 6, 1, 3};  // 2 rows x 2 pixels, flange of 1 row and 1 pixel
  o.encoder_layers = encoder_layers;
  o.lr_height = 2, o.lr_width = 3;
  return o;
}

}  // namespace

TEST_CASE("Image Transformer: steps over the cache equal full recomputation", "[nn][image]") {
  for (const std::string attention : {"local1d", "local2d"}) {
    for (int64_t enc : {0, 1}) {
      DYNAMIC_SECTION(attention << (enc ? ", conditional" : ", unconditional")) {
        torch::manual_seed(81);
        models::ImageTransformer model(small(attention, enc));
        model->eval();
        torch::NoGradGuard no_grad;
        auto images = torch::randint(0, 256, {2, 4, 6, 3}, torch::kLong);
        auto lr = enc ? torch::randint(0, 256, {2, 2, 3, 3}, torch::kLong) : torch::Tensor();
        auto full = model(images, lr);  // (2, 72, 256)
        REQUIRE(full.sizes() == torch::IntArrayRef({2, 72, 256}));
        auto inputs = model->shifted_inputs(images);
        models::ImageTransformerStepper cached(model, lr, true), recomputed(model, lr, false);
        for (int64_t t = 0; t < 72; ++t) {
          auto a = cached.step(inputs.select(1, t));
          CHECK(max_abs_diff(a, full.select(1, t)) < 1e-4);
          if (t % 7 == 0 || t == 71) {  // recomputation is quadratic: check a sample of steps
            auto b = recomputed.step(inputs.select(1, t));
            CHECK(max_abs_diff(b, full.select(1, t)) < 1e-4);
          } else {
            recomputed.step(inputs.select(1, t));
          }
        }
      }
    }
  }
}

TEST_CASE("Image Transformer leaks nothing through the raster order across channels", "[nn][image]") {
  for (const std::string attention : {"local1d", "local2d"}) {
    DYNAMIC_SECTION(attention) {
      torch::manual_seed(82);
      models::ImageTransformer model(small(attention, 0));
      model->eval();
      torch::NoGradGuard no_grad;
      auto images = torch::randint(0, 256, {1, 4, 6, 3}, torch::kLong);
      auto base = model(images);
      // The green channel of pixel (1, 2): raster position p = (1 * 6 + 2) * 3 + 1.
      const int64_t p = (1 * 6 + 2) * 3 + 1;
      auto changed_images = images.clone();
      changed_images[0][1][2][1] = (images[0][1][2][1].item<int64_t>() + 100) % 256;
      auto changed = model(changed_images);
      // Positions up to p (red and green of that pixel included) do not see it; blue does.
      CHECK(max_abs_diff(changed.narrow(1, 0, p + 1), base.narrow(1, 0, p + 1)) == 0.0);
      CHECK(max_abs_diff(changed.select(1, p + 1), base.select(1, p + 1)) > 1e-4);
    }
  }
}

TEST_CASE("Image Transformer: each position's aligned encoder state is the low-resolution intensity under it",
          "[nn][image]") {
  models::ImageTransformer model(small("local2d", 1));  // 4x6 image over a 2x3 one: 2x2 pixels each
  // Encoder state j holds j: the index of the low-resolution intensity (raster order).
  auto memory = torch::arange(2 * 3 * 3, torch::kFloat).view({1, 18, 1}).expand({2, 18, 4});
  auto aligned = model->aligned_memory(memory, 5, 60);  // positions 5 .. 64
  REQUIRE(aligned.sizes() == torch::IntArrayRef({2, 60, 4}));
  for (int64_t t = 5; t < 65; ++t) {
    const int64_t y = t / 18, x = (t / 3) % 6, c = t % 3;
    CHECK(aligned[1][t - 5][3].item<float>() == static_cast<float>(((y / 2) * 3 + x / 2) * 3 + c));
  }
}
