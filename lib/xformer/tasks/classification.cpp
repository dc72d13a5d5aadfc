#include "xformer/tasks/classification.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <random>
#include <sstream>

#include "xformer/core/atomic_file.h"
#include "xformer/core/error.h"
#include "xformer/data/parallel_corpus.h"
#include "xformer/core/json_file.h"
#include "xformer/data/image.h"
#include "xformer/data/image_ops.h"
#include "xformer/data/labelled_images.h"
#include "xformer/metrics/classification.h"
#include "xformer/models/resnet.h"
#include "xformer/tasks/backbone.h"
#include "xformer/tasks/task.h"

namespace fs = std::filesystem;

namespace xformer::tasks {

namespace {

const char* kSourceNote =
    " A folder with one subfolder of images per class, a CIFAR-10 batch (.bin) or wildcard pattern of "
    "them, or an [images, labels] pair of IDX files (MNIST, Fashion-MNIST).";

void declare_classification_keys(Schema& s) {
  const std::string root = "data/classification/mnist/";
  s.add("task.train", KeyType::PathOrPair, json::array({root + "train-images-idx3-ubyte", root + "train-labels-idx1-ubyte"}),
        std::string("Training images.") + kSourceNote);
  s.add("task.valid", KeyType::PathOrPair, json::array({root + "valid-images-idx3-ubyte", root + "valid-labels-idx1-ubyte"}),
        "Validation images.");
  s.add("task.test", KeyType::PathOrPair, json::array({root + "t10k-images-idx3-ubyte", root + "t10k-labels-idx1-ubyte"}),
        "Test images.");
  s.add("task.size", KeyType::Int, 0, "Resize images to size x size (bilinear); 0 = as they are (all one size).")
      .at_least(0);
  s.add("task.channels", KeyType::Int, 0, "1 (grey) or 3 (RGB), converting where needed; 0 = as the data has them.")
      .at_least(0);
  s.add("task.classes", KeyType::Int, 0,
        "Number of classes; 0 = from the training set. With task.size and task.channels also set, "
        "`xformer info --model-stats` needs no data.").at_least(0);
  s.add("task.batch_size", KeyType::Int, 64, "Images per batch.").at_least(1);
  s.add("task.crop_padding", KeyType::Int, 0,
        "Augmentation: pad by this many zero pixels and crop back at a random offset (0 = off; 4 for CIFAR).")
            .at_least(0);
  s.add("task.horizontal_flip", KeyType::Bool, false, "Augmentation: mirror half of the training images.");
}

void declare_resnet_keys(Schema& s) { declare_backbone_keys(s, false); }
void declare_sasa_keys(Schema& s) { declare_backbone_keys(s, true); }

std::vector<std::string> source_paths(const json& v) {
  return v.is_array() ? v.get<std::vector<std::string>>() : std::vector<std::string>{v.get<std::string>()};
}

class ClassificationTask : public BatchedTask {
 public:
  ClassificationTask(const json& config, const RunContext& ctx)
      : t_(config.at("task")), ctx_(ctx), seed_(config.at("train").at("seed").get<uint64_t>()) {
    if (t_.at("batch_size").get<int64_t>() < 1) throw ConfigError("config error: task.batch_size must be >= 1");
    if (t_.at("size").get<int64_t>() < 0 || t_.at("crop_padding").get<int64_t>() < 0)
      throw ConfigError("config error: task.size and task.crop_padding must be >= 0");
    options_.size = t_.at("size");
    options_.channels = t_.at("channels");
    if (options_.channels != 0 && options_.channels != 1 && options_.channels != 3)
      throw ConfigError("config error: task.channels must be 0, 1 or 3, got " + std::to_string(options_.channels));
    // The classes and the image shape come from the training set (saved in the run for eval and
    // sample, so those need only their own split).
    const auto saved = fs::path(ctx_.run_dir) / "classes.json";
    const int64_t classes = t_.at("classes");
    if (classes < 0) throw ConfigError("config error: task.classes must be >= 0");
    const bool described = classes > 0 && options_.size > 0 && options_.channels > 0;
    if (!ctx_.for_training && ctx_.run_dir.empty() && described) {
      for (int64_t c = 0; c < classes; ++c) options_.classes.push_back(std::to_string(c));
      height_ = width_ = options_.size;
    } else if (ctx_.for_training || ctx_.run_dir.empty() || !fs::exists(saved)) {
      train_ = data::load_labelled_images(source_paths(t_.at("train")), options_);
      options_.classes = train_.classes;
      if (classes > 0 && classes != static_cast<int64_t>(train_.classes.size()))
        throw ConfigError("config error: task.classes is " + std::to_string(classes) + " but the training set has " +
                          std::to_string(train_.classes.size()));
      options_.channels = train_.images.size(1);
      height_ = train_.images.size(2), width_ = train_.images.size(3);
      spdlog::info("train: {} images of {}x{}x{}, {} classes", train_.images.size(0), options_.channels, height_,
                   width_, options_.classes.size());
      // Numbered labels make the classes 0..max: a stray large label shows up as empty classes.
      const auto counts = torch::bincount(train_.labels, {}, static_cast<int64_t>(options_.classes.size()));
      std::vector<std::string> empty;
      for (int64_t c = 0; c < counts.size(0); ++c)
        if (counts[c].item<int64_t>() == 0) empty.push_back(options_.classes[c]);
      if (!empty.empty())
        spdlog::warn("train: {} of the {} classes have no training image: {}{}", empty.size(), options_.classes.size(),
                     fmt::join(empty.begin(), empty.begin() + std::min<size_t>(empty.size(), 5), ", "),
                     empty.size() > 5 ? ", ..." : "");
      if (ctx_.for_training && !ctx_.run_dir.empty()) save_classes(saved);
    } else {
      const auto j = read_json_file(saved.string(), "'" + saved.string() + "'", kExitFailure);
      options_.classes = j.at("classes").get<std::vector<std::string>>();
      options_.channels = j.at("channels"), height_ = j.at("height"), width_ = j.at("width");
      options_.size = j.at("size");
    }
    if (ctx_.for_training) eval_splits_.load_valid();
    else train_ = {};
    auto o = backbone_options(config.at("model"), config.at("model").at("arch") == "sasa_resnet", options_.channels);
    o.classes = static_cast<int64_t>(options_.classes.size());
    torch::manual_seed(seed_);
    model_ = models::ResNet(o);
    model_->to(ctx_.device);
  }

