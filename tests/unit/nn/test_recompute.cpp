// Activation recomputation: a function or layer run through recompute_in_backward gives the
// plain output and gradients (dropout included: the second forward replays the same random
// numbers and leaves the random stream where the plain run leaves it), its activations are not
// kept in the autograd graph, and every Transformer-based model trains the same with it.
#include "test_support.h"

#include <functional>
#include <set>

#include "xformer/models/image_transformer.h"
#include "xformer/models/music_transformer.h"
#include "xformer/nn/dropout.h"
#include "xformer/nn/recompute.h"

namespace {

using xformer::testing::max_abs_diff;
namespace models = xformer::models;
namespace nn = xformer::nn;

struct Gradients {
  torch::Tensor loss;
  std::vector<torch::Tensor> grads;  // of the parameters, in order
  double next_random = 0;            // the random stream after backward
};

// Seeds, computes loss(), backpropagates, and collects the parameters' gradients.
Gradients gradients_of(torch::nn::Module& model, const std::function<torch::Tensor()>& loss) {
  torch::manual_seed(5);
  model.zero_grad();
  Gradients g;
  g.loss = loss();
  g.loss.backward();
  for (const auto& p : model.parameters()) g.grads.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
  g.next_random = torch::rand({1}).item<double>();
  return g;
}

void check_same(const Gradients& plain, const Gradients& recomputed, double tolerance) {
  CHECK(plain.loss.item<double>() == Approx(recomputed.loss.item<double>()).epsilon(1e-6));
  REQUIRE(plain.grads.size() == recomputed.grads.size());
  for (size_t i = 0; i < plain.grads.size(); ++i) {
    INFO("parameter " << i);
    REQUIRE(plain.grads[i].defined() == recomputed.grads[i].defined());
    if (plain.grads[i].defined()) CHECK(max_abs_diff(plain.grads[i], recomputed.grads[i]) < tolerance);
  }
  CHECK(plain.next_random == recomputed.next_random);
}

// The autograd nodes reachable from `root`, by name.
std::multiset<std::string> graph_nodes(const torch::Tensor& root) {
  std::multiset<std::string> names;
  std::set<torch::autograd::Node*> seen;
  std::vector<torch::autograd::Node*> todo{root.grad_fn().get()};
  while (!todo.empty()) {
    auto* node = todo.back();
    todo.pop_back();
    if (!node || !seen.insert(node).second) continue;
    names.insert(node->name());
    for (const auto& edge : node->next_edges()) todo.push_back(edge.function.get());
  }
  return names;
}

size_t count_containing(const std::multiset<std::string>& names, const std::string& part) {
  size_t n = 0;
  for (const auto& name : names) n += name.find(part) != std::string::npos;
  return n;
}

}  // namespace

TEST_CASE("recompute_in_backward: same output, gradients and random stream as the plain function", "[nn][recompute]") {
  torch::manual_seed(3);
  torch::nn::Linear inner(6, 6), outer(6, 4);
  auto x0 = torch::randn({5, 6}), y0 = torch::randn({5, 6});
  // Two inputs, parameters captured, dropout drawing from the default generator.
  auto fn = [&](const std::vector<torch::Tensor>& in) {
    return outer(nn::dropout(torch::tanh(inner(in[0]) * in[1]), 0.5, true));
  };
  struct Run {
    torch::Tensor out, gx, gy, g_inner, g_outer;
    double next_random;
  };
  auto run = [&](bool recompute) {
    auto x = x0.clone().requires_grad_(true), y = y0.clone().requires_grad_(true);
    inner->zero_grad(), outer->zero_grad();
    torch::manual_seed(11);
    auto out = recompute ? nn::recompute_in_backward(fn, {x, y}) : fn({x, y});
    torch::rand({7});  // the stream moves on between forward and backward, as in training
    (out * out).sum().backward();
    return Run{out.detach(), x.grad(), y.grad(), inner->weight.grad().clone(), outer->weight.grad().clone(),
               torch::rand({1}).item<double>()};
  };
  const Run plain = run(false), recomputed = run(true);
  CHECK(torch::equal(plain.out, recomputed.out));
  CHECK(max_abs_diff(plain.gx, recomputed.gx) < 1e-6);
  CHECK(max_abs_diff(plain.gy, recomputed.gy) < 1e-6);
  CHECK(max_abs_diff(plain.g_inner, recomputed.g_inner) < 1e-6);
  CHECK(max_abs_diff(plain.g_outer, recomputed.g_outer) < 1e-6);
  CHECK(plain.next_random == recomputed.next_random);
  CHECK(plain.gx.abs().sum().item<double>() > 0);

  SECTION("without autograd it is the function itself") {
    torch::NoGradGuard no_grad;
    torch::manual_seed(11);
    auto direct = fn({x0, y0});
    torch::manual_seed(11);
    CHECK(torch::equal(nn::recompute_in_backward(fn, {x0, y0}), direct));
  }
}

