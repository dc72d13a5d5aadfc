// Labelled image sets: IDX files (plain and gzipped) round-trip and reject bad headers and sizes by name; MNIST
// IDX pairs, CIFAR-10 batches and class folders load with the right labels, channels and sizes;
// other splits must fit the training set's classes.
#include "test_support.h"

#include <cstdlib>
#include <fstream>

#include "xformer/core/error.h"
#include "xformer/data/idx.h"
#include "xformer/data/image.h"
#include "xformer/data/labelled_images.h"

using namespace xformer::data;
using xformer::testing::source_path;
using xformer::testing::TempDir;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const xformer::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("IDX files: write then read, bad files named", "[data][classification]") {
  TempDir tmp("idx");
  IdxArray a;
  a.dims = {2, 3, 4};
  for (int i = 0; i < 24; ++i) a.values.push_back(static_cast<uint8_t>(i * 10));
  write_idx(tmp.str("a.idx"), a);
  auto back = read_idx(tmp.str("a.idx"));
  CHECK(back.dims == a.dims);
  CHECK(back.values == a.values);
  // Header: 00 00 08 03, then the dimensions big-endian.
  std::ifstream in(tmp.str("a.idx"), std::ios::binary);
  std::vector<char> head(8);
  in.read(head.data(), 8);
  CHECK(head == std::vector<char>{0, 0, 8, 3, 0, 0, 0, 2});

  // Gzipped, as MNIST and Fashion-MNIST are distributed.
  REQUIRE(std::system(("gzip -k '" + tmp.str("a.idx") + "'").c_str()) == 0);
  const auto why = error_of([&] { CHECK(read_idx(tmp.str("a.idx.gz")).values == a.values); });
  if (why.find("no zlib") != std::string::npos) WARN("built without zlib: gzip not checked");
  else CHECK(why.empty());
  std::ofstream(tmp.str("broken.idx.gz"), std::ios::binary) << "\x1f\x8b\x08\x00garbage";
  if (why.empty()) CHECK(!error_of([&] { read_idx(tmp.str("broken.idx.gz")); }).empty());

  std::ofstream(tmp.str("short.idx"), std::ios::binary).write("\0\0\x08\x01\0\0\0\x05\x01\x02", 10);
  CHECK(error_of([&] { read_idx(tmp.str("short.idx")); }).find("short.idx: 2 bytes of data, the header says 5") !=
        std::string::npos);
  std::ofstream(tmp.str("float.idx"), std::ios::binary).write("\0\0\x0d\x01\0\0\0\x01\0\0\0\0", 12);
  CHECK(error_of([&] { read_idx(tmp.str("float.idx")); }).find("only unsigned bytes") != std::string::npos);
  // Dimensions whose product overflows 64 bits, or a zero size past the first: no wrap-around.
  std::ofstream(tmp.str("huge.idx"), std::ios::binary).write("\0\0\x08\x04\x00\x01\0\0\x00\x01\0\0\x00\x01\0\0\x00\x01\0\0", 20);
  CHECK(error_of([&] { read_idx(tmp.str("huge.idx")); }).find("fewer than the header's dimensions need") != std::string::npos);
  std::ofstream(tmp.str("flat.idx"), std::ios::binary).write("\0\0\x08\x03\0\0\x01\x90\0\0\0\0\0\0\0\0", 16);
  CHECK(error_of([&] { read_idx(tmp.str("flat.idx")); }).find("flat.idx: dimension 1 is 0") != std::string::npos);
  std::ofstream(tmp.str("text.idx")) << "hello";
  CHECK(error_of([&] { read_idx(tmp.str("text.idx")); }).find("text.idx") != std::string::npos);
}

