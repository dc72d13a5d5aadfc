// End-to-end tests of the xformer binary on the other tasks' tiny configs: music, super-resolution
// and image generation, classification, detection (train, eval, sample, resume).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/cli_helpers.h"
#include "test_support.h"
#include "xformer/data/image.h"
#include "xformer/data/midi.h"
#include "xformer/metrics/detection.h"

namespace fs = std::filesystem;
using namespace xformer::testing;

TEST_CASE("music: train, eval and sample the tiny config end to end", "[cli][e2e][music]") {
  TempDir tmp("cli_music");
  // The training folder: the fixture's pieces plus a truncated file, which must be skipped.
  fs::copy(source_path("tests/data/music/train"), tmp.str("train"));
  fs::copy_file(source_path("tests/data/music/corrupt/truncated.mid"), tmp.str("train/truncated.mid"));
  const std::string run = tmp.str("run");
  auto r = run_xformer("train --config configs/music/tiny.json --run-dir '" + run +
                       "' --set task.train='" + tmp.str("train") + "' --set train.max_steps=60");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("truncated.mid") != std::string::npos);
  CHECK(r.output.find("1 unreadable files skipped") != std::string::npos);
  auto train = read_metrics(run, "train");
  REQUIRE(train.size() == 6);
  CHECK(train.back()["loss"].get<double>() < 0.85 * train.front()["loss"].get<double>());
  auto valid = read_metrics(run, "valid");
  check_metrics_declared(run);
  REQUIRE(valid.size() == 3);
  CHECK(valid.back()["nll"].get<double>() < valid.front()["nll"].get<double>());

  r = run_xformer("eval --run '" + run + "' --split test");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto test = read_metrics(run, "test");
  REQUIRE(test.size() == 1);
  // NLL per event in nats, below the uniform distribution's log(391).
  CHECK(test[0]["nll"].get<double>() < std::log(391.0));

  r = run_xformer("sample --run '" + run + "' --temperature 0.9 --num 2 --length 80 --seed 3 --out '" +
                  tmp.str("out") + "' --primer tests/data/music/test/piece_01.mid");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  std::vector<std::vector<std::pair<int, double>>> drawn;  // (pitch, start) of each sample's notes
  for (const char* f : {"out/sample_1.mid", "out/sample_2.mid"}) {
    auto m = xformer::data::read_midi(tmp.str(f));
    CHECK(m.notes.size() > 10);  // the primer's notes at least
    drawn.emplace_back();
    for (const auto& n : m.notes) drawn.back().emplace_back(n.pitch, n.start);
  }
  CHECK(drawn[0] != drawn[1]);  // two draws from one primer: sampling, not a fixed continuation
  // Continuing a sample where it lies would write over it: refused, the primer left as it was;
  // a primer of another name in the output folder is fine.
  const auto primer_size = fs::file_size(tmp.str("out/sample_1.mid"));
  r = run_xformer("sample --run '" + run + "' --length 10 --out '" + tmp.str("out") + "' --primer '" +
                  tmp.str("out/sample_1.mid") + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("would replace the --primer file") != std::string::npos);
  CHECK(fs::file_size(tmp.str("out/sample_1.mid")) == primer_size);
  fs::rename(tmp.str("out/sample_2.mid"), tmp.str("out/primer.mid"));
  r = run_xformer("sample --run '" + run + "' --length 10 --num 1 --out '" + tmp.str("out") + "' --primer '" +
                  tmp.str("out/primer.mid") + "'");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  // Options music does not take are refused, naming the ones it takes.
  r = run_xformer("sample --run '" + run + "' --beam 2");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("--beam is not for music runs; their sample options are --temperature, --top-k,") !=
        std::string::npos);
  r = run_xformer("sample --run '" + run + "' --input tests/data/music/train");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("--input is not for music runs") != std::string::npos);
  // --length counts the events generated (EOS, which the model never puts right after BOS, aside).
  r = run_xformer("sample --run '" + run + "' --length 1 --out '" + tmp.str("one") + "'");
  INFO(r.output);
  CHECK(r.output.find("sample_1.mid (1 events") != std::string::npos);
  // --out names a file where the samples' folder would go: a usage error, the file kept.
  std::ofstream(tmp.str("a_file")) << "kept";
  r = run_xformer("sample --run '" + run + "' --length 1 --out '" + tmp.str("a_file") + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("--out '" + tmp.str("a_file") + "' is a file; this task writes a folder of files there") !=
        std::string::npos);
  CHECK(fs::is_regular_file(tmp.str("a_file")));

  // The attention page of the first sample: 2 heads of the tiny model's last layer.
  r = run_xformer("sample --run '" + run + "' --length 40 --out '" + tmp.str("out") + "' --attention '" +
                  tmp.str("att.html") + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  std::ifstream page_in(tmp.str("att.html"));
  const std::string page((std::istreambuf_iterator<char>(page_in)), {});
  CHECK(page.find("\"heads\":2") != std::string::npos);
  CHECK(page.find("\"BOS\"") != std::string::npos);
  CHECK(run_xformer("sample --run '" + run + "' --attention x.html --attention-layer 5").exit_code == 2);

  // --wav renders audio where FluidSynth and a soundfont are installed, and says so otherwise.
  r = run_xformer("sample --run '" + run + "' --length 20 --wav --out '" + tmp.str("wav") + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK((fs::exists(tmp.str("wav/sample_1.wav")) || r.output.find("--wav: ") != std::string::npos));

  // Absolute positions cannot go past model.max_positions: refused before sampling starts.
  const std::string abs_run = tmp.str("absolute");
  r = run_xformer("train --config configs/music/tiny.json --run-dir '" + abs_run +
                  "' --set model.attention=absolute --set train.max_steps=2 --set train.eval_every=0");
  REQUIRE(r.exit_code == 0);
  r = run_xformer("sample --run '" + abs_run + "' --length 600");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("max_positions 512") != std::string::npos);

  // Local attention (blocks of 16) trains, and samples past several blocks over the cache.
  const std::string local_run = tmp.str("local");
  r = run_xformer("train --config configs/music/tiny.json --run-dir '" + local_run +
                  "' --set model.local_block=16 --set train.max_steps=2 --set train.eval_every=0");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  r = run_xformer("sample --run '" + local_run + "' --length 80 --out '" + tmp.str("local_out") + "'");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(fs::exists(tmp.str("local_out/sample_1.mid")));
  CHECK(run_xformer("train --config configs/music/tiny.json --run-dir '" + tmp.str("bad") +
                    "' --set model.local_block=-1").exit_code == 2);
}

