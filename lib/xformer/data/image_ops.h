// Images as tensors: (C, H, W) float in [0, 255] <-> data::Image, area downsampling (how the
// low-resolution inputs of super-resolution are made) and bicubic upsampling (its baseline).
#pragma once
#include <torch/torch.h>

#include "xformer/data/image.h"

namespace xformer::data {

torch::Tensor to_tensor(const Image& image);  // (C, H, W) float
Image to_image(const torch::Tensor& chw);      // rounded and clamped to 0..255

// (C, H, W) -> (C, H / f, W / f), or batched (B, C, H, W) -> (B, C, H / f, W / f): the mean of
// each f x f block. H and W must be multiples of f.
torch::Tensor area_downsample(const torch::Tensor& chw, int64_t factor);

// (C, h, w) -> (C, h * f, w * f): bicubic interpolation (a = -0.75, pixel centres aligned as in
// most image libraries), clamped to [0, 255].
torch::Tensor bicubic_upsample(const torch::Tensor& chw, int64_t factor);

}  // namespace xformer::data
