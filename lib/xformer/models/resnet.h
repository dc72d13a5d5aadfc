// Bottleneck ResNets (He et al. 2016) whose spatial layers are 3x3 convolutions or stand-alone
// self-attention (Ramachandran et al. 2019): the convolutional baseline, the attention body
// with a convolutional stem, and the full attention network.
//
// Stem: conv = 7x7/2 convolution, BN, ReLU, 3x3/2 max pooling (images / 4); attention = a SASA
// layer with spatially aware values (4x4 neighbourhood, 4 value mixtures) pooled 2x2, BN, ReLU,
// 3x3/2 max pooling. With small_images (MNIST, CIFAR) the stem keeps the resolution: a 3x3
// convolution or the attention layer, BN, ReLU. Stage s (0..3) has blocks[s] bottlenecks of width
// width * 2^s (outputs 4x that); stages 1..3 halve the resolution in their first block (strided
// 3x3 convolution, or 2x2 average pooling after the attention).
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "xformer/nn/sasa.h"

namespace xformer::models {

struct ResNetOptions {
  std::vector<int64_t> blocks{1, 2, 4, 1};  // ResNet-26; 38: {2, 3, 5, 2}; 50: {3, 4, 6, 3}
  int64_t width = 64;
  std::string spatial = "conv";  // conv | attention
  std::string stem = "conv";     // conv | attention
  bool small_images = false;
  int64_t in_channels = 3, classes = 1000;
  int64_t heads = 8, kernel = 7;  // attention layers
  int64_t stem_width = 64, stem_kernel = 4, stem_mixtures = 4;
};

// Bottleneck blocks per stage for depth 26, 38 or 50; throws std::invalid_argument otherwise.
std::vector<int64_t> resnet_blocks(int64_t depth);

// 1x1 (width), spatial (width, stride), 1x1 (4 width), each with BN; the last BN starts at zero
// so that each block starts as the identity; a projection shortcut where the shape changes.
class BottleneckImpl : public torch::nn::Module {
 public:
  BottleneckImpl(int64_t in, int64_t width, int64_t stride, const ResNetOptions& o);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d reduce{nullptr}, expand{nullptr}, shortcut{nullptr};
  torch::nn::Conv2d spatial_conv{nullptr};
  nn::SelfAttention2d spatial_attention{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr}, shortcut_bn{nullptr};
};
TORCH_MODULE(Bottleneck);

struct ModelStats {
  int64_t parameters = 0;
  double flops = 0;  // per image, 2 per multiply-add, of convolutions, attention and linear layers
};

class ResNetImpl : public torch::nn::Module {
 public:
  explicit ResNetImpl(const ResNetOptions& o);
  // Images (B, in_channels, H, W) -> the four stages' outputs (C2 .. C5), each (B, 4 width 2^s, ...).
  std::vector<torch::Tensor> features(const torch::Tensor& images);
  // Images -> class logits (B, classes): global average pooling of C5 and a linear layer.
  torch::Tensor forward(const torch::Tensor& images);
  // Parameters and the FLOPs of one H x W image, counted from the architecture.
  ModelStats stats(int64_t height, int64_t width) const;
  const ResNetOptions& options() const { return options_; }
  int64_t feature_channels(int64_t stage) const { return 4 * options_.width << stage; }

 private:
  ResNetOptions options_;
  torch::nn::Conv2d stem_conv{nullptr};
  nn::SelfAttention2d stem_attention{nullptr};
  torch::nn::BatchNorm2d stem_bn{nullptr};
  torch::nn::ModuleList stages{nullptr};
  torch::nn::Linear classifier{nullptr};
};
TORCH_MODULE(ResNet);

}  // namespace xformer::models