TEST_CASE("image tasks: train, eval and sample the tiny configs end to end", "[cli][e2e][image]") {
  TempDir tmp("cli_image");
  // The training folder: the fixture's pictures plus a truncated PNG, which must be skipped.
  fs::copy(source_path("tests/data/images/train"), tmp.str("train"));
  fs::copy_file(source_path("tests/data/images/corrupt/truncated.png"), tmp.str("train/truncated.png"));
  const std::string run = tmp.str("sr");
  auto r = run_xformer("train --config configs/super_resolution/tiny.json --run-dir '" + run +
                       "' --set task.train='" + tmp.str("train") + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("truncated.png") != std::string::npos);
  CHECK(r.output.find("1 unreadable files skipped") != std::string::npos);
  auto train = read_metrics(run, "train");
  REQUIRE(train.size() == 4);
  CHECK(train.back()["loss"].get<double>() < 0.97 * train.front()["loss"].get<double>());
  auto valid = read_metrics(run, "valid");
  check_metrics_declared(run);
  REQUIRE(valid.size() == 2);
  for (const char* k : {"bits_per_dim", "psnr", "ssim", "bicubic_psnr", "bicubic_ssim"}) CHECK(valid.back().contains(k));
  {
    // The scores are in their ranges: dB of 8-bit images, SSIM at most 1; bicubic upsampling of
    // the crops' own downsampled images is close to them (well above chance, not exact).
    // (Measured: bicubic 32.3 dB and SSIM 0.95 on the fixture; the barely trained model's samples
    // about 7 dB, near chance.)
    const auto& v = valid.back();
    CHECK(v["psnr"].get<double>() > 0);
    CHECK(v["psnr"].get<double>() < 60);
    CHECK(v["bicubic_psnr"].get<double>() > 20);
    CHECK(v["bicubic_psnr"].get<double>() < 60);
    CHECK(v["ssim"].get<double>() >= -1);
    CHECK(v["ssim"].get<double>() <= 1);
    CHECK(v["bicubic_ssim"].get<double>() > 0.5);
    CHECK(v["bicubic_ssim"].get<double>() < 1);
    CHECK(v["bicubic_psnr"].get<double>() > v["psnr"].get<double>());  // 40 updates do not beat bicubic
  }
  // bits/dim is the NLL per intensity in bits.
  CHECK(valid.back()["bits_per_dim"].get<double>() ==
        Approx(valid.back()["nll"].get<double>() / std::log(2.0)));
  CHECK(fs::exists(fs::path(run) / "samples" / "valid_step40.png"));

  r = run_xformer("eval --run '" + run + "' --split test");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  REQUIRE(read_metrics(run, "test").size() == 1);

  // Samples at each default temperature, and the grid; an HR-size input is downsampled first.
  r = run_xformer("sample --run '" + run + "' --num 2 --seed 3 --out '" + tmp.str("out") + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  for (const char* f : {"out/grid.png", "out/sample_1_t0.80_1.png", "out/sample_2_t1.00_2.png"})
    CHECK(fs::exists(tmp.str(f)));
  auto sample = xformer::data::read_image(tmp.str("out/sample_1_t0.90_2.png"));
  CHECK(sample.height == 8);
  CHECK(sample.width == 8);
  // Same seed, same samples.
  REQUIRE(run_xformer("sample --run '" + run + "' --num 2 --seed 3 --out '" + tmp.str("again") + "'").exit_code == 0);
  CHECK(xformer::data::read_image(tmp.str("again/sample_1_t0.90_2.png")).pixels == sample.pixels);
  // No temperature to sample at: a config error, nothing written.
  r = run_xformer("sample --run '" + run + "' --set 'task.sample_temperatures=[]' --out '" + tmp.str("none") + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("task.sample_temperatures must list at least one temperature") != std::string::npos);
  CHECK(!fs::exists(tmp.str("none")));
  r = run_xformer("sample --run '" + run + "' --input tests/data/images/test/picture_01.png --temperature 0.925 --out '" +
                  tmp.str("one") + "'");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(fs::exists(tmp.str("one/sample_1_t0.925_1.png")));  // not rounded to 0.93 (or 0.92)
  // A sample taken as the input of the same command would be written over: refused, kept.
  const auto before = xformer::data::read_image(tmp.str("one/sample_1_t0.925_1.png")).pixels;
  r = run_xformer("sample --run '" + run + "' --input '" + tmp.str("one/sample_1_t0.925_1.png") +
                  "' --temperature 0.925 --out '" + tmp.str("one") + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("would replace the --input file") != std::string::npos);
  CHECK(xformer::data::read_image(tmp.str("one/sample_1_t0.925_1.png")).pixels == before);
  CHECK(run_xformer("sample --run '" + run + "' --beam 2").exit_code == 2);

  // Unconditional generation.
  const std::string gen = tmp.str("gen");
  r = run_xformer("train --config configs/image_generation/tiny.json --run-dir '" + gen + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(read_metrics(gen, "valid").back().contains("bits_per_dim"));
  check_metrics_declared(gen);
  r = run_xformer("sample --run '" + gen + "' --num 3 --temperature 1.0 --out '" + tmp.str("gen_out") + "'");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(fs::exists(tmp.str("gen_out/sample_1_t1.00_3.png")));
  r = run_xformer("sample --run '" + gen + "' --input tests/data/images/test/picture_01.png");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("--input is not for image_generation runs") != std::string::npos);
  // CIFAR-10 binary batches, chosen by a wildcard pattern.
  fs::create_directories(tmp.str("cifar"));
  for (const char* f : {"data_batch_1.bin", "data_batch_2.bin", "test_batch.bin"})
    xformer::testing::write_cifar10_batch(tmp.str(std::string("cifar/") + f), 3);
  r = run_xformer("train --config configs/image_generation/tiny.json --run-dir '" + tmp.str("cifar_run") +
                  "' --set train.max_steps=2 --set task.train='" + tmp.str("cifar/data_batch_*.bin") +
                  "' --set task.valid='" + tmp.str("cifar/test_batch.bin") + "'");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("train: 6 images from") != std::string::npos);
  CHECK(r.output.find("valid: 3 images from") != std::string::npos);

  // Config mistakes are usage errors.
  CHECK(run_xformer("train --config configs/super_resolution/tiny.json --run-dir '" + tmp.str("bad1") +
                    "' --set task.scale=3").exit_code == 2);
  CHECK(run_xformer("train --config configs/super_resolution/tiny.json --run-dir '" + tmp.str("bad2") +
                    "' --set model.encoder_layers=0").exit_code == 2);
}

