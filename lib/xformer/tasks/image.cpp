#include "xformer/tasks/image.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "xformer/core/error.h"
#include "xformer/data/parallel_corpus.h"
#include "xformer/data/image.h"
#include "xformer/data/image_ops.h"
#include "xformer/metrics/image_quality.h"
#include "xformer/models/image_transformer.h"
#include "xformer/nn/loss.h"
#include "xformer/tasks/task.h"

namespace fs = std::filesystem;

namespace xformer::tasks {

namespace {

constexpr int64_t kChannels = 3;

void declare_common_keys(Schema& s) {
  declare_split_folders(s, "data/images", "images",
                        " Also one file or a wildcard pattern (`cifar-10-batches-bin/data_batch_[1-4].bin`); "
                        "CIFAR-10 binary batches (.bin) count as their 10,000 images.");
  s.add("task.size", KeyType::Int, 32, "Side of the (high-resolution) square crops, in pixels.").at_least(1);
  s.add("task.batch_size", KeyType::Int, 8, "Crops per batch.").at_least(1);
  s.add("task.crops_per_epoch", KeyType::Int, 2048, "Random training crops per epoch.").at_least(1);
  s.add("task.eval_crops", KeyType::Int, 64, "Fixed crops per evaluation (bits/dim).").at_least(1);
  s.add("task.sample_temperatures", KeyType::FloatList, json::array({0.8, 0.9, 1.0}),
        "Temperatures `xformer sample` uses when --temperature is not given.").at_least(0.001);
}

void declare_sr_keys(Schema& s) {
  declare_common_keys(s);
  s.add("task.scale", KeyType::Int, 4, "Downsampling factor of the low-resolution input (32 -> 8 by default).")
      .at_least(1);
  s.add("task.eval_samples", KeyType::Int, 4,
        "Evaluation crops super-resolved by sampling for PSNR/SSIM (0 = skip; sampling is slow).")
            .at_least(0);
  s.add("task.eval_temperature", KeyType::Float, 0.9, "Temperature of those samples.").at_least(0.001);
}

void declare_image_transformer_keys(Schema& s) {
  s.add("model.d_model", KeyType::Int, 256, "Width of the model.").at_least(1);
  s.add("model.heads", KeyType::Int, 4, "Attention heads.").at_least(1);
  s.add("model.ffn_dim", KeyType::Int, 1024, "Feed-forward inner width.").at_least(1);
  s.add("model.layers", KeyType::Int, 6, "Decoder layers.").at_least(1);
  s.add("model.encoder_layers", KeyType::Int, 0,
        "Layers of the encoder over the low-resolution image (super_resolution: at least 1; "
        "image_generation: 0).").at_least(0);
  s.add("model.aligned_conditioning", KeyType::Bool, true,
        "super_resolution: also add to each decoder input the encoder state of the low-resolution "
        "intensity under it (a direct path beside cross-attention).");
  s.add("model.dropout", KeyType::Float, 0.1, "Dropout on embeddings and residual branches.").at_least(0).below(1);
  s.add("model.attention", KeyType::String, "local2d",
        "Causal local self-attention over the channel tokens: blocks of the raster sequence (local1d) "
        "or windows of the H x (W*3) grid (local2d).",
        {"local1d", "local2d"});
  s.add("model.block_length", KeyType::Int, 256, "local1d: positions per block (each also sees the previous block).")
      .at_least(1);
  s.add("model.block_rows", KeyType::Int, 8, "local2d: query block rows.").at_least(1);
  s.add("model.block_cols", KeyType::Int, 24, "local2d: query block columns, in channel tokens (3 per pixel).")
      .at_least(1);
  s.add("model.flange_rows", KeyType::Int, 8, "local2d: memory rows above the block.").at_least(0);
  s.add("model.flange_cols", KeyType::Int, 24, "local2d: memory columns on each side, in channel tokens.")
      .at_least(0);
}

struct Crop {
  int64_t image, y, x;
};

class ImageTask : public BatchedTask {
 public:
  ImageTask(const json& config, const RunContext& ctx, bool super_resolution)
      : t_(config.at("task")), ctx_(ctx), seed_(config.at("train").at("seed").get<uint64_t>()),
        sr_(super_resolution), size_(t_.at("size")), scale_(sr_ ? t_.at("scale").get<int64_t>() : 1) {
    if (size_ < 1) throw ConfigError("config error: task.size must be >= 1");
    if (sr_ && (scale_ < 2 || size_ % scale_ != 0))
      throw ConfigError("config error: task.scale must be >= 2 and divide task.size (" + std::to_string(size_) +
                        "), got " + std::to_string(scale_));
    for (const char* k : {"batch_size", "crops_per_epoch", "eval_crops"})
      if (t_.at(k).get<int64_t>() < 1) throw ConfigError(std::string("config error: task.") + k + " must be >= 1");
    if (t_.at("sample_temperatures").empty())
      throw ConfigError("config error: task.sample_temperatures must list at least one temperature");
    const auto& m = config.at("model");
    models::ImageTransformerOptions o;
    o.height = o.width = size_, o.channels = kChannels;
    o.d_model = m.at("d_model"), o.heads = m.at("heads"), o.ffn_dim = m.at("ffn_dim"), o.layers = m.at("layers");
    o.dropout = m.at("dropout");
    o.attention = m.at("attention");
    o.block_length = m.at("block_length");
    o.local_2d = {m.at("block_rows"), m.at("block_cols"), m.at("flange_rows"), m.at("flange_cols")};
    o.encoder_layers = m.at("encoder_layers");
    o.aligned_conditioning = m.at("aligned_conditioning");
    o.lr_height = o.lr_width = size_ / scale_;
    if (sr_ && o.encoder_layers < 1)
      throw ConfigError("config error: super_resolution needs model.encoder_layers >= 1");
    if (!sr_ && o.encoder_layers != 0)
      throw ConfigError("config error: image_generation has no encoder: model.encoder_layers must be 0");
    if (o.d_model % o.heads != 0)
      throw ConfigError("config error: model.d_model " + std::to_string(o.d_model) + " is not divisible by model.heads");
    if (o.block_length < 1 || o.local_2d.rows < 1 || o.local_2d.cols < 1 || o.local_2d.flange_rows < 0 ||
        o.local_2d.flange_cols < 0)
      throw ConfigError("config error: model.block_* must be >= 1 and model.flange_* >= 0");
    // Blocks and flanges larger than the image attend exactly as the whole image does, but
    // would pad every block to their size (a 1000-column block on an 8x8 image took minutes and
    // gigabytes): they are cut to the image, S rows of S x 3 channel tokens.
    const int64_t row_tokens = size_ * kChannels;
    o.block_length = std::min(o.block_length, size_ * row_tokens);
    o.local_2d.rows = std::min(o.local_2d.rows, size_), o.local_2d.flange_rows = std::min(o.local_2d.flange_rows, size_);
    o.local_2d.cols = std::min(o.local_2d.cols, row_tokens);
    o.local_2d.flange_cols = std::min(o.local_2d.flange_cols, row_tokens);
    torch::manual_seed(seed_);
    model_ = models::ImageTransformer(o);
    model_->to(ctx_.device);
    if (ctx_.for_training) {
      train_ = load_split(Split::Train);
      eval_splits_.load_valid();
    }
  }