  std::shared_ptr<torch::nn::Module> model() override { return model_.ptr(); }

  Metrics model_stats() override {
    const auto s = model_->stats(height_, width_);
    return {{"parameters", static_cast<double>(s.parameters)},
            {"flops", s.flops},
            {"height", static_cast<double>(height_)},
            {"width", static_cast<double>(width_)}};
  }

  int64_t plan_epoch(int64_t epoch) override {
    order_ = shuffled_indices(train_.images.size(0), seed_, epoch);
    return batch_count(train_.images.size(0), t_.at("batch_size"));
  }

  Batch training_batch(int64_t index) override {
    const auto [begin, end] = batch_range(index, t_.at("batch_size"), order_.size());
    auto picked = torch::tensor(std::vector<int64_t>(order_.begin() + begin, order_.begin() + end), torch::kLong);
    auto images = augment(train_.images.index_select(0, picked), data::batch_seed(seed_, epoch(), index));
    return make_batch(images, train_.labels.index_select(0, picked));
  }

  LossOut loss(const Batch& batch) override {
    const auto& labels = batch.tensors.at("labels");
    auto logits = model_->forward(batch.tensors.at("images"));  // (B, classes)
    LossOut out;
    out.loss = torch::nn::functional::cross_entropy(
        logits.to(torch::kFloat), labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    out.sample_size = static_cast<double>(labels.size(0));
    out.sums["nll"] = out.loss.detach();
    out.sums["correct"] = logits.argmax(1).eq(labels).sum();
    return out;
  }

  Metrics evaluate(Split split, const std::string& out_prefix) override {
    torch::NoGradGuard no_grad;
    const auto& set = eval_splits_.get(split);
    const int64_t n = set.images.size(0), size = t_.at("batch_size");
    metrics::ClassificationScores scores(static_cast<int64_t>(options_.classes.size()));
    for (int64_t b = 0; b < n; b += size) {
      const int64_t e = std::min(n, b + size);
      auto labels = set.labels.slice(0, b, e);
      auto batch = make_batch(set.images.slice(0, b, e), labels);
      scores.add(model_->forward(batch.tensors.at("images")), labels);  // logits (B, classes)
    }
    if (!out_prefix.empty()) write_confusion(out_prefix + ".confusion.tsv", scores.confusion());
    return {{"nll", scores.nll()},
            {"accuracy", scores.accuracy()},
            {"error", 1 - scores.accuracy()},
            {"top5_accuracy", scores.top5_accuracy()}};
  }

  // Classifies --input (an image or a folder of them; or, without it, the first --num test
  // images): one line per image with the top --top-k classes (default 1) and probabilities.
  void sample(const SampleOptions& o) override {
    torch::NoGradGuard no_grad;
    model_->eval();
    std::vector<std::string> names;
    torch::Tensor images, labels;
    if (o.input.empty()) {
      auto test = load_split(Split::Test);
      const int64_t n = std::min<int64_t>(std::max(1, o.num), test.images.size(0));
      images = test.images.slice(0, 0, n), labels = test.labels.slice(0, 0, n);
      for (int64_t i = 0; i < n; ++i) names.push_back("test[" + std::to_string(i) + "]");
    } else {
      if (o.num != 1) throw ConfigError("usage error: --num picks test images; with --input every image is classified");
      data::check_output_apart_from_input(o.out, o.input);
      std::vector<torch::Tensor> each;
      for (const auto& [name, image] : data::read_input_images(o.input, 3)) {
        each.push_back(data::conform_image(data::to_tensor(image).to(torch::kUInt8), options_.channels, height_, width_));
        names.push_back(name);
      }
      images = torch::stack(each);
    }
    const int64_t k = std::min<int64_t>(o.top_k > 0 ? o.top_k : 1, options_.classes.size());
    std::ofstream file;
    if (!o.out.empty()) {
      file.open(o.out);
      if (!file) throw DataError("cannot write " + o.out);
    }
    std::ostream& out = o.out.empty() ? std::cout : file;
    out << "image\t" << (labels.defined() ? "label\t" : "") << "predicted (probability)\n";
    for (int64_t b = 0; b < images.size(0); b += 64) {
      const int64_t e = std::min<int64_t>(images.size(0), b + 64);
      auto dummy = torch::zeros({e - b}, torch::kLong);
      auto probs = model_->forward(make_batch(images.slice(0, b, e), dummy).tensors.at("images"))
                       .to(torch::kCPU, torch::kFloat).softmax(1);
      auto [p, c] = probs.topk(k, 1);
      for (int64_t i = 0; i < e - b; ++i) {
        out << names[b + i] << "\t";
        if (labels.defined()) out << options_.classes[labels[b + i].item<int64_t>()] << "\t";
        for (int64_t j = 0; j < k; ++j)
          out << (j ? " " : "") << options_.classes[c[i][j].item<int64_t>()]
              << fmt::format(" ({:.3f})", p[i][j].item<double>());
        out << "\n";
      }
    }
    if (!out.flush())  // a full disk or a closed stdout: an error, not a silently short table
      throw DataError("cannot write " + (o.out.empty() ? std::string("to standard output") : "'" + o.out + "'"));
  }

 private:
  void save_classes(const fs::path& path) const {
    const json j = {{"classes", options_.classes}, {"channels", options_.channels}, {"height", height_},
                    {"width", width_}, {"size", options_.size}};
    write_file_atomically(path.string(), j.dump(2) + "\n");
  }

  data::LabelledImages load_split(Split split) const {
    auto set = data::load_labelled_images(source_paths(t_.at(split_name(split))), options_);
    if (set.images.size(2) != height_ || set.images.size(3) != width_)
      throw DataError("task." + split_name(split) + ": images of " + std::to_string(set.images.size(2)) + "x" +
                      std::to_string(set.images.size(3)) + ", the training images are " + std::to_string(height_) +
                      "x" + std::to_string(width_) + " (set task.size)");
    spdlog::info("{}: {} images", split_name(split), set.images.size(0));
    if (set.images.size(0) == 0) throw DataError("task." + split_name(split) + ": holds no images to evaluate");
    return set;
  }

  // Random crops of the zero-padded images and horizontal flips, reproducible from the batch's
  // seed. (B, C, H, W) uint8 -> same.
  torch::Tensor augment(torch::Tensor images, uint64_t seed) const {
    const int64_t pad = t_.at("crop_padding");
    const bool flip = t_.at("horizontal_flip");
    if (pad == 0 && !flip) return images;
    std::mt19937_64 rng(seed);
    const int64_t H = images.size(2), W = images.size(3);
    auto padded = pad > 0 ? torch::constant_pad_nd(images, {pad, pad, pad, pad}, 0) : images;
    auto out = torch::empty_like(images);
    for (int64_t i = 0; i < images.size(0); ++i) {
      const int64_t y = pad > 0 ? static_cast<int64_t>(rng() % (2 * pad + 1)) : 0;
      const int64_t x = pad > 0 ? static_cast<int64_t>(rng() % (2 * pad + 1)) : 0;
      auto crop = padded[i].narrow(1, y, H).narrow(2, x, W);
      out[i].copy_(flip && rng() % 2 ? crop.flip({2}) : crop);
    }
    return out;
  }

  // uint8 images -> floats in [-1, 1] on the device, with their labels.
  Batch make_batch(const torch::Tensor& images, const torch::Tensor& labels) const {
    Batch b;
    b.tensors["images"] = to_device(pixels_to_input(images), ctx_.device);
    b.tensors["labels"] = to_device(labels, ctx_.device);
    b.n_items = b.n_tokens = images.size(0);
    return b;
  }

  void write_confusion(const std::string& path, const torch::Tensor& confusion) const {
    std::ostringstream out;
    out << "true \\ predicted";
    for (const auto& c : options_.classes) out << "\t" << c;
    out << "\n";
    const auto counts = confusion.accessor<int64_t, 2>();
    for (int64_t i = 0; i < confusion.size(0); ++i) {
      out << options_.classes[i];
      for (int64_t j = 0; j < confusion.size(1); ++j) out << "\t" << counts[i][j];
      out << "\n";
    }
    write_file_atomically(path, out.str());
  }

  json t_;
  RunContext ctx_;
  uint64_t seed_;
  data::ImageSetOptions options_;
  int64_t height_ = 0, width_ = 0;
  data::LabelledImages train_;
  EvalSplits<data::LabelledImages> eval_splits_{[this](Split s) { return load_split(s); }};
  models::ResNet model_{nullptr};
  std::vector<int64_t> order_;  // this epoch's permutation of the training images
};

}  // namespace

void register_classification(Registry& registry) {
  registry.add_task({"classification", "Image classification (ResNets with convolution or SASA layers; top-1/top-5)",
                     declare_classification_keys,
                     [](const json& config, const RunContext& ctx) -> std::unique_ptr<Task> {
                       return std::make_unique<ClassificationTask>(config, ctx);
                     },
                     [](const json&) {
                       return std::vector<std::string>{"nll", "accuracy", "error", "top5_accuracy"};
                     },
                     {"--input", "--num", "--top-k", "--out"}});
  registry.add_arch({"resnet", "Bottleneck ResNet-26/38/50, convolutional", {"classification"}, declare_resnet_keys});
  registry.add_arch({"sasa_resnet", "ResNet with stand-alone self-attention layers (Ramachandran et al. 2019)",
                     {"classification"}, declare_sasa_keys});
}

}  // namespace xformer::tasks
