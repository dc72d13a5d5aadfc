// Tests of the attention module, the position encodings and the Transformer's decoder:
// parity with a naive loop and with torch::nn::MultiheadAttention, causal masking, and the
// equivalence of cached incremental decoding with full recomputation.
#include "test_support.h"

#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "xformer/models/transformer.h"
#include "xformer/nn/attention.h"
#include "xformer/nn/positions.h"

namespace {

using xformer::testing::max_abs_diff;
namespace nn = xformer::nn;
namespace models = xformer::models;

// softmax(q.k / sqrt(Dh)) v one (batch, head, query) at a time, in double, skipping the keys
// that are padding or in the future. Causal is relative to the end of the keys: query i sees
// keys 0 .. (Tk - Tq) + i.
torch::Tensor naive_attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                           const torch::Tensor& padding, bool causal) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), Dh = q.size(3);
  auto out = torch::zeros({B, H, Tq, Dh}, torch::kDouble);
  auto qa = q.accessor<double, 4>(), ka = k.accessor<double, 4>(), va = v.accessor<double, 4>();
  auto oa = out.accessor<double, 4>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Tq; ++i) {
        std::vector<double> score(Tk, -std::numeric_limits<double>::infinity());
        double top = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < Tk; ++j) {
          if (padding.defined() && padding[b][j].item<bool>()) continue;
          if (causal && j > (Tk - Tq) + i) continue;
          double s = 0;
          for (int64_t d = 0; d < Dh; ++d) s += qa[b][h][i][d] * ka[b][h][j][d];
          score[j] = s / std::sqrt(static_cast<double>(Dh));
          top = std::max(top, score[j]);
        }
        double z = 0;
        for (int64_t j = 0; j < Tk; ++j) z += std::exp(score[j] - top);
        for (int64_t j = 0; j < Tk; ++j) {
          const double p = std::exp(score[j] - top) / z;
          for (int64_t d = 0; d < Dh; ++d) oa[b][h][i][d] += p * va[b][h][j][d];
        }
      }
  return out;
}

models::TransformerOptions tiny_options(bool pre_norm, bool learned_positions) {
  auto o = xformer::testing::small_transformer_options();
  o.heads = 4;
  o.encoder_layers = 2;
  o.pre_norm = pre_norm;
  o.learned_positions = learned_positions;
  return o;
}

// (3, 5) source with different amounts of trailing padding (pad = 0), no row all padding.
torch::Tensor padded_source() {
  return torch::tensor({4, 5, 6, 7, 3, 8, 9, 3, 0, 0, 10, 3, 0, 0, 0}, torch::kLong).view({3, 5});
}

}  // namespace

TEST_CASE("attend equals a naive softmax(qk/sqrt(d))v loop", "[nn][attention]") {
  torch::manual_seed(0);
  const int64_t B = 2, H = 3, Dh = 5;
  auto opts = torch::TensorOptions().dtype(torch::kDouble);

  struct Case {
    int64_t Tq, Tk;
    bool padding, causal;
  };
  // Tq != Tk with causal masking is the cached-decoder case: the queries are the last Tq
  // positions of the key sequence. Tq = 1 is one decoding step (it sees every key).
  for (const auto& c : {Case{4, 4, false, false}, Case{4, 6, true, false}, Case{5, 5, false, true},
                        Case{3, 6, false, true}, Case{3, 6, true, true}, Case{1, 6, true, true}}) {
    CAPTURE(c.Tq, c.Tk, c.padding, c.causal);
    auto q = torch::randn({B, H, c.Tq, Dh}, opts);
    auto k = torch::randn({B, H, c.Tk, Dh}, opts);
    auto v = torch::randn({B, H, c.Tk, Dh}, opts);
    nn::AttentionMask mask;
    mask.causal = c.causal;
    if (c.padding) {
      // Row 0 has no padding, row 1 pads its last two keys.
      mask.key_padding = torch::zeros({B, c.Tk}, torch::kBool);
      mask.key_padding[1][c.Tk - 1] = true;
      mask.key_padding[1][c.Tk - 2] = true;
    }
    torch::Tensor weights;
    auto out = nn::attend(q, k, v, mask, 0.0, /*training=*/false, &weights);
    auto expected = naive_attend(q, k, v, mask.key_padding, c.causal);
    REQUIRE(out.sizes() == expected.sizes());
    REQUIRE(out.scalar_type() == torch::kDouble);
    CHECK(max_abs_diff(out, expected) < 1e-10);

    // The weights are probabilities: rows sum to 1, masked keys get exactly 0.
    REQUIRE(weights.sizes() == torch::IntArrayRef({B, H, c.Tq, c.Tk}));
    CHECK(max_abs_diff(weights.sum(-1), torch::ones({B, H, c.Tq}, opts)) < 1e-12);
    if (c.padding) CHECK(weights.select(0, 1).narrow(-1, c.Tk - 2, 2).abs().max().item<double>() == 0.0);
    if (c.causal && c.Tq > 1)  // query 0 sees keys 0 .. Tk - Tq only
      CHECK(weights.select(2, 0).narrow(-1, c.Tk - c.Tq + 1, c.Tq - 1).abs().max().item<double>() == 0.0);

    // Without the weights pointer the result is the same (LibTorch 2.x takes a fused kernel).
    CHECK(max_abs_diff(nn::attend(q, k, v, mask, 0.0, false), expected) < 1e-10);
  }
}