  std::shared_ptr<torch::nn::Module> model() override { return model_.ptr(); }

  int64_t plan_epoch(int64_t epoch) override {
    crops_ = random_crops(train_, t_.at("crops_per_epoch"), data::epoch_seed(seed_, epoch));
    return batch_count(static_cast<int64_t>(crops_.size()), t_.at("batch_size"));
  }

  Batch training_batch(int64_t index) override {
    const auto [begin, end] = batch_range(index, t_.at("batch_size"), crops_.size());
    return collate(train_, crops_, begin, end);
  }

  LossOut loss(const Batch& batch) override {
    const auto& hr = batch.tensors.at("hr");  // (B, S, S, 3)
    auto logits = model_->forward(hr, sr_ ? batch.tensors.at("lr") : torch::Tensor());  // (B, N, 256)
    auto l = nn::label_smoothed_cross_entropy(logits.reshape({-1, logits.size(-1)}), hr.reshape(-1), 0.0, -1);
    LossOut out;
    out.loss = l.loss;
    out.sample_size = static_cast<double>(hr.numel());
    out.sums["nll"] = l.nll;
    return out;
  }

  Metrics evaluate(Split split, const std::string& out_prefix) override {
    const auto& images = eval_splits_.get(split);
    const auto crops = fixed_crops(images, t_.at("eval_crops"), split);
    const int64_t size = t_.at("batch_size");
    double nll = 0, dims = 0;
    for (int64_t b = 0; b < static_cast<int64_t>(crops.size()); b += size) {
      auto batch = collate(images, crops, b, std::min<int64_t>(b + size, crops.size()));
      auto out = loss(batch);
      nll += out.sums.at("nll").item<double>();
      dims += out.sample_size;
    }
    Metrics m = {{"nll", nll / dims}, {"bits_per_dim", metrics::bits_per_dim(nll, dims)}};
    const int64_t n = sr_ ? std::min<int64_t>(t_.at("eval_samples").get<int64_t>(), static_cast<int64_t>(crops.size())) : 0;
    if (n > 0) {
      auto batch = collate(images, crops, 0, n);
      auto hr = batch.tensors.at("hr"), lr = batch.tensors.at("lr");
      auto samples = generate(lr, n, t_.at("eval_temperature"), 1);  // (n, S, S, 3)
      // SSIM is averaged over crops; PSNR comes from the mean squared error over all of them
      // (a crop reproduced exactly, e.g. flat sky, would make a per-crop average infinite).
      double ssim = 0, bssim = 0;
      std::vector<torch::Tensor> refs, outs, bics;
      for (int64_t i = 0; i < n; ++i) {
        refs.push_back(chw(hr[i])), outs.push_back(chw(samples[i]));
        bics.push_back(data::bicubic_upsample(chw(lr[i]), scale_).round());
        ssim += metrics::ssim(outs.back(), refs.back()), bssim += metrics::ssim(bics.back(), refs.back());
      }
      auto all = [](const std::vector<torch::Tensor>& v) { return torch::cat(v, 2); };  // side by side
      m["psnr"] = metrics::psnr(all(outs), all(refs)), m["ssim"] = ssim / n;
      m["bicubic_psnr"] = metrics::psnr(all(bics), all(refs)), m["bicubic_ssim"] = bssim / n;
      if (!out_prefix.empty()) write_grid(out_prefix + ".png", lr, {samples}, hr);
    }
    return m;
  }

