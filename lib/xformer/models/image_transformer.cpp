#include "xformer/models/image_transformer.h"

#include <ATen/CPUGeneratorImpl.h>

#include "xformer/decode/search.h"
#include "xformer/nn/dropout.h"

namespace xformer::models {

namespace F = torch::nn::functional;

namespace {

TransformerOptions layer_options(const ImageTransformerOptions& o, bool local) {
  TransformerOptions t;
  t.d_model = o.d_model, t.heads = o.heads, t.ffn_dim = o.ffn_dim;
  t.dropout = o.dropout;
  t.pre_norm = true;
  if (local && o.attention == "local1d") t.local.block = o.block_length;
  if (local && o.attention == "local2d") t.local.grid_cols = o.width * o.channels, t.local.shape = o.local_2d;
  return t;
}

}  // namespace

ImageTransformerImpl::ImageTransformerImpl(const ImageTransformerOptions& o) : options_(o) {
  TORCH_CHECK(o.attention == "local1d" || o.attention == "local2d",
              "image_transformer: attention must be local1d or local2d, got ", o.attention);
  TORCH_CHECK(o.height > 0 && o.width > 0 && o.channels > 0 && o.d_model % o.heads == 0,
              "image_transformer: positive image sizes and d_model divisible by heads expected");
  TORCH_CHECK(o.encoder_layers == 0 || (o.lr_height > 0 && o.lr_width > 0 && o.height % o.lr_height == 0 &&
                                        o.width % o.lr_width == 0),
              "image_transformer: the low-resolution size must divide the image size");
  const int64_t D = o.d_model;
  values = register_module("values", torch::nn::Embedding(o.channels * kValues + 1, D));
  rows = register_module("rows", torch::nn::Embedding(o.height, D));
  cols = register_module("cols", torch::nn::Embedding(o.width, D));
  chans = register_module("chans", torch::nn::Embedding(o.channels, D));
  for (auto* e : {&values, &rows, &cols, &chans}) torch::nn::init::normal_((*e)->weight, 0.0, std::pow(D, -0.5));
  decoder = register_module("decoder", torch::nn::ModuleList());
  const auto dec = layer_options(o, true);
  for (int64_t i = 0; i < o.layers; ++i) {
    if (conditional()) decoder->push_back(DecoderLayer(dec));
    else decoder->push_back(EncoderLayer(dec));
  }
  decoder_norm = register_module("decoder_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D})));
  if (conditional()) {
    lr_rows = register_module("lr_rows", torch::nn::Embedding(o.lr_height, D));
    lr_cols = register_module("lr_cols", torch::nn::Embedding(o.lr_width, D));
    torch::nn::init::normal_(lr_rows->weight, 0.0, std::pow(D, -0.5));
    torch::nn::init::normal_(lr_cols->weight, 0.0, std::pow(D, -0.5));
    encoder = register_module("encoder", torch::nn::ModuleList());
    const auto enc = layer_options(o, false);
    for (int64_t i = 0; i < o.encoder_layers; ++i) encoder->push_back(EncoderLayer(enc));
    encoder_norm = register_module("encoder_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D})));
  }
  output = register_module("output", torch::nn::Linear(D, kValues));
}

torch::Tensor ImageTransformerImpl::embed(const torch::Tensor& ids, int64_t offset, int64_t w,
                                          torch::nn::Embedding& row_table,
                                          torch::nn::Embedding& col_table) {
  const int64_t C = options_.channels, T = ids.size(1);
  auto t = torch::arange(offset, offset + T, torch::TensorOptions(torch::kLong).device(ids.device()));
  auto x = values(ids);  // (B, T, D)
  x = x + row_table(t.div(w * C, "floor")) + col_table(t.div(C, "floor").remainder(w)) + chans(t.remainder(C));
  return nn::dropout(x, options_.dropout, is_training());
}

torch::Tensor ImageTransformerImpl::aligned_memory(const torch::Tensor& memory, int64_t offset, int64_t T) const {
  const auto& o = options_;
  const int64_t C = o.channels, sy = o.height / o.lr_height, sx = o.width / o.lr_width;
  auto t = torch::arange(offset, offset + T, torch::TensorOptions(torch::kLong).device(memory.device()));
  auto row = t.div(o.width * C, "floor"), col = t.div(C, "floor").remainder(o.width), chan = t.remainder(C);
  auto source = (row.div(sy, "floor") * o.lr_width + col.div(sx, "floor")) * C + chan;  // (T)
  return memory.index_select(1, source);
}

torch::Tensor ImageTransformerImpl::encode(const torch::Tensor& lr) {
  TORCH_CHECK(conditional(), "image_transformer: encode() needs encoder_layers > 0");
  const auto& o = options_;
  TORCH_CHECK(lr.dim() == 4 && lr.size(1) == o.lr_height && lr.size(2) == o.lr_width && lr.size(3) == o.channels,
              "image_transformer: low-resolution images (B, ", o.lr_height, ", ", o.lr_width, ", ",
              o.channels, ") expected, got ", lr.sizes());
  auto flat = lr.reshape({lr.size(0), -1});  // (B, h w C) intensities in raster order
  auto channel = torch::arange(flat.size(1), flat.options()).remainder(o.channels);
  auto x = embed(flat + channel * kValues, 0, o.lr_width, lr_rows, lr_cols);
  for (auto& layer : *encoder) x = layer->as<EncoderLayer>()->forward(x, nn::AttentionMask{});
  return encoder_norm(x);
}

torch::Tensor ImageTransformerImpl::shifted_inputs(const torch::Tensor& images) const {
  const auto& o = options_;
  TORCH_CHECK(images.dim() == 4 && images.size(1) == o.height && images.size(2) == o.width &&
                  images.size(3) == o.channels,
              "image_transformer: images (B, ", o.height, ", ", o.width, ", ", o.channels, ") expected, got ",
              images.sizes());
  auto flat = images.reshape({images.size(0), -1});
  auto start = torch::full({flat.size(0), 1}, start_token(), flat.options());
  return torch::cat({start, flat.narrow(1, 0, flat.size(1) - 1)}, 1);
}

torch::Tensor ImageTransformerImpl::decode_states(const torch::Tensor& inputs, const torch::Tensor& memory,
                                                  std::vector<nn::KVCache>* self_caches,
                                                  std::vector<nn::KVCache>* cross_caches) {
  const auto& o = options_;
  const int64_t offset =
      self_caches && !self_caches->empty() && (*self_caches)[0].k.defined() ? (*self_caches)[0].k.size(2) : 0;
  TORCH_CHECK(offset + inputs.size(1) <= o.positions(), "image_transformer: ", offset + inputs.size(1),
              " positions but the image has ", o.positions());
  TORCH_CHECK(conditional() == memory.defined(),
              conditional() ? "image_transformer: the conditional model needs its encoder states"
                            : "image_transformer: the unconditional model takes no encoder states");
  // Input j (position t = offset + j) is intensity t - 1 of channel (t - 1) % C: its own table.
  auto t = torch::arange(offset, offset + inputs.size(1), inputs.options());
  auto ids = torch::where(t.eq(0), torch::full_like(inputs, o.channels * kValues),
                          inputs + (t - 1).remainder(o.channels) * kValues);
  auto x = embed(ids, offset, o.width, rows, cols);
  if (conditional() && o.aligned_conditioning) x = x + aligned_memory(memory, offset, inputs.size(1));
  if (self_caches) self_caches->resize(decoder->size());
  if (cross_caches) cross_caches->resize(decoder->size());
  nn::AttentionMask causal;
  causal.causal = true;
  for (size_t i = 0; i < decoder->size(); ++i) {
    auto* self_cache = self_caches ? &(*self_caches)[i] : nullptr;
    if (conditional())
      x = decoder[i]->as<DecoderLayer>()->forward(x, memory, nn::AttentionMask{}, self_cache,
                                                  cross_caches ? &(*cross_caches)[i] : nullptr);
    else
      x = decoder[i]->as<EncoderLayer>()->forward(x, causal, self_cache);
  }
  return decoder_norm(x);
}

torch::Tensor ImageTransformerImpl::forward(const torch::Tensor& images, const torch::Tensor& lr) {
  auto memory = conditional() ? encode(lr) : torch::Tensor();
  return output(decode_states(shifted_inputs(images), memory));
}

ImageTransformerStepper::ImageTransformerStepper(ImageTransformer model, const torch::Tensor& lr, bool use_cache)
    : model_(std::move(model)), device_(model_->parameters().front().device()), use_cache_(use_cache) {
  if (model_->conditional()) memory_ = model_->encode(lr.to(device_));
}

torch::Tensor ImageTransformerStepper::step(const torch::Tensor& tokens) {
  auto next = tokens.to(device_).unsqueeze(1);
  if (use_cache_)
    return model_->logits(model_->decode_states(next, memory_, &self_caches_, &cross_caches_).squeeze(1))
        .to(torch::kFloat);
  history_ = history_.defined() ? torch::cat({history_, next}, 1) : next;
  auto all = model_->decode_states(history_, memory_);
  return model_->logits(all.select(1, all.size(1) - 1)).to(torch::kFloat);
}

void ImageTransformerStepper::reorder(const torch::Tensor& index) {
  auto i = index.to(device_);
  for (auto& c : self_caches_) c.reorder(i);
  for (auto& c : cross_caches_) c.reorder(i);
  if (memory_.defined()) memory_ = memory_.index_select(0, i);
  if (history_.defined()) history_ = history_.index_select(0, i);
}

torch::Tensor sample_images(ImageTransformer model, const torch::Tensor& lr, int64_t n, double temperature,
                            uint64_t seed, bool use_cache) {
  TORCH_CHECK(temperature > 0, "sample_images: temperature must be > 0");
  torch::NoGradGuard no_grad;
  model->eval();
  const auto& o = model->options();
  ImageTransformerStepper stepper(model, lr, use_cache);
  auto gen = at::detail::createCPUGenerator(seed);
  auto out = torch::empty({n, o.positions()}, torch::kLong);
  auto tokens = torch::full({n}, model->start_token(), torch::kLong);
  for (int64_t t = 0; t < o.positions(); ++t) {
    auto logits = decode::tempered(stepper.step(tokens).to(torch::kCPU, torch::kFloat), temperature);  // (n, 256)
    tokens = torch::multinomial(logits.softmax(-1), 1, false, gen).squeeze(1);
    out.select(1, t).copy_(tokens);
  }
  return out.view({n, o.height, o.width, o.channels});
}

}  // namespace xformer::models
