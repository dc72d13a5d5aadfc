#include "xformer/data/image.h"

#include <stb_image.h>
#include <stb_image_write.h>

#include <fnmatch.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>

#include <spdlog/spdlog.h>

#include "xformer/core/atomic_file.h"
#include "xformer/core/error.h"

namespace fs = std::filesystem;

namespace xformer::data {
namespace {

// stb_image's terse reasons, in words where they are cryptic ("outofdata").
// The format a file's first bytes announce ("" when none we know): stb_image tries every decoder
// in turn, so its last reason may come from another format than the file's.
std::string announced_format(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char b[8] = {0};
  in.read(reinterpret_cast<char*>(b), sizeof(b));
  const auto n = in.gcount();
  if (n >= 8 && b[0] == 0x89 && b[1] == 'P' && b[2] == 'N' && b[3] == 'G') return "PNG";
  if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return "JPEG";
  if (n >= 6 && b[0] == 'G' && b[1] == 'I' && b[2] == 'F' && b[3] == '8') return "GIF";
  if (n >= 2 && b[0] == 'B' && b[1] == 'M') return "BMP";
  return "";
}

std::string explain_stb_failure(const char* why, const std::string& path) {
  std::string code = why && *why ? why : "no reason given";
  // Some reasons quote bytes of the file (a PNG chunk's type): keep log lines printable.
  for (char& c : code)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  if (code == "outofdata" || code == "read past buffer" || code == "no IDAT" || code == "not enough pixels")
    return "the file ends early, truncated? (" + code + ")";
  if (code == "can't fopen") return "cannot open the file";
  if (code == "outofmem" || code == "too large") return "too large to decode (" + code + ")";
  const std::string format = announced_format(path);
  if (!format.empty()) return "a corrupt or truncated " + format + " file (" + code + ")";
  if (code == "unknown image type") return "not a PNG, JPEG, BMP, GIF, TGA, PSD, HDR or PNM image";
  return "corrupt or unsupported image (" + code + ")";
}

}  // namespace

Image read_image(const std::string& path, int channels) {
  if (channels < 1 || channels > 4)
    throw DataError("read_image: channels must be 1..4, got " + std::to_string(channels));
  int w = 0, h = 0, in_file = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> data(stbi_load(path.c_str(), &w, &h, &in_file, channels),
                                                 stbi_image_free);
  if (!data) throw DataError("cannot read image " + path + ": " + explain_stb_failure(stbi_failure_reason(), path));
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
  const std::string tmp = temp_path_for(path);
  const int ok = stbi_write_png(tmp.c_str(), static_cast<int>(image.width), static_cast<int>(image.height),
                                static_cast<int>(image.channels), image.pixels.data(),
                                static_cast<int>(image.width * image.channels));
  if (!ok) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw DataError("cannot write " + path);
  }
  commit_file(tmp, path);
}

namespace {

std::string lower_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

bool is_image_file(const fs::path& p) {
  static const std::vector<std::string> kExtensions = {".png", ".jpg", ".jpeg", ".bmp", ".tga",
                                                       ".gif", ".ppm", ".pgm", ".bin"};
  return std::find(kExtensions.begin(), kExtensions.end(), lower_extension(p)) != kExtensions.end();
}

}  // namespace

std::vector<Image> read_cifar10(const std::string& path) {
  constexpr int64_t kSide = 32, kPlane = kSide * kSide, kRecord = 1 + 3 * kPlane;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("cannot read CIFAR-10 batch " + path);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto size = static_cast<int64_t>(bytes.size());
  if (size == 0 || size % kRecord != 0)
    throw DataError("CIFAR-10 batch " + path + ": " + std::to_string(size) + " bytes is not a whole number of " +
                    std::to_string(kRecord) + "-byte records (label + 32x32x3)");
  std::vector<Image> images(size / kRecord);
  for (size_t i = 0; i < images.size(); ++i) {
    const uint8_t* record = bytes.data() + i * kRecord;
    auto& im = images[i];
    im.height = im.width = kSide, im.channels = 3, im.label = record[0];
    im.pixels.resize(3 * kPlane);
    for (int64_t p = 0; p < kPlane; ++p)
      for (int64_t c = 0; c < 3; ++c) im.pixels[p * 3 + c] = record[1 + c * kPlane + p];
  }
  return images;
}

std::vector<Image> read_images(const std::string& path, int channels) {
  if (lower_extension(path) != ".bin") return {read_image(path, channels)};
  if (channels != 3) throw DataError("CIFAR-10 batch " + path + ": RGB only, asked for " + std::to_string(channels) + " channels");
  return read_cifar10(path);
}

std::vector<std::string> list_image_files(const std::string& source) {
  std::error_code ec;
  const fs::path spec(source);
  const std::string name = spec.filename().string();
  std::vector<std::string> files;
  // A file or folder that exists is taken as named, even when its name holds *, ? or [.
  const bool exists = fs::exists(spec, ec);
  if (!exists && name.find_first_of("*?[") != std::string::npos) {
    const fs::path dir = spec.has_parent_path() ? spec.parent_path() : fs::path(".");
    if (!fs::is_directory(dir, ec)) throw DataError("image folder " + dir.string() + " (of " + source + ") does not exist");
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && fnmatch(name.c_str(), e.path().filename().c_str(), 0) == 0 && is_image_file(e.path()))
        files.push_back(e.path().string());
  } else if (fs::is_regular_file(spec, ec)) {
    files.push_back(source);
  } else if (fs::is_directory(spec, ec)) {
    for (const auto& e : fs::recursive_directory_iterator(spec))
      if (e.is_regular_file() && is_image_file(e.path())) files.push_back(e.path().string());
  } else {
    throw DataError("image folder " + source + " does not exist");
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<NamedImage> read_input_images(const std::string& input, int channels) {
  const auto files = list_image_files(input);
  const bool one_file = fs::is_regular_file(input);
  std::vector<NamedImage> out;
  int64_t skipped = 0;
  for (const auto& f : files) {
    std::vector<Image> images;
    try {
      images = read_images(f, channels);
    } catch (const Error& e) {
      if (one_file) throw;
      spdlog::warn("--input: skipping {}", e.what());
      ++skipped;
      continue;
    }
    const bool batch = lower_extension(f) == ".bin";
    for (size_t i = 0; i < images.size(); ++i)
      out.push_back({batch ? f + "[" + std::to_string(i) + "]" : f, std::move(images[i])});
  }
  if (out.empty())
    throw DataError("--input " + input + ": no readable image files" +
                    (skipped ? " (" + std::to_string(skipped) + " unreadable)" : ""));
  return out;
}

}  // namespace xformer::data
