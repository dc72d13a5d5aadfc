// Image files as 8-bit pixels: PNG, JPEG, BMP, TGA, ... read and PNG written with stb_image.
// No LibTorch here; data/image_ops.h converts to tensors and resamples.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace xformer::data {

struct Image {
  int64_t height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;  // (H, W, C), row-major, interleaved channels

  uint8_t& at(int64_t y, int64_t x, int64_t c) { return pixels[(y * width + x) * channels + c]; }
  uint8_t at(int64_t y, int64_t x, int64_t c) const { return pixels[(y * width + x) * channels + c]; }
};

// Reads `path` converted to `channels` (1 grey, 3 RGB, 4 RGBA). DataError naming the file and
// the reason when it cannot be read or decoded.
Image read_image(const std::string& path, int channels = 3);

// Writes a PNG atomically (temporary file + rename). DataError on failure.
void write_png(const std::string& path, const Image& image);

// The image files (by extension: png, jpg, jpeg, bmp, tga, gif, ppm, pgm) under `folder`,
// recursively, sorted. DataError when the folder does not exist.
std::vector<std::string> list_image_files(const std::string& folder);

}  // namespace xformer::data