  void sample(const SampleOptions& o) override {
    std::vector<double> temperatures = o.temperature ? std::vector<double>{*o.temperature}
                                                     : t_.at("sample_temperatures").get<std::vector<double>>();
    const fs::path out_dir = o.out.empty() ? fs::path(ctx_.run_dir) / "samples" : fs::path(o.out);
    data::check_output_folder(out_dir.string());
    data::check_output_apart_from_input(out_dir.string(), o.input);  // before reading a folder of inputs
    model_->eval();
    torch::Tensor lr, hr;  // (M, s, s, 3), (M, S, S, 3) or undefined
    int64_t inputs = 1;
    if (sr_) {
      std::tie(lr, hr) = sr_inputs(o.input);
      inputs = lr.size(0);
    }
    // Sample k of input i at temperature t, and the grid: none may be an --input file.
    auto sample_path = [&](int64_t i, double temp, int64_t k) {
      return (out_dir / ("sample_" + std::to_string(i + 1) + "_t" + format_temperature(temp) + "_" +
                         std::to_string(k + 1) + ".png")).string();
    };
    const auto grid = (out_dir / "grid.png").string();
    std::vector<std::string> outputs = {grid};
    for (double temp : temperatures)
      for (int64_t i = 0; i < inputs; ++i)
        for (int64_t k = 0; k < o.num; ++k) outputs.push_back(sample_path(i, temp, k));
    data::check_output_apart_from_input(out_dir.string(), o.input, outputs);
    fs::create_directories(out_dir);  // once the inputs have been read
    std::vector<torch::Tensor> columns;  // per temperature: (inputs * num, S, S, 3)
    for (double temp : temperatures) {
      auto rows = sr_ ? lr.repeat_interleave(o.num, 0) : torch::Tensor();
      auto out = generate(rows, inputs * o.num, temp, o.seed);
      for (int64_t i = 0; i < out.size(0); ++i) {
        data::write_png(sample_path(i / o.num, temp, i % o.num), data::to_image(chw(out[i])));
      }
      columns.push_back(out);
    }
    write_grid(grid, sr_ ? lr.repeat_interleave(o.num, 0) : torch::Tensor(), columns,
               hr.defined() ? hr.repeat_interleave(o.num, 0) : torch::Tensor());
    spdlog::info("wrote {} samples (temperatures {}) and {}", inputs * o.num * temperatures.size(),
                 fmt::format("{}", fmt::join(temperatures, ", ")), grid);
  }

 private:
  // Two decimals ("0.80") where they say it all, the shortest exact form otherwise ("1e+300"):
  // names never collide.
  static std::string format_temperature(double t) {
    const auto two = fmt::format("{:.2f}", t);
    return t < 1000 && std::stod(two) == t ? two : fmt::format("{}", t);
  }