TEST_CASE("Labelled images from MNIST IDX, CIFAR-10 and class folders", "[data][classification]") {
  const std::string dir = source_path("tests/data/classification/");
  auto mnist = load_labelled_images({dir + "train-images-idx3-ubyte", dir + "train-labels-idx1-ubyte"}, {});
  REQUIRE(mnist.images.sizes() == torch::IntArrayRef({400, 1, 14, 14}));
  CHECK(mnist.classes.size() == 10);
  CHECK(mnist.labels.sizes() == torch::IntArrayRef({400}));
  CHECK(mnist.labels[0].item<int64_t>() == 5);  // MNIST's first training digit is a 5
  CHECK(mnist.images.max().item<int64_t>() > 200);
  ImageSetOptions rgb;
  rgb.channels = 3, rgb.size = 20;
  auto resized = load_labelled_images({dir + "valid-images-idx3-ubyte", dir + "valid-labels-idx1-ubyte"}, rgb);
  CHECK(resized.images.sizes() == torch::IntArrayRef({100, 3, 20, 20}));
  CHECK(torch::equal(resized.images[0][0], resized.images[0][2]));
  // Labels and images that disagree in count.
  CHECK(error_of([&] {
          load_labelled_images({dir + "train-images-idx3-ubyte", dir + "valid-labels-idx1-ubyte"}, {});
        }).find("100 labels for 400 images") != std::string::npos);

  TempDir tmp("labelled");
  // (N, H, W, C) with C other than 1 or 3; no images at all; labels of another shape.
  IdxArray two_channels;
  two_channels.dims = {2, 4, 4, 2};
  two_channels.values.assign(64, 7);
  write_idx(tmp.str("c2.idx"), two_channels);
  IdxArray labels;
  labels.dims = {2};
  labels.values = {0, 1};
  write_idx(tmp.str("l2.idx"), labels);
  CHECK(error_of([&] { load_labelled_images({tmp.str("c2.idx"), tmp.str("l2.idx")}, {}); })
            .find("c2.idx: 2 channels, 1 (grey) or 3 (RGB) expected") != std::string::npos);
  IdxArray none;
  none.dims = {0, 4, 4};
  write_idx(tmp.str("none.idx"), none);
  IdxArray no_labels;
  no_labels.dims = {0};
  write_idx(tmp.str("nolabels.idx"), no_labels);
  CHECK(error_of([&] { load_labelled_images({tmp.str("none.idx"), tmp.str("nolabels.idx")}, {}); })
            .find("none.idx: no images") != std::string::npos);
  IdxArray grid_labels;
  grid_labels.dims = {2, 1};
  grid_labels.values = {0, 1};
  write_idx(tmp.str("l21.idx"), grid_labels);
  CHECK(error_of([&] { load_labelled_images({tmp.str("c2.idx"), tmp.str("l21.idx")}, {}); })
            .find("l21.idx: one dimension (N) expected, it has 2") != std::string::npos);

  // A CIFAR-10 record whose label is not one of the 10 classes: named by file and record.
  xformer::testing::write_cifar10_batch(tmp.str("bad_label.bin"), 3);
  {
    std::fstream f(tmp.str("bad_label.bin"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(2 * (1 + 3 * 32 * 32));  // the third record's label byte
    f.put(static_cast<char>(200));
  }
  CHECK(error_of([&] { load_labelled_images({tmp.str("bad_label.bin")}, {}); })
            .find("bad_label.bin: record 2 has label 200, 0..9 expected") != std::string::npos);

  xformer::testing::write_cifar10_batch(tmp.str("data_batch_1.bin"), 3);
  auto cifar = load_labelled_images({tmp.str("data_batch_*.bin")}, {});
  REQUIRE(cifar.images.sizes() == torch::IntArrayRef({3, 3, 32, 32}));
  CHECK(cifar.labels[0].item<int64_t>() == 7);
  CHECK(cifar.classes[7] == "horse");
  CHECK(cifar.images[1][2][0][5].item<int64_t>() == (1 * 50 + 2 * 80 + 5) % 256);

  // Class folders: two classes of 4x4 pictures, one unreadable file skipped.
  for (const char* c : {"cats", "dogs"}) std::filesystem::create_directories(tmp.str(std::string("train/") + c));
  Image im;
  im.height = im.width = 4, im.channels = 3, im.pixels.assign(48, 100);
  write_png(tmp.str("train/cats/a.png"), im);
  write_png(tmp.str("train/dogs/b.png"), im);
  write_png(tmp.str("train/dogs/c.png"), im);
  std::ofstream(tmp.str("train/dogs/broken.png")) << "no";
  auto folders = load_labelled_images({tmp.str("train")}, {});
  CHECK(folders.classes == std::vector<std::string>{"cats", "dogs"});
  CHECK(folders.images.sizes() == torch::IntArrayRef({3, 3, 4, 4}));
  CHECK(folders.labels.equal(torch::tensor({0, 1, 1}, torch::kLong)));
  // A validation folder with a class the training set lacks; one with another image size.
  std::filesystem::create_directories(tmp.str("valid/birds"));
  write_png(tmp.str("valid/birds/d.png"), im);
  ImageSetOptions known;
  known.classes = folders.classes;
  CHECK(error_of([&] { load_labelled_images({tmp.str("valid")}, known); }).find("'birds' is not in the training set") !=
        std::string::npos);
  im.height = 5, im.pixels.assign(60, 10);
  write_png(tmp.str("train/cats/big.png"), im);
  CHECK(error_of([&] { load_labelled_images({tmp.str("train")}, {}); }).find("set task.size") != std::string::npos);
  ImageSetOptions sized;
  sized.size = 6;
  CHECK(load_labelled_images({tmp.str("train")}, sized).images.sizes() == torch::IntArrayRef({4, 3, 6, 6}));
}