TEST_CASE("MultiheadAttention matches torch::nn::MultiheadAttention", "[nn][attention]") {
  torch::manual_seed(1);
  const int64_t D = 12, H = 3, B = 2, Tq = 4, Tk = 6;
  nn::MultiheadAttention ours(D, H);
  torch::nn::MultiheadAttention theirs(torch::nn::MultiheadAttentionOptions(D, H).dropout(0.0));
  ours->eval();
  theirs->eval();
  {
    // Same random weights in both, biases included (both start with zero biases, which would
    // hide a bias that is added to the wrong chunk).
    torch::NoGradGuard no_grad;
    theirs->in_proj_weight.copy_(torch::randn({3 * D, D}) * 0.3);
    theirs->in_proj_bias.copy_(torch::randn({3 * D}) * 0.3);
    theirs->out_proj->weight.copy_(torch::randn({D, D}) * 0.3);
    theirs->out_proj->bias.copy_(torch::randn({D}) * 0.3);
    ours->in_proj_weight.copy_(theirs->in_proj_weight);
    ours->in_proj_bias.copy_(theirs->in_proj_bias);
    ours->out_proj->weight.copy_(theirs->out_proj->weight);
    ours->out_proj->bias.copy_(theirs->out_proj->bias);
  }
  torch::NoGradGuard no_grad;
  // torch's layout is (T, B, D); ours is (B, T, D).
  auto tb = [](const torch::Tensor& x) { return x.transpose(0, 1).contiguous(); };

  SECTION("self-attention with key padding") {
    auto x = torch::randn({B, Tk, D});
    auto padding = torch::zeros({B, Tk}, torch::kBool);
    padding[0][Tk - 1] = true;  // row 0 pads one position, row 1 three
    padding[1].narrow(0, Tk - 3, 3).fill_(true);
    nn::AttentionMask mask;
    mask.key_padding = padding;
    torch::Tensor weights;
    auto out = ours(x, x, mask, nullptr, false, &weights);
    auto ref = theirs(tb(x), tb(x), tb(x), padding);
    CHECK(max_abs_diff(out, tb(std::get<0>(ref))) < 1e-5);
    // torch averages the weights over heads: (B, Tq, Tk).
    CHECK(max_abs_diff(weights.mean(1), std::get<1>(ref)) < 1e-5);
  }
  SECTION("cross-attention with key padding, Tq != Tk") {
    auto query = torch::randn({B, Tq, D});
    auto memory = torch::randn({B, Tk, D});
    auto padding = torch::zeros({B, Tk}, torch::kBool);
    padding[1].narrow(0, Tk - 2, 2).fill_(true);
    nn::AttentionMask mask;
    mask.key_padding = padding;
    auto out = ours(query, memory, mask);
    REQUIRE(out.sizes() == torch::IntArrayRef({B, Tq, D}));
    auto ref = theirs(tb(query), tb(memory), tb(memory), padding);
    CHECK(max_abs_diff(out, tb(std::get<0>(ref))) < 1e-5);
  }
  SECTION("cross-attention through a static cache reuses the projected memory") {
    auto memory = torch::randn({B, Tk, D});
    nn::AttentionMask mask;
    nn::KVCache cache;
    auto q1 = torch::randn({B, 1, D}), q2 = torch::randn({B, 1, D});
    auto o1 = ours(q1, memory, mask, &cache, /*static_kv=*/true);
    REQUIRE(cache.k.defined());
    REQUIRE(cache.k.sizes() == torch::IntArrayRef({B, H, Tk, D / H}));
    // The second call must not need the memory any more: pass garbage, expect the same as
    // attending over the real memory.
    auto o2 = ours(q2, torch::randn({B, Tk, D}), mask, &cache, /*static_kv=*/true);
    CHECK(max_abs_diff(o1, std::get<0>(theirs(tb(q1), tb(memory), tb(memory))).transpose(0, 1)) < 1e-5);
    CHECK(max_abs_diff(o2, std::get<0>(theirs(tb(q2), tb(memory), tb(memory))).transpose(0, 1)) < 1e-5);
  }
}

