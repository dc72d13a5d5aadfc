// Image files and tensors: PNG write -> read gives the pixels back; JPEG and grey files read;
// unreadable files are named in the error; folders, files and wildcard patterns list their
// images; CIFAR-10 batches decode to the planes written; area downsampling and bicubic
// upsampling on hand-checked cases.
#include "test_support.h"

#include <stb_image_write.h>

#include <fstream>

#include "xformer/core/error.h"
#include "xformer/data/image.h"
#include "xformer/data/image_ops.h"

using namespace xformer::data;
using xformer::testing::max_abs_diff;
using xformer::testing::TempDir;

namespace {

Image gradient_image(int64_t h, int64_t w, int64_t c) {
  Image im;
  im.height = h, im.width = w, im.channels = c;
  im.pixels.resize(h * w * c);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t k = 0; k < c; ++k) im.at(y, x, k) = static_cast<uint8_t>((y * 31 + x * 7 + k * 80) % 256);
  return im;
}

}  // namespace

TEST_CASE("PNG write then read gives the pixels back", "[data][image]") {
  TempDir tmp("image_png");
  for (int64_t c : {1, 3, 4}) {
    auto im = gradient_image(5, 7, c);
    const auto path = tmp.str("im" + std::to_string(c) + ".png");
    write_png(path, im);
    auto back = read_image(path, static_cast<int>(c));
    CHECK(back.height == 5);
    CHECK(back.width == 7);
    CHECK(back.channels == c);
    CHECK(back.pixels == im.pixels);
  }
  // Grey read as RGB repeats the grey value.
  auto rgb = read_image(tmp.str("im1.png"), 3);
  CHECK(rgb.at(2, 3, 0) == rgb.at(2, 3, 2));
  CHECK(rgb.at(2, 3, 1) == gradient_image(5, 7, 1).at(2, 3, 0));
}

TEST_CASE("JPEG files read, close to what was written", "[data][image]") {
  TempDir tmp("image_jpg");
  auto im = gradient_image(16, 16, 3);
  for (auto& p : im.pixels) p = static_cast<uint8_t>(p / 4 + 100);  // smooth enough for JPEG
  const auto path = tmp.str("a.jpg");
  REQUIRE(stbi_write_jpg(path.c_str(), 16, 16, 3, im.pixels.data(), 95) != 0);
  auto back = read_image(path);
  REQUIRE(back.pixels.size() == im.pixels.size());
  CHECK(max_abs_diff(to_tensor(back), to_tensor(im)) < 40);  // lossy, but the same picture
  CHECK((to_tensor(back) - to_tensor(im)).abs().mean().item<double>() < 6);
}