  // (S, S, 3) intensities -> (3, S, S) float on the CPU.
  static torch::Tensor chw(const torch::Tensor& hwc) {
    return hwc.to(torch::kCPU, torch::kFloat).permute({2, 0, 1}).contiguous();
  }

  // Samples n images (n, S, S, 3) long, conditioned on lr (n, s, s, 3) for super-resolution.
  torch::Tensor generate(const torch::Tensor& lr, int64_t n, double temperature, uint64_t seed) {
    if (!(temperature > 0)) throw ConfigError("usage error: --temperature must be > 0");
    return models::sample_images(model_, lr, n, temperature, seed);
  }

  // --input for super-resolution: an image file or a folder of them. An image of the model's
  // low resolution is used as it is (no HR known); a larger one is taken as the HR picture: its
  // centre crop of task.size is downsampled. Without --input: the test split's first crops.
  std::pair<torch::Tensor, torch::Tensor> sr_inputs(const std::string& input) {
    const int64_t s = size_ / scale_;
    if (input.empty()) {
      auto test = load_split(Split::Test);
      auto crops = fixed_crops(test, 4, Split::Test);
      auto batch = collate(test, crops, 0, crops.size());
      return {batch.tensors.at("lr").cpu(), batch.tensors.at("hr").cpu()};
    }
    std::vector<torch::Tensor> lrs, hrs;
    bool all_hr = true;
    for (const auto& [f, image] : data::read_input_images(input, kChannels)) {
      auto t = data::to_tensor(image);  // (3, H, W)
      if (t.size(1) == s && t.size(2) == s) {
        lrs.push_back(t), all_hr = false;
      } else if (t.size(1) >= size_ && t.size(2) >= size_) {
        auto crop = t.narrow(1, (t.size(1) - size_) / 2, size_).narrow(2, (t.size(2) - size_) / 2, size_);
        hrs.push_back(crop);
        lrs.push_back(data::area_downsample(crop, scale_).round());
      } else {
        throw DataError("--input " + f + ": " + std::to_string(t.size(1)) + "x" + std::to_string(t.size(2)) +
                        " is neither the model's input size " + std::to_string(s) + "x" + std::to_string(s) +
                        " nor at least its output size " + std::to_string(size_));
      }
    }
    auto hwc = [](const std::vector<torch::Tensor>& v) { return torch::stack(v).permute({0, 2, 3, 1}).to(torch::kLong); };
    return {hwc(lrs), all_hr ? hwc(hrs) : torch::Tensor()};
  }

  // A grid: one row per sample, columns LR (nearest) | bicubic | samples... | HR, 2 px apart.
  void write_grid(const std::string& path, const torch::Tensor& lr, const std::vector<torch::Tensor>& columns,
                  const torch::Tensor& hr) const {
    const int64_t rows = columns.front().size(0), S = size_, gap = 2;
    const int64_t ncols = static_cast<int64_t>(columns.size()) + (lr.defined() ? 2 : 0) + (hr.defined() ? 1 : 0);
    auto grid = torch::full({3, rows * (S + gap) - gap, ncols * (S + gap) - gap}, 255.f);
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<torch::Tensor> cells;
      if (lr.defined()) {
        auto small = chw(lr[r]);
        cells.push_back(small.repeat_interleave(scale_, 1).repeat_interleave(scale_, 2));
        cells.push_back(data::bicubic_upsample(small, scale_));
      }
      for (const auto& c : columns) cells.push_back(chw(c[r]));
      if (hr.defined()) cells.push_back(chw(hr[r]));
      for (size_t c = 0; c < cells.size(); ++c)
        grid.narrow(1, r * (S + gap), S).narrow(2, static_cast<int64_t>(c) * (S + gap), S).copy_(cells[c]);
    }
    data::write_png(path, data::to_image(grid));
  }

  // n crops (image, y, x) of task.size from images at least that large, chosen by `seed`.
  std::vector<Crop> random_crops(const std::vector<data::Image>& images, int64_t n, uint64_t seed) const {
    std::mt19937_64 rng(seed);
    std::vector<Crop> crops;
    for (int64_t i = 0; i < n; ++i) {
      const auto k = static_cast<int64_t>(rng() % images.size());
      const auto& im = images[k];
      crops.push_back({k, static_cast<int64_t>(rng() % (im.height - size_ + 1)),
                       static_cast<int64_t>(rng() % (im.width - size_ + 1))});
    }
    return crops;
  }

  // The evaluation crops of a split: the same in every run.
  std::vector<Crop> fixed_crops(const std::vector<data::Image>& images, int64_t n, Split split) const {
    return random_crops(images, n, 12345 + static_cast<uint64_t>(split));
  }

