#include "xformer/models/resnet.h"

#include <stdexcept>

namespace xformer::models {

namespace F = torch::nn::functional;

namespace {

torch::nn::Conv2d conv_before_batch_norm(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1) {
  torch::nn::Conv2d c(torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
  torch::nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
  return c;
}

torch::nn::BatchNorm2d batch_norm(int64_t channels) { return torch::nn::BatchNorm2d(channels); }

nn::SelfAttention2dOptions attention_options(int64_t in, int64_t out, int64_t heads, int64_t kernel, int64_t stride,
                                             int64_t mixtures) {
  nn::SelfAttention2dOptions a;
  a.in_channels = in, a.out_channels = out, a.heads = heads, a.kernel = kernel, a.stride = stride;
  a.value_mixtures = mixtures;
  return a;
}

int64_t halve(int64_t n) { return (n + 1) / 2; }  // a stride-2 layer's output size (padding k / 2)

// FLOPs of a convolution producing an out_h x out_w map.
double conv_flops(int64_t in, int64_t out, int64_t kernel, int64_t out_h, int64_t out_w) {
  return 2.0 * in * out * kernel * kernel * out_h * out_w;
}

// FLOPs of a SASA layer on an h x w map: the query, key and (M) value projections, the K^2
// content logits, the 2K relative logits (dk / 2 channels each), the weighted sum, and the
// spatially aware values' mixing.
double attention_flops(int64_t in, int64_t out, int64_t K, int64_t mixtures, int64_t h, int64_t w) {
  const double projections = static_cast<double>(in) * out * (2 + std::max<int64_t>(1, mixtures));
  const double attention = static_cast<double>(out) * (2 * K * K + K) + (mixtures > 0 ? K * K * mixtures * out : 0);
  return 2.0 * h * w * (projections + attention);
}

}  // namespace

std::vector<int64_t> resnet_blocks(int64_t depth) {
  if (depth == 26) return {1, 2, 4, 1};
  if (depth == 38) return {2, 3, 5, 2};
  if (depth == 50) return {3, 4, 6, 3};
  throw std::invalid_argument("ResNet depth must be 26, 38 or 50, got " + std::to_string(depth));
}

BottleneckImpl::BottleneckImpl(int64_t in, int64_t width, int64_t stride, const ResNetOptions& o) {
  reduce = register_module("reduce", conv_before_batch_norm(in, width, 1));
  bn1 = register_module("bn1", batch_norm(width));
  if (o.spatial == "attention")
    spatial_attention = register_module(
        "spatial", nn::SelfAttention2d(attention_options(width, width, o.heads, o.kernel, stride, 0)));
  else
    spatial_conv = register_module("spatial", conv_before_batch_norm(width, width, 3, stride));
  bn2 = register_module("bn2", batch_norm(width));
  expand = register_module("expand", conv_before_batch_norm(width, 4 * width, 1));
  bn3 = register_module("bn3", batch_norm(4 * width));
  torch::nn::init::zeros_(bn3->weight);
  if (stride > 1 || in != 4 * width) {
    shortcut = register_module("shortcut", conv_before_batch_norm(in, 4 * width, 1, stride));
    shortcut_bn = register_module("shortcut_bn", batch_norm(4 * width));
  }
}

torch::Tensor BottleneckImpl::forward(const torch::Tensor& x) {
  auto h = torch::relu(bn1(reduce(x)));
  h = torch::relu(bn2(spatial_conv ? spatial_conv(h) : spatial_attention(h)));
  h = bn3(expand(h));
  return torch::relu(h + (shortcut ? shortcut_bn(shortcut(x)) : x));
}

ResNetImpl::ResNetImpl(const ResNetOptions& o) : options_(o) {
  if (o.spatial != "conv" && o.spatial != "attention")
    throw std::invalid_argument("ResNet spatial layers must be conv or attention, got " + o.spatial);
  if (o.stem != "conv" && o.stem != "attention")
    throw std::invalid_argument("ResNet stem must be conv or attention, got " + o.stem);
  if (o.blocks.size() != 4 || o.width < 1 || o.classes < 1 || o.in_channels < 1)
    throw std::invalid_argument("ResNet: four stages, positive width, classes and input channels expected");
  for (auto b : o.blocks)
    if (b < 1) throw std::invalid_argument("ResNet: every stage needs at least one block");
  if (o.stem == "conv") {
    stem_conv = register_module("stem", conv_before_batch_norm(o.in_channels, o.stem_width, o.small_images ? 3 : 7,
                                             o.small_images ? 1 : 2));
  } else {
    stem_attention = register_module(
        "stem", nn::SelfAttention2d(attention_options(o.in_channels, o.stem_width, o.heads, o.stem_kernel,
                                                      o.small_images ? 1 : 2, o.stem_mixtures)));
  }
  stem_bn = register_module("stem_bn", batch_norm(o.stem_width));
  stages = register_module("stages", torch::nn::ModuleList());
  int64_t in = o.stem_width;
  for (size_t s = 0; s < 4; ++s) {
    torch::nn::Sequential stage;
    const int64_t width = o.width << s;
    for (int64_t b = 0; b < o.blocks[s]; ++b) {
      stage->push_back(Bottleneck(in, width, s > 0 && b == 0 ? 2 : 1, o));
      in = 4 * width;
    }
    stages->push_back(stage);
  }
  classifier = register_module("classifier", torch::nn::Linear(in, o.classes));
}

std::vector<torch::Tensor> ResNetImpl::features(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == options_.in_channels, "ResNet: images (B, ",
              options_.in_channels, ", H, W) expected, got ", images.sizes());
  auto x = torch::relu(stem_bn(stem_conv ? stem_conv(images) : stem_attention(images)));
  if (!options_.small_images) x = F::max_pool2d(x, F::MaxPool2dFuncOptions(3).stride(2).padding(1));
  std::vector<torch::Tensor> out;
  for (auto& stage : *stages) {
    x = stage->as<torch::nn::Sequential>()->forward(x);
    out.push_back(x);
  }
  return out;
}

torch::Tensor ResNetImpl::forward(const torch::Tensor& images) {
  return classifier(features(images).back().mean({2, 3}));
}

ModelStats ResNetImpl::stats(int64_t h, int64_t w) const {
  const auto& o = options_;
  ModelStats s;
  for (const auto& p : parameters()) s.parameters += p.numel();
  if (o.stem == "conv") {
    if (!o.small_images) h = halve(h), w = halve(w);
    s.flops += conv_flops(o.in_channels, o.stem_width, o.small_images ? 3 : 7, h, w);
  } else {
    s.flops += attention_flops(o.in_channels, o.stem_width, o.stem_kernel, o.stem_mixtures, h, w);
    if (!o.small_images) h = halve(h), w = halve(w);
  }
  if (!o.small_images) h = halve(h), w = halve(w);  // max pooling
  int64_t in = o.stem_width;
  for (size_t stage = 0; stage < 4; ++stage) {
    const int64_t width = o.width << stage;
    for (int64_t b = 0; b < o.blocks[stage]; ++b) {
      const bool strided = stage > 0 && b == 0;
      const int64_t oh = strided ? halve(h) : h, ow = strided ? halve(w) : w;
      s.flops += conv_flops(in, width, 1, h, w);
      s.flops += o.spatial == "conv" ? conv_flops(width, width, 3, oh, ow)
                                     : attention_flops(width, width, o.kernel, 0, h, w);
      s.flops += conv_flops(width, 4 * width, 1, oh, ow);
      if (strided || in != 4 * width) s.flops += conv_flops(in, 4 * width, 1, oh, ow);
      h = oh, w = ow, in = 4 * width;
    }
  }
  s.flops += 2.0 * in * o.classes;
  return s;
}

}  // namespace xformer::models
