// The decoder-only Transformer of the music task: cached sampling equals full recomputation
// (relative and absolute positions, local attention, with a prefix fed at once), and nothing
// leaks from the future.
#include "test_support.h"

#include "xformer/models/music_transformer.h"

namespace {

using xformer::testing::max_abs_diff;
namespace models = xformer::models;

models::TransformerOptions options(int64_t max_relative_position, int64_t local_block = 0) {
  auto o = xformer::testing::small_transformer_options();
  o.decoder_layers = 2;
  o.pre_norm = true;
  o.max_relative_position = max_relative_position;
  o.local.block = local_block;
  return o;
}

}  // namespace

TEST_CASE("DecoderOnly: steps over the cache equal full recomputation", "[nn][music]") {
  // {max_relative_position, local_block}: absolute, relative, relative local (blocks of 3).
  for (auto [r, block] : {std::pair<int64_t, int64_t>{0, 0}, {3, 0}, {5, 3}}) {
    DYNAMIC_SECTION((r ? "relative" : "absolute") << " positions" << (block ? ", local attention" : "")) {
      torch::manual_seed(51);
      models::DecoderOnly model(options(r, block));
      model->eval();
      torch::NoGradGuard no_grad;
      auto tokens = torch::randint(3, 13, {2, 9}, torch::kLong);
      auto full = model->forward(tokens);  // (2, 9, V)
      models::DecoderOnlyStepper cached(model, true), recomputed(model, false);
      const int64_t P = 4;  // a prefix of 4: 3 fed at once, the 4th by the first step
      cached.prefill(tokens.narrow(1, 0, P));
      recomputed.prefill(tokens.narrow(1, 0, P));
      for (int64_t t = P - 1; t < 9; ++t) {
        auto a = cached.step(tokens.select(1, t));
        auto b = recomputed.step(tokens.select(1, t));
        CHECK(max_abs_diff(a, full.select(1, t)) < 1e-5);
        CHECK(max_abs_diff(b, full.select(1, t)) < 1e-5);
      }
    }
  }
}

TEST_CASE("DecoderOnly leaks nothing from future tokens", "[nn][music]") {
  torch::manual_seed(52);
  models::DecoderOnly model(options(4));
  model->eval();
  torch::NoGradGuard no_grad;
  auto tokens = torch::randint(3, 13, {1, 8}, torch::kLong);
  auto base = model->forward(tokens);
  auto changed = tokens.clone();
  changed[0][6] = (changed[0][6].item<int64_t>() + 1 - 3) % 10 + 3;  // another token at 6
  auto out = model->forward(changed);
  CHECK(max_abs_diff(out.narrow(1, 0, 6), base.narrow(1, 0, 6)) < 1e-6);
  CHECK(max_abs_diff(out.narrow(1, 6, 2), base.narrow(1, 6, 2)) > 1e-4);
}

TEST_CASE("DecoderOnly reports causal attention weights per layer", "[nn][music]") {
  torch::manual_seed(53);
  models::DecoderOnly model(options(3));
  model->eval();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> weights;
  model->states(torch::randint(3, 13, {1, 7}, torch::kLong), nullptr, &weights);
  REQUIRE(weights.size() == 2);
  for (const auto& w : weights) {
    REQUIRE(w.sizes() == torch::IntArrayRef({1, 2, 7, 7}));
    CHECK(max_abs_diff(w.sum(-1), torch::ones({1, 2, 7})) < 1e-5);
    CHECK(w.triu(1).abs().max().item<double>() == 0.0);  // nothing from the future
  }
}