  // Crops [begin, end) -> hr (B, S, S, 3) long and, for super-resolution, lr (B, s, s, 3) long.
  Batch collate(const std::vector<data::Image>& images, const std::vector<Crop>& crops, int64_t begin,
                int64_t end) const {
    const int64_t B = end - begin;
    auto hr = torch::empty({B, size_, size_, kChannels}, torch::kUInt8);
    auto a = hr.accessor<uint8_t, 4>();
    for (int64_t b = 0; b < B; ++b) {
      const auto& c = crops[begin + b];
      const auto& im = images[c.image];
      for (int64_t y = 0; y < size_; ++y)
        for (int64_t x = 0; x < size_; ++x)
          for (int64_t k = 0; k < kChannels; ++k) a[b][y][x][k] = im.at(c.y + y, c.x + x, k);
    }
    Batch batch;
    auto hr_long = hr.to(torch::kLong);
    if (sr_) {
      // Area downsampling, rounded back to intensities: (B, S, S, 3) -> (B, s, s, 3).
      auto lr = data::area_downsample(hr.permute({0, 3, 1, 2}), scale_)
                    .round().to(torch::kLong).permute({0, 2, 3, 1}).contiguous();
      batch.tensors["lr"] = to_device(lr, ctx_.device);
    }
    batch.tensors["hr"] = to_device(hr_long, ctx_.device);
    batch.n_items = B;
    batch.n_tokens = hr_long.numel();
    return batch;
  }

  std::vector<data::Image> load_split(Split split) const {
    const std::string dir = t_.at(split_name(split));
    std::vector<data::Image> images;
    int64_t skipped = 0, small = 0;
    std::string first_small;
    for (const auto& f : data::list_image_files(dir)) {
      try {
        for (auto& im : data::read_images(f, kChannels)) {
          if (im.height < size_ || im.width < size_) {
            if (first_small.empty()) first_small = f;
            ++small;
            continue;
          }
          images.push_back(std::move(im));
        }
      } catch (const Error& e) {
        spdlog::warn("skipping {}", e.what());
        ++skipped;
      }
    }
    spdlog::info("{}: {} images from {}{}{}", split_name(split), images.size(), dir,
                 skipped ? ", " + std::to_string(skipped) + " unreadable files skipped" : "",
                 small ? ", " + std::to_string(small) + " images smaller than task.size skipped (the first: " + first_small + ")"
                       : "");
    if (images.empty())
      throw DataError("task." + split_name(split) + ": no readable images of at least " + std::to_string(size_) +
                      "x" + std::to_string(size_) + " in '" + dir + "'");
    return images;
  }

  json t_;
  RunContext ctx_;
  uint64_t seed_;
  bool sr_;
  int64_t size_, scale_;
  models::ImageTransformer model_{nullptr};
  std::vector<data::Image> train_;
  EvalSplits<std::vector<data::Image>> eval_splits_{[this](Split s) { return load_split(s); }};
  std::vector<Crop> crops_;
};

}  // namespace

void register_image_tasks(Registry& registry) {
  registry.add_task({"super_resolution",
                     "Image super-resolution (Image Transformer conditioned on the low-resolution image; bits/dim, PSNR, SSIM)",
                     declare_sr_keys, [](const json& config, const RunContext& ctx) -> std::unique_ptr<Task> {
                       return std::make_unique<ImageTask>(config, ctx, true);
                     },
                     [](const json& config) {
                       std::vector<std::string> m = {"nll", "bits_per_dim"};
                       if (config["task"]["eval_samples"].get<int64_t>() > 0)
                         m.insert(m.end(), {"psnr", "ssim", "bicubic_psnr", "bicubic_ssim"});
                       return m;
                     },
                     {"--input", "--temperature", "--num", "--seed", "--out"}});
  registry.add_task({"image_generation", "Unconditional image generation (Image Transformer; bits/dim)",
                     declare_common_keys, [](const json& config, const RunContext& ctx) -> std::unique_ptr<Task> {
                       return std::make_unique<ImageTask>(config, ctx, false);
                     },
                     [](const json&) { return std::vector<std::string>{"nll", "bits_per_dim"}; },
                     {"--temperature", "--num", "--seed", "--out"}});
  registry.add_arch({"image_transformer", "Image Transformer with local 1D/2D attention (Parmar et al. 2018)",
                     {"super_resolution", "image_generation"}, declare_image_transformer_keys, /*recomputable=*/true});
}

}  // namespace xformer::tasks
