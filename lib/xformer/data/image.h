// Image files as 8-bit pixels: PNG, JPEG, BMP, TGA, ... read and PNG written with stb_image;
// CIFAR-10's binary batches read directly.
// No LibTorch here; data/image_ops.h converts to tensors and resamples.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace xformer::data {

struct Image {
  int64_t height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;  // (H, W, C), row-major, interleaved channels
  int64_t label = -1;           // class index where the source gives one (CIFAR-10), else -1

  uint8_t& at(int64_t y, int64_t x, int64_t c) { return pixels[(y * width + x) * channels + c]; }
  uint8_t at(int64_t y, int64_t x, int64_t c) const { return pixels[(y * width + x) * channels + c]; }
};

// Reads `path` converted to `channels` (1 grey, 3 RGB, 4 RGBA). DataError naming the file and
// the reason when it cannot be read or decoded.
Image read_image(const std::string& path, int channels = 3);

// Writes a PNG atomically (temporary file + rename). DataError on failure.
void write_png(const std::string& path, const Image& image);

// A CIFAR-10 binary batch (`data_batch_1.bin`, ...): records of one label byte and the 32x32
// red, green and blue planes -> 32x32x3 images with their labels. DataError naming the file when
// its size is not a whole number of records.
std::vector<Image> read_cifar10(const std::string& path);

// One image file, or every image of a CIFAR-10 batch (`.bin`), as `channels` channels
// (CIFAR-10: 3 only).
std::vector<Image> read_images(const std::string& path, int channels = 3);

// The image files (by extension: png, jpg, jpeg, bmp, tga, gif, ppm, pgm, and bin for CIFAR-10
// batches) that `source` names, sorted: a folder (searched recursively), one file, or a pattern
// with shell wildcards in its last component (`cifar-10-batches-bin/data_batch_[1-4].bin`).
// DataError when the folder or file does not exist.
std::vector<std::string> list_image_files(const std::string& source);

// An image `sample --input` names, with where it came from: its file, or "FILE[i]" for record i
// of a CIFAR-10 batch.
struct NamedImage {
  std::string name;
  Image image;
};

// The images of `sample --input`: one file (DataError when it cannot be read), or a folder (or a
// pattern) whose unreadable files are skipped with a warning naming each; DataError when none
// is left.
std::vector<NamedImage> read_input_images(const std::string& input, int channels = 3);

}  // namespace xformer::data