TEST_CASE("recomputing Transformer layers keeps one graph node per layer", "[nn][recompute]") {
  auto o = xformer::testing::small_transformer_options();
  o.encoder_layers = 2, o.decoder_layers = 3;
  models::Transformer model(o);
  model->train();
  auto src = torch::randint(1, 13, {2, 5}, torch::kLong), tgt = torch::randint(1, 13, {2, 4}, torch::kLong);
  const auto plain = graph_nodes(model->forward(src, tgt));
  REQUIRE(nn::set_recompute(*model, true) == 5);
  const auto recomputed = graph_nodes(model->forward(src, tgt));
  CHECK(count_containing(plain, "RecomputeFunction") == 0);
  CHECK(count_containing(recomputed, "RecomputeFunction") == 5);
  // Inside the layers: attention's softmax, the feed-forward's ReLU, the norms. Outside them
  // only the embeddings and the output projection remain.
  CHECK(count_containing(plain, "Softmax") >= 7);
  CHECK(count_containing(recomputed, "Softmax") == 0);
  CHECK(count_containing(recomputed, "Relu") == 0);
  CHECK(recomputed.size() * 4 < plain.size());

  SECTION("evaluation and decoding with a cache run the layers directly") {
    model->eval();
    CHECK(count_containing(graph_nodes(model->forward(src, tgt)), "RecomputeFunction") == 0);
  }
}

TEST_CASE("models train the same with recomputed layers", "[nn][recompute]") {
  SECTION("Transformer (encoder-decoder, all dropouts)") {
    auto o = xformer::testing::small_transformer_options();
    o.dropout = o.attention_dropout = o.activation_dropout = 0.2;
    torch::manual_seed(21);
    models::Transformer model(o);
    auto src = torch::randint(1, 13, {3, 6}, torch::kLong), tgt = torch::randint(1, 13, {3, 5}, torch::kLong);
    src[0][5] = 0;  // padding in the source
    auto loss = [&] { return model->forward(src, tgt).logsumexp(-1).sum(); };
    const auto plain = gradients_of(*model, loss);
    nn::set_recompute(*model, true);
    check_same(plain, gradients_of(*model, loss), 1e-5);
  }
  SECTION("music decoder (relative attention, and relative local attention)") {
    for (int64_t block : {0, 3}) {
      auto o = xformer::testing::small_transformer_options();
      o.decoder_layers = 2, o.pre_norm = true, o.max_relative_position = 4, o.local.block = block;
      o.dropout = o.attention_dropout = 0.2;
      torch::manual_seed(22);
      models::DecoderOnly model(o);
      auto tokens = torch::randint(3, 13, {2, 9}, torch::kLong);
      auto loss = [&] { return model->forward(tokens).logsumexp(-1).sum(); };
      const auto plain = gradients_of(*model, loss);
      nn::set_recompute(*model, true);
      check_same(plain, gradients_of(*model, loss), 1e-5);
    }
  }
  SECTION("Image Transformer (local 2D, conditioned on an encoder)") {
    models::ImageTransformerOptions o;
    o.height = 4, o.width = 6, o.channels = 3;
    o.d_model = 16, o.heads = 2, o.ffn_dim = 32, o.layers = 2, o.dropout = 0.2;
    o.attention = "local2d", o.local_2d = {2, 6, 1, 3};
    o.encoder_layers = 1, o.lr_height = 2, o.lr_width = 3;
    torch::manual_seed(23);
    models::ImageTransformer model(o);
    auto images = torch::randint(0, 256, {2, 4, 6, 3}, torch::kLong);
    auto lr = torch::randint(0, 256, {2, 2, 3, 3}, torch::kLong);
    auto loss = [&] { return model->forward(images, lr).logsumexp(-1).sum(); };
    const auto plain = gradients_of(*model, loss);
    REQUIRE(nn::set_recompute(*model, true) == 3);
    check_same(plain, gradients_of(*model, loss), 1e-5);
  }
}
