#include "xformer/tasks/detection.h"

#include <spdlog/spdlog.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>

#include "xformer/core/atomic_file.h"
#include "xformer/core/error.h"
#include "xformer/data/parallel_corpus.h"
#include "xformer/core/json_file.h"
#include "xformer/data/coco.h"
#include "xformer/data/image.h"
#include "xformer/data/image_ops.h"
#include "xformer/data/labelled_images.h"
#include "xformer/metrics/detection.h"
#include "xformer/models/retinanet.h"
#include "xformer/tasks/backbone.h"
#include "xformer/tasks/task.h"

namespace fs = std::filesystem;

namespace xformer::tasks {

namespace {

void declare_detection_keys(Schema& s) {
  const std::string root = "data/detection/digits/";
  s.add("task.train", KeyType::String, root + "train.json",
        "COCO annotations of the training images (file names relative to the JSON's folder).");
  s.add("task.valid", KeyType::String, root + "valid.json", "COCO annotations of the validation images.");
  s.add("task.test", KeyType::String, root + "test.json", "COCO annotations of the test images.");
  s.add("task.size", KeyType::Int, 0, "Resize images (and boxes) to size x size; 0 = as they are (all one size).")
      .at_least(0);
  s.add("task.channels", KeyType::Int, 3, "1 (grey) or 3 (RGB).").at_least(1);
  s.add("task.batch_size", KeyType::Int, 16, "Images per batch.").at_least(1);
  s.add("task.horizontal_flip", KeyType::Bool, false, "Augmentation: mirror half of the training images.");
  s.add("task.score_threshold", KeyType::Float, 0.05, "Detections below this class probability are dropped.")
      .at_least(0)
      .below(1);
  s.add("task.nms_iou", KeyType::Float, 0.5, "Per-class non-maximum suppression above this IoU.").at_least(0);
  s.add("task.max_detections", KeyType::Int, 100, "Detections kept per image.").at_least(1);
}

void declare_retinanet_keys(Schema& s) {
  s.add("model.backbone", KeyType::String, "sasa_resnet", "The backbone's spatial layers.", {"resnet", "sasa_resnet"});
  declare_backbone_keys(s, true);
  s.add("model.fpn_channels", KeyType::Int, 256, "Channels of the feature pyramid and the heads.")
      .at_least(1);
  s.add("model.head_convs", KeyType::Int, 4, "3x3 convolutions in each head before its output layer.")
      .at_least(0);
  s.add("model.anchor_scale", KeyType::Float, 4.0, "Anchor side in strides of its level (times 2^0, 2^1/3, 2^2/3).")
      .at_least(0.001);
}

// A split in memory: images (N, C, S, S) uint8 and each image's boxes (M, 4) and labels (M),
// in the pixels of the resized image; `scale` maps them back to the file's own pixels.
struct DetectionSet {
  torch::Tensor images;
  std::vector<torch::Tensor> boxes, labels;
  std::vector<int64_t> ids;
  std::vector<std::string> paths;
  std::vector<std::array<double, 2>> scale;  // (x, y): resized over original size
  std::vector<metrics::GroundTruth> crowds;  // crowd regions, in original pixels: only for scoring
};

class DetectionTask : public BatchedTask {
 public:
  DetectionTask(const json& config, const RunContext& ctx)
      : t_(config.at("task")), ctx_(ctx), seed_(config.at("train").at("seed").get<uint64_t>()) {
    channels_ = t_.at("channels");
    if (channels_ != 1 && channels_ != 3) throw ConfigError("config error: task.channels must be 1 or 3");
    for (const char* k : {"batch_size", "max_detections"})
      if (t_.at(k).get<int64_t>() < 1) throw ConfigError(std::string("config error: task.") + k + " must be >= 1");
    if (t_.at("size").get<int64_t>() < 0) throw ConfigError("config error: task.size must be >= 0");
    // The classes come from the training annotations (saved in the run for eval and sample).
    const auto saved = fs::path(ctx_.run_dir) / "classes.json";
    if (!ctx_.for_training && !ctx_.run_dir.empty() && fs::exists(saved)) {
      const auto j = read_json_file(saved.string(), "'" + saved.string() + "'", kExitFailure);
      classes_ = j.at("classes").get<std::vector<std::string>>();
      category_ids_ = j.at("category_ids").get<std::vector<int64_t>>();
    } else {
      const auto coco = data::read_coco(t_.at("train"));
      classes_ = coco.classes, category_ids_ = coco.category_ids;
    }
    if (ctx_.for_training) {
      train_ = load_split(Split::Train);
      eval_splits_.load_valid();
      if (!ctx_.run_dir.empty()) {
        write_file_atomically(saved.string(), json{{"classes", classes_}, {"category_ids", category_ids_}}.dump(2) + "\n");
      }
    }
    const auto& m = config.at("model");
    models::RetinaNetOptions o;
    o.backbone = backbone_options(m, m.at("backbone") == "sasa_resnet", channels_);
    o.classes = static_cast<int64_t>(classes_.size());
    o.fpn_channels = m.at("fpn_channels"), o.head_convs = m.at("head_convs"), o.anchor_scale = m.at("anchor_scale");
    if (o.fpn_channels < 1 || o.head_convs < 0 || !(o.anchor_scale > 0))
      throw ConfigError("config error: model.fpn_channels must be >= 1, model.head_convs >= 0, model.anchor_scale > 0");
    torch::manual_seed(seed_);
    model_ = models::RetinaNet(o);
    model_->to(ctx_.device);
  }