TEST_CASE("unreadable images are reported by name", "[data][image]") {
  TempDir tmp("image_bad");
  std::ofstream(tmp.str("broken.png")) << "not a png";
  // A real PNG cut in the middle of its pixel data.
  write_png(tmp.str("whole.png"), gradient_image(16, 16, 3));
  std::ifstream whole(tmp.str("whole.png"), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(whole)), {});
  std::ofstream(tmp.str("cut.png"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  // Cut right after the header chunk (8-byte signature + 25-byte IHDR), and a JPEG cut short: each
  // is said to be its own format, damaged, whatever decoder stb_image tried last.
  std::ofstream(tmp.str("header_only.png"), std::ios::binary) << bytes.substr(0, 33);
  Image small = gradient_image(16, 16, 3);
  REQUIRE(stbi_write_jpg(tmp.str("whole.jpg").c_str(), 16, 16, 3, small.pixels.data(), 95) != 0);
  std::ifstream whole_jpg(tmp.str("whole.jpg"), std::ios::binary);
  const std::string jpg((std::istreambuf_iterator<char>(whole_jpg)), {});
  std::ofstream(tmp.str("cut.jpg"), std::ios::binary) << jpg.substr(0, 40);
  const std::pair<std::string, std::string> cases[] = {{"broken.png", "not a PNG, JPEG"},
                                                        {"cut.png", "the file ends early"},
                                                        {"header_only.png", "a corrupt or truncated PNG file ("},
                                                        {"cut.jpg", "a corrupt or truncated JPEG file ("},
                                                        {"missing.png", "missing.png"}};
  for (const auto& [name, why] : cases) {
    const std::string message = xformer::testing::thrown_error([&] { read_image(tmp.str(name)); }).what();
    CHECK(message.find(tmp.str(name)) != std::string::npos);
    CHECK(message.find(why) != std::string::npos);
  }
  Image empty;
  CHECK_THROWS_AS(write_png(tmp.str("empty.png"), empty), xformer::Error);
  CHECK_THROWS_AS(list_image_files(tmp.str("nope")), xformer::Error);
}

TEST_CASE("list_image_files finds images recursively, sorted, by extension", "[data][image]") {
  TempDir tmp("image_list");
  std::filesystem::create_directories(tmp.str("sub"));
  for (const char* f : {"b.PNG", "a.jpg", "sub/c.jpeg", "notes.txt"}) std::ofstream(tmp.str(f)) << "x";
  auto files = list_image_files(tmp.str());
  REQUIRE(files.size() == 3);
  CHECK(files[0] == tmp.str("a.jpg"));
  CHECK(files[1] == tmp.str("b.PNG"));
  CHECK(files[2] == tmp.str("sub/c.jpeg"));
  // A folder whose name holds pattern characters is read as named, not matched as a pattern.
  std::filesystem::create_directories(tmp.str("set[1]"));
  std::ofstream(tmp.str("set[1]/d.png")) << "x";
  CHECK(list_image_files(tmp.str("set[1]")) == std::vector<std::string>{tmp.str("set[1]/d.png")});
}

TEST_CASE("CIFAR-10 batches read as labelled 32x32 RGB images; sources by file and pattern", "[data][image]") {
  TempDir tmp("image_cifar");
  using xformer::testing::write_cifar10_batch;
  write_cifar10_batch(tmp.str("data_batch_1.bin"), 3);
  write_cifar10_batch(tmp.str("data_batch_2.bin"), 1);
  write_cifar10_batch(tmp.str("data_batch_3.bin"), 1);
  write_cifar10_batch(tmp.str("test_batch.bin"), 2);
  std::ofstream(tmp.str("test_batch.bin"), std::ios::app | std::ios::binary) << "extra";  // truncated record

  auto images = read_images(tmp.str("data_batch_1.bin"));
  REQUIRE(images.size() == 3);
  for (int r = 0; r < 3; ++r) {
    const auto& im = images[r];
    CHECK(im.label == 7 - r);
    REQUIRE(im.height == 32);
    REQUIRE(im.width == 32);
    REQUIRE(im.channels == 3);
    for (auto [y, x] : {std::pair<int, int>{0, 0}, {5, 17}, {31, 31}})
      for (int c = 0; c < 3; ++c) CHECK(im.at(y, x, c) == (r * 50 + c * 80 + y * 32 + x) % 256);
  }
  try {
    read_images(tmp.str("test_batch.bin"));
    FAIL("truncated batch accepted");
  } catch (const xformer::Error& e) {
    CHECK(std::string(e.what()).find("test_batch.bin") != std::string::npos);
  }
  CHECK_THROWS_AS(read_images(tmp.str("data_batch_1.bin"), 1), xformer::Error);

  CHECK(list_image_files(tmp.str("data_batch_[1-2].bin")) ==
        std::vector<std::string>{tmp.str("data_batch_1.bin"), tmp.str("data_batch_2.bin")});
  CHECK(list_image_files(tmp.str("*_batch*.bin")).size() == 4);
  CHECK(list_image_files(tmp.str("data_batch_3.bin")) == std::vector<std::string>{tmp.str("data_batch_3.bin")});
  CHECK(list_image_files(tmp.str("nothing_*.bin")).empty());
  CHECK_THROWS_AS(list_image_files(tmp.str("missing/*.bin")), xformer::Error);
}

TEST_CASE("tensor conversion, area downsampling and bicubic upsampling", "[data][image]") {
  auto im = gradient_image(4, 6, 3);
  auto t = to_tensor(im);
  REQUIRE(t.sizes() == torch::IntArrayRef({3, 4, 6}));
  CHECK(t[2][1][3].item<float>() == im.at(1, 3, 2));
  CHECK(to_image(t).pixels == im.pixels);

  // 2x2 blocks of a hand-made (1, 2, 4) image.
  auto x = torch::tensor({0.f, 2.f, 10.f, 20.f, 4.f, 6.f, 30.f, 40.f}).view({1, 2, 4});
  auto down = area_downsample(x, 2);
  REQUIRE(down.sizes() == torch::IntArrayRef({1, 1, 2}));
  CHECK(down[0][0][0].item<float>() == 3.f);
  CHECK(down[0][0][1].item<float>() == 25.f);
  CHECK_THROWS_AS(area_downsample(torch::zeros({3, 5, 4}), 2), xformer::Error);
  // Batched: each image as on its own.
  auto two = torch::stack({x, x * 2});
  auto both = area_downsample(two, 2);
  REQUIRE(both.sizes() == torch::IntArrayRef({2, 1, 1, 2}));
  CHECK(max_abs_diff(both[1], down * 2) == 0);

  // Bicubic keeps constants, stays in range, and area-downsampling it back gives the input
  // nearly exactly for a smooth ramp.
  auto flat = torch::full({3, 4, 4}, 77.f);
  CHECK(max_abs_diff(bicubic_upsample(flat, 4), torch::full({3, 16, 16}, 77.f)) < 1e-3);
  auto ramp = (torch::arange(8, torch::kFloat) * 20 + 40).view({1, 1, 8}).expand({1, 8, 8}).contiguous();
  auto up = bicubic_upsample(ramp, 2);
  CHECK(up.min().item<float>() >= 0);
  CHECK(up.max().item<float>() <= 255);
  CHECK(max_abs_diff(area_downsample(up, 2).narrow(2, 1, 6), ramp.narrow(2, 1, 6)) < 1.0);

  // Hand-computed: rows 0 0 255 255 doubled. Output column 3 samples the input at 1.25 (pixel
  // centres aligned), between columns 1 and 2; the cubic kernel (a = -0.75) weighs columns 0..3
  // at distances 1.25, 0.25, 0.75, 1.75 by -0.10546875, 0.87890625, 0.26171875, -0.03515625, so
  // 255 * (0.26171875 - 0.03515625) = 57.7734375; column 4 (at 1.75) is 255 * 0.7734375. Nearest
  // or bilinear interpolation would give 0 or 63.75 and 255 or 191.25.
  auto step = torch::tensor({0.f, 0.f, 255.f, 255.f}).view({1, 1, 4}).expand({1, 4, 4}).contiguous();
  auto step_up = bicubic_upsample(step, 2);
  REQUIRE(step_up.sizes() == torch::IntArrayRef({1, 8, 8}));
  CHECK(step_up[0][3][3].item<float>() == Approx(57.7734375).margin(1e-3));
  CHECK(step_up[0][5][4].item<float>() == Approx(255 * 0.7734375).margin(1e-3));
}