TEST_CASE("classification: train, eval, sample and model stats end to end", "[cli][e2e][classification]") {
  TempDir tmp("cli_classification");
  const std::string run = tmp.str("run");
  auto r = run_xformer("train --config configs/classification/tiny.json --run-dir '" + run + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto train = read_metrics(run, "train");
  REQUIRE(train.size() == 6);
  CHECK(train.back()["loss"].get<double>() < 0.8 * train.front()["loss"].get<double>());
  auto valid = read_metrics(run, "valid");
  check_metrics_declared(run);
  REQUIRE(valid.size() == 2);
  CHECK(valid.back()["accuracy"].get<double>() > 0.3);  // 10 classes: chance is 0.1
  CHECK(valid.back().contains("top5_accuracy"));  // its value: tests/unit/metrics/test_classification_scores.cpp
  CHECK(valid.back()["error"].get<double>() == Approx(1 - valid.back()["accuracy"].get<double>()));

  r = run_xformer("eval --run '" + run + "' --split test");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto test = read_metrics(run, "test");
  REQUIRE(test.size() == 1);
  // The confusion matrix: 10 rows under a header, counts adding up to the 100 test images, its
  // diagonal the accuracy.
  std::ifstream confusion(fs::path(run) / "samples" / "test.confusion.tsv");
  REQUIRE(confusion.good());
  std::string line;
  std::getline(confusion, line);
  int rows = 0, total = 0, diagonal = 0;
  while (std::getline(confusion, line)) {
    std::istringstream cells(line);
    std::string name;
    cells >> name;
    for (int j = 0, n; cells >> n; ++j) total += n, diagonal += j == rows ? n : 0;
    ++rows;
  }
  CHECK(rows == 10);
  CHECK(total == 100);
  CHECK(diagonal == Approx(100 * test[0]["accuracy"].get<double>()));

  r = run_xformer("sample --run '" + run + "' --num 3 --top-k 2 --out '" + tmp.str("pred.tsv") + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  std::ifstream pred(tmp.str("pred.tsv"));
  std::vector<std::string> lines;
  while (std::getline(pred, line)) lines.push_back(line);
  REQUIRE(lines.size() == 4);
  CHECK(lines[1].rfind("test[0]\t7\t", 0) == 0);  // MNIST's first test digit is a 7
  // An image file is classified too (converted to grey and resized to 14x14).
  r = run_xformer("sample --run '" + run + "' --input tests/data/images/test/picture_01.png");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("picture_01.png\t") != std::string::npos);
  CHECK(run_xformer("sample --run '" + run + "' --temperature 1").exit_code == 2);
  // --out onto its own --input is refused, and the image is left as it was.
  fs::copy_file(source_path("tests/data/images/test/picture_01.png"), tmp.str("mine.png"));
  r = run_xformer("sample --run '" + run + "' --input '" + tmp.str("mine.png") + "' --out '" + tmp.str("mine.png") + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("is the --input file") != std::string::npos);
  CHECK(xformer::data::read_image(tmp.str("mine.png")).width > 0);
  CHECK(run_xformer("sample --run '" + run + "' --input '" + tmp.str("mine.png") + "' --num 3").exit_code == 2);
  // A folder's unreadable file is skipped, named; the others are classified. Alone, it is an error.
  fs::create_directories(tmp.str("mixed"));
  fs::copy_file(source_path("tests/data/images/test/picture_01.png"), tmp.str("mixed/a.png"));
  std::ofstream(tmp.str("mixed/b.png")) << "not a picture";
  r = run_xformer("sample --run '" + run + "' --input '" + tmp.str("mixed") + "'");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("a.png\t") != std::string::npos);
  CHECK(r.output.find("--input: skipping cannot read image " + tmp.str("mixed/b.png")) != std::string::npos);
  r = run_xformer("sample --run '" + run + "' --input '" + tmp.str("mixed/b.png") + "'");
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("cannot read image " + tmp.str("mixed/b.png")) != std::string::npos);

  // Model statistics without data: the SASA paper's ResNet-26 at ImageNet size.
  r = run_xformer("info --config configs/classification/tiny.json --model-stats --set task.size=224 "
                  "--set task.channels=3 --set task.classes=1000 --set model.width=64 --set model.stem_width=64 "
                  "--set model.small_images=false --set model.heads=8 --set model.kernel=7 --set model.stem_kernel=4 "
                  "--set model.stem_mixtures=4 --set task.train=/nonexistent");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("(10.") != std::string::npos);  // 10.3M parameters
  CHECK(r.output.find("at 224x224") != std::string::npos);
  CHECK(run_xformer("info --model-stats").exit_code == 2);
  CHECK(run_xformer("train --config configs/classification/tiny.json --run-dir '" + tmp.str("bad") +
                    "' --set model.depth=34").exit_code == 2);
  CHECK(run_xformer("train --config configs/classification/tiny.json --run-dir '" + tmp.str("bad2") +
                    "' --set model.heads=3").exit_code == 2);
}