  std::shared_ptr<torch::nn::Module> model() override { return model_.ptr(); }

  int64_t plan_epoch(int64_t epoch) override {
    order_ = shuffled_indices(train_.images.size(0), seed_, epoch);
    return batch_count(train_.images.size(0), t_.at("batch_size"));
  }

  Batch training_batch(int64_t index) override {
    const auto [begin, end] = batch_range(index, t_.at("batch_size"), order_.size());
    std::mt19937_64 rng(data::batch_seed(seed_, epoch(), index));
    std::vector<char> flip(end - begin, 0);
    if (t_.at("horizontal_flip").get<bool>())
      for (auto& f : flip) f = static_cast<char>(rng() % 2);
    return make_batch(train_, std::vector<int64_t>(order_.begin() + begin, order_.begin() + end), flip);
  }

  LossOut loss(const Batch& batch) override {
    auto out = model_->forward(batch.tensors.at("images"));
    auto l = models::retinanet_loss(out, targets_of(batch));
    LossOut r;
    r.loss = l.classification + l.regression;  // already per positive anchor
    r.sample_size = 1;
    r.sums["classification"] = l.classification.detach();
    r.sums["regression"] = l.regression.detach();
    return r;
  }

  Metrics evaluate(Split split, const std::string& out_prefix) override {
    torch::NoGradGuard no_grad;
    const auto& set = eval_splits_.get(split);
    // Scored in the images' own pixels, as COCO does: IoU is the same at any scale, the small,
    // medium and large areas are not.
    std::vector<metrics::Detection> found;
    std::vector<metrics::GroundTruth> truth;
    const auto detections = detect(set);
    for (size_t i = 0; i < detections.size(); ++i) {
      const auto& d = detections[i];
      for (int64_t k = 0; k < d.boxes.size(0); ++k)
        found.push_back({set.ids[i], d.labels[k].item<int64_t>(), d.scores[k].item<double>(),
                         original_box(d.boxes[k], set.scale[i])});
      for (int64_t k = 0; k < set.boxes[i].size(0); ++k)
        truth.push_back({set.ids[i], set.labels[i][k].item<int64_t>(), original_box(set.boxes[i][k], set.scale[i])});
    }
    truth.insert(truth.end(), set.crowds.begin(), set.crowds.end());
    if (!out_prefix.empty()) write_detections(out_prefix + ".detections.json", set, detections);
    const auto ap = metrics::detection_ap(found, truth, static_cast<int64_t>(classes_.size()));
    return {{"map", ap.map},           {"ap50", ap.ap50},           {"ap75", ap.ap75},
            {"ap_small", ap.ap_small}, {"ap_medium", ap.ap_medium}, {"ap_large", ap.ap_large},
            {"detections_per_image", static_cast<double>(found.size()) / std::max<size_t>(1, detections.size())}};
  }