TEST_CASE("KVCache appends through growing buffers and follows reordered beams", "[nn][attention]") {
  torch::manual_seed(5);
  const int64_t B = 3, H = 2, Dh = 4;
  nn::KVCache cache;
  std::vector<torch::Tensor> ks, vs;
  // Chunks of 1, 5, 1 ... positions: 56 in all, past the first capacity (16, reached at step 7)
  // and the second (40, at step 16). Beams are reordered before, between and after the growths.
  int64_t t = 0;
  for (int step = 0; step < 24; ++step) {
    const int64_t n = step % 3 == 1 ? 5 : 1;
    auto k = torch::randn({B, H, n, Dh}), v = torch::randn({B, H, n, Dh});
    ks.push_back(k), vs.push_back(v);
    cache.append(k, v);
    t += n;
    REQUIRE(cache.k.sizes() == torch::IntArrayRef({B, H, t, Dh}));
    CHECK(torch::equal(cache.k, torch::cat(ks, 2)));
    CHECK(torch::equal(cache.v, torch::cat(vs, 2)));
    const std::map<int, std::vector<int64_t>> survivors = {{6, {2, 0, 0}}, {14, {1, 2, 0}}, {20, {0, 0, 1}}};
    if (survivors.count(step)) {  // the beams that survive this step
      auto index = torch::tensor(survivors.at(step), torch::kLong);
      cache.reorder(index);
      for (auto& x : ks) x = x.index_select(0, index);
      for (auto& x : vs) x = x.index_select(0, index);
      CHECK(torch::equal(cache.k, torch::cat(ks, 2)));
      CHECK(torch::equal(cache.v, torch::cat(vs, 2)));
    }
  }
  // A view taken earlier stays valid and unchanged, whether the next append fits the buffer
  // (it writes after the view) or grows it (a new buffer; the old one is left alone).
  const auto view = cache.k, held = cache.k.clone();
  cache.append(torch::randn({B, H, 1, Dh}), torch::randn({B, H, 1, Dh}));
  CHECK(torch::equal(view, held));
  cache.append(torch::randn({B, H, 200, Dh}), torch::randn({B, H, 200, Dh}));  // past any capacity so far
  CHECK(torch::equal(view, held));
  CHECK(torch::equal(cache.k.narrow(2, 0, t), held));
  CHECK(cache.k.size(2) == t + 201);
}