TEST_CASE("classification: resume with augmentation reproduces the same losses", "[cli][resume][classification]") {
  TempDir tmp("cli_classification_resume");
  // Random crops and flips on, checkpoint mid-epoch (13 batches of 32 per epoch of 400).
  check_exact_resume(tmp.str(), [](const std::string& run) {
    return "--config configs/classification/tiny.json --set task.crop_padding=2 --set task.horizontal_flip=true"
           " --set train.log_every=1 --set train.eval_every=0 --set train.save_every=9 --run-dir '" + run + "'";
  }, 9, 18);
}

TEST_CASE("detection: train, eval and sample the tiny config end to end", "[cli][e2e][detection]") {
  TempDir tmp("cli_detection");
  const std::string run = tmp.str("run");
  auto r = run_xformer("train --config configs/detection/tiny.json --run-dir '" + run + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto train = read_metrics(run, "train");
  REQUIRE(train.size() == 4);
  CHECK(train.back()["loss"].get<double>() < 0.7 * train.front()["loss"].get<double>());
  auto valid = read_metrics(run, "valid");
  check_metrics_declared(run);
  REQUIRE(valid.size() == 2);
  for (const char* k : {"map", "ap50", "ap75", "ap_small", "ap_medium", "ap_large"}) CHECK(valid.back().contains(k));
  CHECK(valid.back()["ap50"].get<double>() > valid.front()["ap50"].get<double>());
  CHECK(valid.back()["ap50"].get<double>() >= valid.back()["map"].get<double>());

  r = run_xformer("eval --run '" + run + "' --split test");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  REQUIRE(read_metrics(run, "test").size() == 1);
  // Detections in COCO's results format, with the dataset's category ids (1..10).
  std::ifstream results(fs::path(run) / "samples" / "test.detections.json");
  REQUIRE(results.good());
  const auto found = nlohmann::json::parse(results);
  REQUIRE(!found.empty());
  CHECK(found[0]["category_id"].get<int>() >= 1);
  CHECK(found[0]["bbox"].size() == 4);
  {
    // Scored again from the written file against the annotations (read here as plain JSON, not
    // through the task's COCO reader), the detections give the mAP that eval logged: category
    // ids, box format (x, y, width, height) and image ids all as COCO's results format has them.
    std::ifstream annotations_file(xformer::testing::source_path("tests/data/detection/test.json"));
    const auto annotations = nlohmann::json::parse(annotations_file);
    std::vector<int64_t> category_ids;
    for (const auto& c : annotations["categories"]) category_ids.push_back(c["id"]);
    std::sort(category_ids.begin(), category_ids.end());
    auto label_of = [&](int64_t id) {
      return static_cast<int64_t>(std::find(category_ids.begin(), category_ids.end(), id) - category_ids.begin());
    };
    auto box_of = [](const nlohmann::json& b) {
      const double x = b[0], y = b[1], w = b[2], h = b[3];
      return xformer::metrics::Box{x, y, x + w, y + h};
    };
    std::vector<xformer::metrics::GroundTruth> truth;
    for (const auto& a : annotations["annotations"])
      truth.push_back({a["image_id"].get<int64_t>(), label_of(a["category_id"]), box_of(a["bbox"]), a.value("iscrowd", 0) == 1});
    std::vector<xformer::metrics::Detection> detections;
    for (const auto& d : found)
      detections.push_back({d["image_id"].get<int64_t>(), label_of(d["category_id"]), d["score"].get<double>(), box_of(d["bbox"])});
    const auto rescored = xformer::metrics::detection_ap(detections, truth, static_cast<int64_t>(category_ids.size()));
    const auto logged = read_metrics(run, "test").back();
    CHECK(rescored.map == Approx(logged["map"].get<double>()).margin(1e-6));
    CHECK(rescored.ap50 == Approx(logged["ap50"].get<double>()).margin(1e-6));
    CHECK(rescored.ap50 > 0);  // trained: some objects found
  }

  // Trained and scored at twice the images' size, the detections are written in the files' own
  // 32 x 32 pixels (every box of the 100 kept per image inside them, reaching their far side).
  r = run_xformer("train --config configs/detection/tiny.json --run-dir '" + tmp.str("x2") +
                  "' --set task.size=64 --set task.score_threshold=0 --set train.max_steps=20 --set train.eval_every=20");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  std::ifstream x2_results(fs::path(tmp.str("x2")) / "samples" / "valid_step20.detections.json");
  const auto x2_found = nlohmann::json::parse(x2_results);
  REQUIRE(x2_found.size() == 8 * 100);
  double far_side = 0;
  for (const auto& d : x2_found) {
    const auto& b = d["bbox"];
    CHECK((b[0] >= 0 && b[1] >= 0 && b[0].get<double>() + b[2].get<double>() <= 32.001 &&
           b[1].get<double>() + b[3].get<double>() <= 32.001));
    far_side = std::max(far_side, b[0].get<double>() + b[2].get<double>());
  }
  CHECK(far_side > 24);

  r = run_xformer("sample --run '" + run + "' --num 2 --out '" + tmp.str("out") + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(xformer::data::read_image(tmp.str("out/000001.png")).width == 32);
  CHECK(fs::exists(tmp.str("out/detections.json")));
  r = run_xformer("sample --run '" + run + "' --input tests/data/detection/valid --out '" + tmp.str("dir") + "'");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(fs::exists(tmp.str("dir/000008.png")));
  CHECK(run_xformer("sample --run '" + run + "' --temperature 1").exit_code == 2);
  // Pictures are drawn beside the inputs, never into their folder, and never two onto one name.
  fs::create_directories(tmp.str("in/sub"));
  for (const char* name : {"in/000001.png", "in/sub/000001.png"})
    fs::copy_file(source_path("tests/data/detection/valid/000008.png"), tmp.str(name));
  r = run_xformer("sample --run '" + run + "' --input '" + tmp.str("in") + "' --out '" + tmp.str("in/drawn") + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("is inside the --input folder") != std::string::npos);
  r = run_xformer("sample --run '" + run + "' --input '" + tmp.str("in") + "' --out '" + tmp.str("drawn") + "'");
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("would both be drawn to 000001.png") != std::string::npos);
  CHECK(!fs::exists(tmp.str("drawn")));
  // An image drawn into its own folder would replace it (a PNG of the same name): refused.
  const auto input_size = fs::file_size(tmp.str("in/000001.png"));
  r = run_xformer("sample --run '" + run + "' --input '" + tmp.str("in/000001.png") + "' --out '" + tmp.str("in") + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("would replace the --input file") != std::string::npos);
  CHECK(fs::file_size(tmp.str("in/000001.png")) == input_size);
  // So would the test images drawn into their own folder.
  fs::create_directories(tmp.str("coco"));
  fs::copy(source_path("tests/data/detection/test"), tmp.str("coco/test"));
  fs::copy_file(source_path("tests/data/detection/test.json"), tmp.str("coco/test.json"));
  const auto test_size = fs::file_size(tmp.str("coco/test/000001.png"));
  r = run_xformer("sample --run '" + run + "' --set task.test='" + tmp.str("coco/test.json") + "' --out '" +
                  tmp.str("coco/test") + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("would replace the test image file") != std::string::npos);
  CHECK(fs::file_size(tmp.str("coco/test/000001.png")) == test_size);

  // Broken annotations are named; config mistakes are usage errors.
  std::ofstream(tmp.str("bad.json")) << R"({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [)"
                                     << R"({"id": 7, "image_id": 2, "category_id": 1, "bbox": [0, 0, 4, 4]}],)"
                                     << R"( "categories": [{"id": 1, "name": "x"}]})";
  r = run_xformer("train --config configs/detection/tiny.json --run-dir '" + tmp.str("bad") + "' --set task.train='" +
                  tmp.str("bad.json") + "'");
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("annotation 7 refers to unknown image 2") != std::string::npos);
  CHECK(run_xformer("train --config configs/detection/tiny.json --run-dir '" + tmp.str("bad2") +
                    "' --set model.backbone=vgg").exit_code == 2);
}