  // Detects objects in --input (an image or a folder; or, without it, the first --num test
  // images) and writes each picture with its boxes drawn, plus detections.json.
  void sample(const SampleOptions& o) override {
    torch::NoGradGuard no_grad;
    const fs::path out_dir = o.out.empty() ? fs::path(ctx_.run_dir) / "samples" / "detections" : fs::path(o.out);
    data::check_output_folder(out_dir.string());
    DetectionSet set;
    if (o.input.empty()) {
      auto test = load_split(Split::Test);
      const int64_t n = std::min<int64_t>(std::max(1, o.num), test.images.size(0));
      set.images = test.images.narrow(0, 0, n);
      set.ids.assign(test.ids.begin(), test.ids.begin() + n);
      set.paths.assign(test.paths.begin(), test.paths.begin() + n);
      set.scale.assign(test.scale.begin(), test.scale.begin() + n);
      check_outputs(out_dir, set.paths, "");
    } else {
      if (o.num != 1) throw ConfigError("usage error: --num picks test images; with --input every image is detected on");
      data::check_output_apart_from_input(out_dir.string(), o.input);  // before reading a folder of inputs
      std::vector<torch::Tensor> each;
      for (const auto& [name, image] : data::read_input_images(o.input, 3)) {
        const auto raw = data::to_tensor(image).to(torch::kUInt8);
        auto t = conform(raw);
        if (!each.empty() && t.sizes() != each.front().sizes())
          throw DataError("--input " + name + ": images of different sizes (set task.size)");
        each.push_back(t);
        set.ids.push_back(static_cast<int64_t>(set.ids.size()) + 1);
        set.paths.push_back(name);
        set.scale.push_back(resize_scale(raw, t));
      }
      check_outputs(out_dir, set.paths, o.input);
      set.images = torch::stack(each);
    }
    fs::create_directories(out_dir);
    const auto detections = detect(set);
    for (size_t i = 0; i < detections.size(); ++i) {
      auto picture = set.images[i].to(torch::kFloat).expand({3, -1, -1}).clone();
      for (int64_t k = 0; k < detections[i].boxes.size(0); ++k)
        draw_box(picture, detections[i].boxes[k], detections[i].labels[k].item<int64_t>());
      data::write_png((out_dir / picture_name(set.paths[i])).string(), data::to_image(picture));
    }
    write_detections((out_dir / "detections.json").string(), set, detections);
    spdlog::info("wrote {} images with their detections and detections.json to {}", detections.size(), out_dir.string());
  }

 private:
  // Each image is drawn to OUT/<its stem>.png beside OUT/detections.json.
  // The picture drawn for an image: x/cat.jpg -> cat.png; record i of a CIFAR-10 batch,
  // x/batch.bin[i] -> batch_i.png.
  static std::string picture_name(const std::string& image) {
    std::string file = fs::path(image).filename().string(), record;
    const auto at = file.rfind(".bin[");
    if (at != std::string::npos && file.back() == ']') {
      record = "_" + file.substr(at + 5, file.size() - at - 6);
      file.erase(at);
    }
    return fs::path(file).stem().string() + record + ".png";
  }