TEST_CASE("sinusoidal_table holds sin on even dims, cos on odd dims", "[nn][positions]") {
  const int64_t D = 8;
  auto table = nn::sinusoidal_table(50, D);
  REQUIRE(table.sizes() == torch::IntArrayRef({50, D}));
  // PE(pos, 2i) = sin(pos / 10000^(2i/D)), PE(pos, 2i+1) = cos(pos / 10000^(2i/D)).
  // Position 0: sin 0 = 0 on even dims, cos 0 = 1 on odd dims.
  for (int64_t d = 0; d < D; ++d) CHECK(table[0][d].item<double>() == Approx(d % 2 ? 1.0 : 0.0));
  // Position 3, dims 4/5: i = 2, 10000^(4/8) = 100, angle 0.03.
  CHECK(table[3][4].item<double>() == Approx(std::sin(0.03)).margin(1e-6));
  CHECK(table[3][5].item<double>() == Approx(std::cos(0.03)).margin(1e-6));
  // Position 7, dims 0/1: angle 7 (wavelength 2*pi).
  CHECK(table[7][0].item<double>() == Approx(std::sin(7.0)).margin(1e-5));
  CHECK(table[7][1].item<double>() == Approx(std::cos(7.0)).margin(1e-5));
  // Position 41, dims 6/7: i = 3, 10000^(6/8) = 1000, angle 0.041.
  CHECK(table[41][6].item<double>() == Approx(std::sin(0.041)).margin(1e-6));
  CHECK(table[41][7].item<double>() == Approx(std::cos(0.041)).margin(1e-6));

  // The module returns the rows offset .. offset + length - 1, and refuses to go past the end.
  nn::PositionalEncoding pe(50, D, /*learned=*/false);
  CHECK(max_abs_diff(pe(4, 10), table.narrow(0, 10, 4)) == 0.0);
  CHECK_THROWS(pe(5, 46));
}

TEST_CASE("the decoder's causal mask leaks nothing from future positions", "[nn][transformer]") {
  for (bool pre_norm : {false, true}) {
    CAPTURE(pre_norm);
    torch::manual_seed(2);
    auto o = tiny_options(pre_norm, /*learned_positions=*/false);
    models::Transformer model(o);
    model->eval();

    {  // Changing future tokens keeps the earlier logits.
      torch::NoGradGuard no_grad;
      auto enc = model->encode(padded_source());
      auto prev = torch::tensor({2, 5, 6, 7, 8, 9, 2, 9, 8, 7, 6, 5, 2, 4, 4, 4, 4, 4}, torch::kLong)
                      .view({3, 6});
      auto changed = prev.clone();
      changed.narrow(1, 3, 3).copy_(torch::tensor({11, 12, 10}, torch::kLong));  // positions 3..5
      auto a = model->decode(prev, enc), b = model->decode(changed, enc);
      CHECK(max_abs_diff(a.narrow(1, 0, 3), b.narrow(1, 0, 3)) < 1e-6);
      // ... while the changed positions themselves do see the change (the test can fail).
      CHECK(max_abs_diff(a.narrow(1, 3, 3), b.narrow(1, 3, 3)) > 1e-3);
    }

    {
      // No gradient flows from the future. The decoder stack on continuous inputs: d out[:, i] / d x[:, j] = 0 for j > i.
      const int64_t B = 2, T = 5, S = 4;
      std::vector<models::DecoderLayer> layers;
      for (int i = 0; i < 2; ++i) {
        layers.emplace_back(o);
        layers.back()->eval();
      }
      auto memory = torch::randn({B, S, o.d_model});
      nn::AttentionMask memory_mask;
      memory_mask.key_padding = torch::tensor({0, 0, 0, 1, 0, 0, 0, 0}, torch::kBool).view({B, S});
      for (int64_t i = 0; i < T; ++i) {
        CAPTURE(i);
        auto x = torch::randn({B, T, o.d_model}, torch::requires_grad());
        auto h = x;
        for (auto& layer : layers) h = layer->forward(h, memory, memory_mask, nullptr, nullptr);
        // A random projection, not a plain sum: the sum over features of a post-norm
        // LayerNorm output is a constant, whose gradient is zero everywhere.
        (h.select(1, i) * torch::randn({B, o.d_model})).sum().backward();
        auto per_position = x.grad().abs().sum(std::vector<int64_t>{0, 2});  // (T)
        for (int64_t j = 0; j < T; ++j) {
          CAPTURE(j);
          if (j > i) CHECK(per_position[j].item<double>() == 0.0);
          else CHECK(per_position[j].item<double>() > 0.0);
        }
      }
    }
  }
}

