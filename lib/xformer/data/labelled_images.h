// Labelled image sets for classification, from the formats users have:
//   - an IDX pair [images, labels] (MNIST, Fashion-MNIST: (N, H, W) or (N, H, W, C) bytes),
//   - CIFAR-10 binary batches (a `.bin` file or a wildcard pattern of them),
//   - a folder with one subfolder of images per class (the subfolder's name is the class).
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace xformer::data {

struct LabelledImages {
  torch::Tensor images;              // (N, C, H, W) uint8
  torch::Tensor labels;              // (N) long, indices into classes
  std::vector<std::string> classes;  // names
};

struct ImageSetOptions {
  int64_t size = 0;      // > 0: images resized (bilinear) to size x size; 0: all must share one size
  int64_t channels = 0;  // 1 or 3 (grey <-> RGB converted); 0: as the source has them
  // The class list of the training set: other splits' folder names and label ranges must fit it.
  // Empty: taken from this source.
  std::vector<std::string> classes;
};

// (C, H, W) uint8 -> `channels` channels (1 <-> 3: grey mean or repeated; 0 = as it is) and
// height x width (bilinear; 0 = as it is).
torch::Tensor conform_image(torch::Tensor chw, int64_t channels, int64_t height, int64_t width);

// `source`: one path (folder, CIFAR-10 file or pattern) or two (IDX images and labels).
// DataError naming the file for unreadable, inconsistent or empty sources; unreadable images
// inside a class folder are reported and skipped.
LabelledImages load_labelled_images(const std::vector<std::string>& source, const ImageSetOptions& options);

}  // namespace xformer::data