  // Two images may not share a picture name, and no output may replace an image (`input`:
  // --input, "" for test images).
  static void check_outputs(const fs::path& out_dir, const std::vector<std::string>& images, const std::string& input) {
    std::map<std::string, std::string> by_name;  // output picture -> its image
    for (const auto& f : images) {
      const auto [it, fresh] = by_name.emplace(picture_name(f), f);
      if (!fresh)
        throw DataError((input.empty() ? "test images" : "--input " + input) + ": " + it->second + " and " + f +
                        " would both be drawn to " + it->first + " (rename one, or detect the folders one at a time)");
    }
    std::vector<std::string> outputs = {(out_dir / "detections.json").string()};
    for (const auto& entry : by_name) outputs.push_back((out_dir / entry.first).string());
    if (!input.empty()) data::check_output_apart_from_input(out_dir.string(), input, outputs);
    else for (const auto& f : images) data::check_output_apart_from_input(out_dir.string(), f, outputs, "test image");
  }

  // A box (4) of a resized image in the original image's pixels.
  static metrics::Box original_box(const torch::Tensor& b, const std::array<double, 2>& scale) {
    return {b[0].item<double>() / scale[0], b[1].item<double>() / scale[1], b[2].item<double>() / scale[0],
            b[3].item<double>() / scale[1]};
  }

  // (x, y) scale from a (C, H, W) image to its resized version.
  static std::array<double, 2> resize_scale(const torch::Tensor& raw, const torch::Tensor& resized) {
    return {static_cast<double>(resized.size(2)) / raw.size(2), static_cast<double>(resized.size(1)) / raw.size(1)};
  }

  torch::Tensor conform(const torch::Tensor& chw) const {
    const int64_t size = t_.at("size");
    return data::conform_image(chw, channels_, size, size);
  }

  DetectionSet load_split(Split split) const {
    const auto coco = data::read_coco(t_.at(split_name(split)));
    if (coco.classes != classes_)
      throw DataError("task." + split_name(split) + ": its categories differ from the training annotations'");
    DetectionSet set;
    std::vector<torch::Tensor> images;
    data::ClipCounts outside;
    std::string first_outside;  // an image with such a box, for the warning
    int64_t degenerate = 0;     // boxes too small to keep an area (at task.size, in float)
    std::string first_degenerate;
    for (auto im : coco.images) {
      auto raw = data::to_tensor(data::read_image(im.path, 3)).to(torch::kUInt8);
      const auto c = data::clip_to_image(im.objects, static_cast<double>(raw.size(2)), static_cast<double>(raw.size(1)));
      if ((c.clipped || c.dropped) && first_outside.empty()) first_outside = im.path;
      outside.clipped += c.clipped, outside.dropped += c.dropped;
      auto t = conform(raw);
      if (!images.empty() && t.sizes() != images.front().sizes())
        throw DataError(im.path + ": " + std::to_string(t.size(1)) + "x" + std::to_string(t.size(2)) +
                        " differs from the other images (set task.size)");
      const auto [sx, sy] = resize_scale(raw, t);
      std::vector<float> boxes;
      std::vector<int64_t> labels;
      for (const auto& ob : im.objects) {
        if (ob.crowd) {
          set.crowds.push_back({im.id, ob.label, {ob.x1, ob.y1, ob.x2, ob.y2}, true});
          continue;
        }
        const float x1 = static_cast<float>(ob.x1 * sx), y1 = static_cast<float>(ob.y1 * sy);
        const float x2 = static_cast<float>(ob.x2 * sx), y2 = static_cast<float>(ob.y2 * sy);
        if (!(x2 > x1 && y2 > y1)) {  // no area left at this size, in float (its regression target would be log 0)
          if (first_degenerate.empty()) first_degenerate = im.path;
          ++degenerate;
          continue;
        }
        boxes.insert(boxes.end(), {x1, y1, x2, y2});
        labels.push_back(ob.label);
      }
      images.push_back(t);
      set.boxes.push_back(torch::tensor(boxes).view({-1, 4}));
      set.labels.push_back(torch::tensor(labels, torch::kLong));
      set.ids.push_back(im.id);
      set.paths.push_back(im.path);
      set.scale.push_back({sx, sy});
    }
    if (images.empty()) throw DataError("task." + split_name(split) + ": no images");
    if (!first_outside.empty())
      spdlog::warn("task.{}: {} boxes extend past their image (clipped to it), {} lie outside it (dropped); the first in {}",
                   split_name(split), outside.clipped, outside.dropped, first_outside);
    if (degenerate > 0)
      spdlog::warn("task.{}: {} boxes have no area left at this image size (dropped); the first in {}", split_name(split),
                   degenerate, first_degenerate);
    set.images = torch::stack(images);
    int64_t objects = 0;
    for (const auto& l : set.labels) objects += l.size(0);
    spdlog::info("{}: {} images, {} objects{}, {} classes", split_name(split), images.size(), objects,
                 set.crowds.empty() ? "" : " (and " + std::to_string(set.crowds.size()) + " crowd regions, ignored when scoring)",
                 classes_.size());
    if (objects == 0 && split == Split::Train)
      throw DataError("task.train: " + t_.at("train").get<std::string>() + " has no objects to learn from");
    if (objects == 0) spdlog::warn("task.{}: no objects, so its mAP is 0 whatever is detected", split_name(split));
    return set;
  }

