#include "xformer/data/image_ops.h"

#include "xformer/core/error.h"

namespace xformer::data {

namespace F = torch::nn::functional;

torch::Tensor to_tensor(const Image& image) {
  auto hwc = torch::from_blob(const_cast<uint8_t*>(image.pixels.data()),
                              {image.height, image.width, image.channels}, torch::kUInt8);
  return hwc.permute({2, 0, 1}).to(torch::kFloat).contiguous();
}

Image to_image(const torch::Tensor& chw) {
  TORCH_CHECK(chw.dim() == 3, "to_image: (C, H, W) expected, got ", chw.sizes());
  auto hwc = chw.detach().to(torch::kCPU, torch::kFloat).round().clamp(0, 255).to(torch::kUInt8)
                 .permute({1, 2, 0}).contiguous();
  Image image;
  image.channels = chw.size(0), image.height = chw.size(1), image.width = chw.size(2);
  image.pixels.assign(hwc.data_ptr<uint8_t>(), hwc.data_ptr<uint8_t>() + hwc.numel());
  return image;
}

torch::Tensor area_downsample(const torch::Tensor& chw, int64_t factor) {
  TORCH_CHECK((chw.dim() == 3 || chw.dim() == 4) && factor >= 1,
              "area_downsample: (C, H, W) or (B, C, H, W) and factor >= 1 expected");
  const int64_t H = chw.size(-2), W = chw.size(-1);
  if (H % factor != 0 || W % factor != 0)
    throw DataError("area_downsample: " + std::to_string(H) + "x" + std::to_string(W) +
                    " is not a multiple of the factor " + std::to_string(factor));
  auto batched = chw.dim() == 4 ? chw : chw.unsqueeze(0);
  auto out = F::avg_pool2d(batched.to(torch::kFloat), F::AvgPool2dFuncOptions(factor).stride(factor));
  return chw.dim() == 4 ? out : out.squeeze(0);
}

torch::Tensor bicubic_upsample(const torch::Tensor& chw, int64_t factor) {
  TORCH_CHECK(chw.dim() == 3 && factor >= 1, "bicubic_upsample: (C, H, W) and factor >= 1 expected");
  auto up = F::interpolate(chw.unsqueeze(0).to(torch::kFloat),
                           F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{chw.size(1) * factor, chw.size(2) * factor})
                               .mode(torch::kBicubic)
                               .align_corners(false));
  return up.squeeze(0).clamp(0, 255);
}

}  // namespace xformer::data
