#include "xformer/data/image.h"

#include <stb_image.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <memory>

#include "xformer/core/error.h"

namespace fs = std::filesystem;

namespace xformer::data {

Image read_image(const std::string& path, int channels) {
  if (channels < 1 || channels > 4)
    throw DataError("read_image: channels must be 1..4, got " + std::to_string(channels));
  int w = 0, h = 0, in_file = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> data(stbi_load(path.c_str(), &w, &h, &in_file, channels),
                                                 stbi_image_free);
  if (!data) {
    const char* why = stbi_failure_reason();
    throw DataError("cannot read image " + path + ": " + (why ? why : "unknown error"));
  }
  Image image;
  image.height = h, image.width = w, image.channels = channels;
  image.pixels.assign(data.get(), data.get() + static_cast<size_t>(w) * h * channels);
  return image;
}

void write_png(const std::string& path, const Image& image) {
  if (image.height <= 0 || image.width <= 0 || image.channels < 1 || image.channels > 4 ||
      image.pixels.size() != static_cast<size_t>(image.height * image.width * image.channels))
    throw DataError("cannot write " + path + ": inconsistent image " + std::to_string(image.height) +
                    "x" + std::to_string(image.width) + "x" + std::to_string(image.channels));
  const std::string tmp = path + ".tmp";
  const int ok = stbi_write_png(tmp.c_str(), static_cast<int>(image.width), static_cast<int>(image.height),
                                static_cast<int>(image.channels), image.pixels.data(),
                                static_cast<int>(image.width * image.channels));
  std::error_code ec;
  if (!ok) {
    fs::remove(tmp, ec);
    throw DataError("cannot write " + path);
  }
  fs::rename(tmp, path, ec);
  if (ec) throw DataError("cannot write " + path + ": " + ec.message());
}

std::vector<std::string> list_image_files(const std::string& folder) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw DataError("image folder " + folder + " does not exist");
  static const std::vector<std::string> kExtensions = {".png", ".jpg", ".jpeg", ".bmp", ".tga",
                                                       ".gif", ".ppm", ".pgm"};
  std::vector<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(folder)) {
    if (!e.is_regular_file()) continue;
    std::string ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (std::find(kExtensions.begin(), kExtensions.end(), ext) != kExtensions.end())
      files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace xformer::data