TEST_CASE("incremental decoding with the KV cache equals full recomputation", "[nn][transformer]") {
  struct Variant {
    bool pre_norm, learned;
  };
  for (const auto& variant : {Variant{false, false}, Variant{true, false}, Variant{false, true},
                              Variant{true, true}}) {
    CAPTURE(variant.pre_norm, variant.learned);
    torch::manual_seed(3);
    models::Transformer model(tiny_options(variant.pre_norm, variant.learned));
    model->eval();
    torch::NoGradGuard no_grad;

    auto src = padded_source();
    auto prev = torch::tensor({2, 5, 6, 7, 8, 9, 2, 9, 8, 7, 6, 5, 2, 4, 11, 4, 12, 4}, torch::kLong)
                    .view({3, 6});
    const int64_t T = prev.size(1);
    auto enc = model->encode(src);
    auto full = model->decode(prev, enc);  // (3, 6, V)
    REQUIRE(full.sizes() == torch::IntArrayRef({3, T, 13}));

    // One token at a time through the cache: step t must equal row t of the full pass.
    {
      auto cache = model->make_cache();
      for (int64_t t = 0; t < T; ++t) {
        CAPTURE(t);
        auto step = model->decode(prev.narrow(1, t, 1), enc, &cache);
        REQUIRE(step.sizes() == torch::IntArrayRef({3, 1, 13}));
        CHECK(max_abs_diff(step.squeeze(1), full.select(1, t)) < 1e-5);
        CHECK(cache.length == t + 1);
      }
      REQUIRE(cache.self_attn.size() == 2);
      CHECK(cache.self_attn[0].k.size(2) == T);
      CHECK(cache.cross_attn[0].k.size(2) == src.size(1));
    }

    // Two positions per call (the cache grows by T, causal relative to its end).
    {
      auto cache = model->make_cache();
      for (int64_t t = 0; t < T; t += 2) {
        auto step = model->decode(prev.narrow(1, t, 2), enc, &cache);
        CHECK(max_abs_diff(step, full.narrow(1, t, 2)) < 1e-5);
      }
    }

    // Reordering mid-way (as beam search does, with a repeated row) gives the logits of the
    // permuted batch.
    {
      auto index = torch::tensor({2, 0, 0, 1}, torch::kLong);
      auto cache = model->make_cache();
      auto enc2 = model->encode(src);
      for (int64_t t = 0; t < 3; ++t) model->decode(prev.narrow(1, t, 1), enc2, &cache);
      cache.reorder(index);
      enc2.reorder(index);
      auto prev_perm = prev.index_select(0, index);
      auto full_perm = full.index_select(0, index);
      for (int64_t t = 3; t < T; ++t) {
        CAPTURE(t);
        auto step = model->decode(prev_perm.narrow(1, t, 1), enc2, &cache);
        REQUIRE(step.size(0) == 4);
        CHECK(max_abs_diff(step.squeeze(1), full_perm.select(1, t)) < 1e-5);
      }
    }
  }
}

TEST_CASE("source padding does not change the decoder's output", "[nn][transformer]") {
  // A row padded with extra pad tokens must decode exactly like the unpadded row.
  torch::manual_seed(4);
  models::Transformer model(tiny_options(false, false));
  model->eval();
  torch::NoGradGuard no_grad;
  auto short_src = torch::tensor({8, 9, 3}, torch::kLong).view({1, 3});
  auto long_src = torch::tensor({8, 9, 3, 0, 0, 0}, torch::kLong).view({1, 6});
  auto prev = torch::tensor({2, 5, 6, 7}, torch::kLong).view({1, 4});
  auto a = model->forward(short_src, prev), b = model->forward(long_src, prev);
  CHECK(max_abs_diff(a, b) < 1e-5);
}