TEST_CASE("bad validation data stops training before it starts, in every task; good data is read once",
          "[cli][data]") {
  TempDir tmp("cli_valid");
  fs::create_directories(tmp.str("empty"));
  std::ofstream(tmp.str("no_images.json")) << "{}";
  struct Case {
    std::string config, valid, expected;
  };
  const std::vector<Case> cases = {
      {"translation/tiny.json", source_path("tests/data/translation/corrupt.tsv"), "corrupt.tsv:3: expected 'source<TAB>target'"},
      {"music/tiny.json", tmp.str("empty"), "task.valid: no readable MIDI files with notes"},
      {"super_resolution/tiny.json", tmp.str("empty"), "task.valid: no readable images"},
      {"image_generation/tiny.json", tmp.str("empty"), "task.valid: no readable images"},
      {"classification/tiny.json", tmp.str("empty"), "no readable images"},
      {"detection/tiny.json", tmp.str("no_images.json"), "no 'images' list"},
  };
  for (const auto& c : cases) {
    const std::string run = tmp.str("run_" + c.config.substr(0, c.config.find('/')));
    auto r = run_xformer("train --config configs/" + c.config + " --run-dir '" + run + "' --set task.valid='" +
                         c.valid + "'");
    INFO(c.config << "\n" << r.output);
    CHECK(r.exit_code == 1);
    CHECK(r.output.find(c.expected) != std::string::npos);
    CHECK(r.output.find("| train |") == std::string::npos);  // not one update
    CHECK(!fs::exists(run));
  }
  // Two evaluations of a good split read (and encode) it once.
  const std::string run = tmp.str("run_ok");
  auto r = run_xformer("train " + tiny_args(run, tmp.str("spm")) + " --set train.max_steps=4 --set train.eval_every=2");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(read_metrics(run, "valid").size() == 2);
  size_t reads = 0;
  for (size_t at = r.output.find("valid: "); at != std::string::npos; at = r.output.find("valid: ", at + 1)) ++reads;
  CHECK(reads == 1);
}