  // Images [index] (mirrored where flip) -> images in [-1, 1] and boxes / labels padded to the
  // most objects in the batch (label -1 = padding).
  Batch make_batch(const DetectionSet& set, const std::vector<int64_t>& index, const std::vector<char>& flip) const {
    const int64_t B = static_cast<int64_t>(index.size());
    int64_t most = 0;
    for (auto i : index) most = std::max(most, set.boxes[i].size(0));
    auto images = set.images.index_select(0, torch::tensor(index, torch::kLong)).to(torch::kFloat);
    auto boxes = torch::zeros({B, most, 4});
    auto labels = torch::full({B, most}, -1, torch::kLong);
    const double W = static_cast<double>(set.images.size(3));
    for (int64_t b = 0; b < B; ++b) {
      auto bx = set.boxes[index[b]].clone();
      if (flip[b]) {
        images[b] = images[b].flip({2});
        bx = torch::stack({W - bx.select(1, 2), bx.select(1, 1), W - bx.select(1, 0), bx.select(1, 3)}, 1);
      }
      const int64_t m = bx.size(0);
      if (m > 0) {
        boxes[b].narrow(0, 0, m).copy_(bx);
        labels[b].narrow(0, 0, m).copy_(set.labels[index[b]]);
      }
    }
    Batch batch;
    batch.tensors["images"] = to_device(pixels_to_input(images), ctx_.device);
    batch.tensors["boxes"] = boxes;
    batch.tensors["labels"] = labels;
    batch.n_items = batch.n_tokens = B;
    return batch;
  }

  static std::vector<models::ObjectTargets> targets_of(const Batch& batch) {
    const auto& boxes = batch.tensors.at("boxes");
    const auto& labels = batch.tensors.at("labels");
    std::vector<models::ObjectTargets> targets;
    for (int64_t b = 0; b < boxes.size(0); ++b) {
      auto real = labels[b].ge(0).nonzero().squeeze(1);
      targets.push_back({boxes[b].index_select(0, real), labels[b].index_select(0, real)});
    }
    return targets;
  }

  std::vector<models::Detections> detect(const DetectionSet& set) {
    model_->eval();
    const int64_t size = t_.at("batch_size"), n = set.images.size(0);
    std::vector<models::Detections> all;
    for (int64_t b = 0; b < n; b += size) {
      std::vector<int64_t> index(std::min(size, n - b));
      std::iota(index.begin(), index.end(), b);
      auto images = to_device(pixels_to_input(set.images.index_select(0, torch::tensor(index, torch::kLong))), ctx_.device);
      auto found = models::retinanet_detect(model_->forward(images), set.images.size(2),
                                            set.images.size(3), t_.at("score_threshold"), 1000, t_.at("nms_iou"),
                                            t_.at("max_detections"));
      all.insert(all.end(), found.begin(), found.end());
    }
    return all;
  }

