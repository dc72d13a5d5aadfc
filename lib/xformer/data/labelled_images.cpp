#include "xformer/data/labelled_images.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>

#include "xformer/core/error.h"
#include "xformer/data/idx.h"
#include "xformer/data/image.h"
#include "xformer/data/image_ops.h"

namespace fs = std::filesystem;

namespace xformer::data {

namespace {

const std::vector<std::string> kCifar10Classes = {"airplane", "automobile", "bird", "cat", "deer",
                                                  "dog", "frog", "horse", "ship", "truck"};

std::vector<std::string> numbered_classes(int64_t n) {
  std::vector<std::string> names;
  for (int64_t i = 0; i < n; ++i) names.push_back(std::to_string(i));
  return names;
}

torch::Tensor conform(const torch::Tensor& chw, const ImageSetOptions& o) {
  return conform_image(chw, o.channels, o.size, o.size);
}

LabelledImages from_idx(const std::string& images_path, const std::string& labels_path, const ImageSetOptions& o) {
  const auto images = read_idx(images_path), labels = read_idx(labels_path);
  if (images.dims.size() != 3 && images.dims.size() != 4)
    throw DataError("IDX images " + images_path + ": (N, H, W) or (N, H, W, C) expected");
  if (labels.dims.size() != 1)
    throw DataError("IDX labels " + labels_path + ": one dimension (N) expected, it has " + std::to_string(labels.dims.size()));
  if (labels.dims[0] != images.dims[0])
    throw DataError("IDX labels " + labels_path + ": " + std::to_string(labels.dims[0]) + " labels for " +
                    std::to_string(images.dims[0]) + " images in " + images_path);
  const int64_t N = images.dims[0], H = images.dims[1], W = images.dims[2], C = images.dims.size() == 4 ? images.dims[3] : 1;
  if (C != 1 && C != 3)
    throw DataError("IDX images " + images_path + ": " + std::to_string(C) + " channels, 1 (grey) or 3 (RGB) expected");
  auto pixels = torch::from_blob(const_cast<uint8_t*>(images.values.data()), {N, H, W, C}, torch::kUInt8)
                    .permute({0, 3, 1, 2});
  LabelledImages out;
  out.labels = torch::from_blob(const_cast<uint8_t*>(labels.values.data()), {N}, torch::kUInt8).to(torch::kLong);
  const int64_t max_label = N > 0 ? out.labels.max().item<int64_t>() : -1;
  out.classes = o.classes.empty() ? numbered_classes(max_label + 1) : o.classes;
  if (max_label >= static_cast<int64_t>(out.classes.size()))
    throw DataError("IDX labels " + labels_path + ": label " + std::to_string(max_label) + " but " +
                    std::to_string(out.classes.size()) + " classes");
  if ((o.channels <= 0 || o.channels == C) && (o.size <= 0 || (H == o.size && W == o.size))) {
    out.images = torch::empty({N, C, H, W}, torch::kUInt8).copy_(pixels);  // owns a copy: `images` dies here
  } else {
    std::vector<torch::Tensor> each;
    for (int64_t i = 0; i < N; ++i) each.push_back(conform(pixels[i], o));
    out.images = torch::stack(each);
  }
  return out;
}

LabelledImages from_cifar10(const std::string& spec, const ImageSetOptions& o) {
  LabelledImages out;
  out.classes = o.classes.empty() ? kCifar10Classes : o.classes;
  if (out.classes.size() < kCifar10Classes.size())
    throw DataError(spec + ": CIFAR-10 has 10 classes, the training set " + std::to_string(out.classes.size()));
  std::vector<torch::Tensor> images;
  std::vector<int64_t> labels;
  for (const auto& file : list_image_files(spec)) {
    const auto records = read_cifar10(file);
    for (size_t r = 0; r < records.size(); ++r) {
      if (records[r].label >= static_cast<int64_t>(kCifar10Classes.size()))
        throw DataError("CIFAR-10 batch " + file + ": record " + std::to_string(r) + " has label " +
                        std::to_string(records[r].label) + ", 0..9 expected");
      images.push_back(conform(to_tensor(records[r]).to(torch::kUInt8), o));
      labels.push_back(records[r].label);
    }
  }
  if (images.empty()) throw DataError("no CIFAR-10 batches match " + spec);
  out.images = torch::stack(images);
  out.labels = torch::tensor(labels, torch::kLong);
  return out;
}

LabelledImages from_folders(const std::string& root, const ImageSetOptions& o) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) throw DataError("image folder " + root + " does not exist");
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory()) found.push_back(e.path().filename().string());
  std::sort(found.begin(), found.end());
  LabelledImages out;
  out.classes = o.classes.empty() ? found : o.classes;
  std::vector<torch::Tensor> images;
  std::vector<int64_t> labels;
  int64_t skipped = 0;
  for (const auto& name : found) {
    const auto it = std::find(out.classes.begin(), out.classes.end(), name);
    if (it == out.classes.end()) throw DataError(root + "/" + name + ": class '" + name + "' is not in the training set");
    for (const auto& file : list_image_files((fs::path(root) / name).string())) {
      torch::Tensor t;
      try {
        t = conform(to_tensor(read_image(file, 3)).to(torch::kUInt8), o);
      } catch (const Error& e) {
        spdlog::warn("skipping {}", e.what());
        ++skipped;
        continue;
      }
      if (!images.empty() && t.sizes() != images.front().sizes())
        throw DataError(file + ": " + std::to_string(t.size(1)) + "x" + std::to_string(t.size(2)) +
                        " differs from the other images; set task.size to resize them");
      images.push_back(t);
      labels.push_back(it - out.classes.begin());
    }
  }
  if (images.empty()) throw DataError("image folder " + root + ": no readable images in class subfolders");
  if (skipped) spdlog::warn("{}: {} unreadable images skipped", root, skipped);
  out.images = torch::stack(images);
  out.labels = torch::tensor(labels, torch::kLong);
  return out;
}

}  // namespace

torch::Tensor conform_image(torch::Tensor chw, int64_t channels, int64_t height, int64_t width) {
  if (channels == 3 && chw.size(0) == 1) chw = chw.expand({3, -1, -1});
  if (channels == 1 && chw.size(0) == 3) chw = chw.to(torch::kFloat).mean(0, true).round().to(torch::kUInt8);
  if (height > 0 && width > 0 && (chw.size(1) != height || chw.size(2) != width)) {
    auto resized = torch::nn::functional::interpolate(
        chw.unsqueeze(0).to(torch::kFloat), torch::nn::functional::InterpolateFuncOptions()
                                                .size(std::vector<int64_t>{height, width})
                                                .mode(torch::kBilinear)
                                                .align_corners(false));
    chw = resized.squeeze(0).round().clamp(0, 255).to(torch::kUInt8);
  }
  return chw.contiguous();
}

LabelledImages load_labelled_images(const std::vector<std::string>& source, const ImageSetOptions& o) {
  if (o.channels != 0 && o.channels != 1 && o.channels != 3)
    throw DataError("image channels must be 1 or 3, got " + std::to_string(o.channels));
  if (source.size() != 1 && source.size() != 2) throw DataError("an image set is one path or an [images, labels] IDX pair");
  std::string ext = fs::path(source[0]).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  auto set = source.size() == 2 ? from_idx(source[0], source[1], o)
             : ext == ".bin"    ? from_cifar10(source[0], o)
                                : from_folders(source[0], o);
  if (set.images.size(0) == 0) throw DataError(source[0] + ": no images");
  return set;
}

}  // namespace xformer::data