  // COCO results format: one entry per detection with the image id, category id, [x, y, w, h]
  // in the image file's own pixels.
  void write_detections(const std::string& path, const DetectionSet& set,
                        const std::vector<models::Detections>& detections) const {
    json out = json::array();
    for (size_t i = 0; i < detections.size(); ++i)
      for (int64_t k = 0; k < detections[i].boxes.size(0); ++k) {
        const auto b = original_box(detections[i].boxes[k], set.scale[i]);
        const auto label = detections[i].labels[k].item<int64_t>();
        out.push_back({{"image_id", set.ids[i]}, {"file_name", set.paths[i]}, {"category_id", category_ids_[label]},
                       {"category", classes_[label]}, {"score", detections[i].scores[k].item<double>()},
                       {"bbox", {b[0], b[1], b[2] - b[0], b[3] - b[1]}}});
      }
    write_file_atomically(path, out.dump(1) + "\n");
  }

  // A one-pixel rectangle in the label's colour on a (3, H, W) float picture.
  static void draw_box(torch::Tensor& picture, const torch::Tensor& b, int64_t label) {
    static const float kColours[6][3] = {{255, 64, 64}, {64, 255, 64}, {64, 128, 255},
                                         {255, 255, 64}, {255, 64, 255}, {64, 255, 255}};
    const auto* c = kColours[label % 6];
    const int64_t H = picture.size(1), W = picture.size(2);
    auto clampi = [](double v, int64_t hi) { return std::clamp<int64_t>(static_cast<int64_t>(std::lround(v)), 0, hi - 1); };
    const int64_t x1 = clampi(b[0].item<double>(), W), y1 = clampi(b[1].item<double>(), H);
    const int64_t x2 = clampi(b[2].item<double>() - 1, W), y2 = clampi(b[3].item<double>() - 1, H);
    for (int64_t k = 0; k < 3; ++k) {
      auto ch = picture[k];
      ch.select(0, y1).narrow(0, x1, x2 - x1 + 1).fill_(c[k]);
      ch.select(0, y2).narrow(0, x1, x2 - x1 + 1).fill_(c[k]);
      ch.select(1, x1).narrow(0, y1, y2 - y1 + 1).fill_(c[k]);
      ch.select(1, x2).narrow(0, y1, y2 - y1 + 1).fill_(c[k]);
    }
  }

  json t_;
  RunContext ctx_;
  uint64_t seed_;
  int64_t channels_ = 3;
  std::vector<std::string> classes_;
  std::vector<int64_t> category_ids_;  // the annotations' ids of those classes
  DetectionSet train_;
  EvalSplits<DetectionSet> eval_splits_{[this](Split s) { return load_split(s); }};
  models::RetinaNet model_{nullptr};
  std::vector<int64_t> order_;  // this epoch's permutation of the training images
};

}  // namespace

void register_detection(Registry& registry) {
  registry.add_task({"detection", "Object detection (RetinaNet on a conv or SASA ResNet; COCO-style mAP)",
                     declare_detection_keys, [](const json& config, const RunContext& ctx) -> std::unique_ptr<Task> {
                       return std::make_unique<DetectionTask>(config, ctx);
                     },
                     [](const json&) {
                       return std::vector<std::string>{"map",      "ap50",     "ap75", "ap_small", "ap_medium",
                                                       "ap_large", "detections_per_image"};
                     },
                     {"--input", "--num", "--out"}});
  registry.add_arch({"retinanet", "RetinaNet (Lin et al. 2017): FPN P3-P7, focal loss, on a ResNet or SASA ResNet",
                     {"detection"}, declare_retinanet_keys});
}

}  // namespace xformer::tasks
