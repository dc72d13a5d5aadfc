// xformer_bench: throughput of xformer's own code paths on synthetic data, for
// scripts/bench/. Prints one JSON line per measurement on stdout.
//
//   xformer_bench train  [shape options] [--recompute]   training updates through train::Trainer
//   xformer_bench decode [shape options] --mode greedy|beam --beam K --cache on|off
//   xformer_bench attention --method plain|skew|naive|local --length L [--d-model D --heads H --device cpu|cuda]
//   xformer_bench music-sample --length L --cache on|off [shape options]
//   xformer_bench image-sample --side S --scale F --cache on|off [shape options]
//   xformer_bench sasa --method kernel|offsets|unfold|conv --side S --kernel K [--d-model C --heads N]
//   xformer_bench resnet --spatial conv|attention --side S [--d-model 4W --heads N --batch B]
//   xformer_bench loss --method fused|composed [--d-model D --vocab V --batch B --tgt-len T]
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <sys/resource.h>
#include <unistd.h>

#include "xformer_build_config.h"  // XFORMER_HAVE_CUDA
// The caching allocator's statistics give the GPU's peak memory (a LibTorch with CUDA).
#if XFORMER_HAVE_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <chrono>
#include <functional>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>

#include "xformer/core/logging.h"
#include "xformer/core/registry.h"
#include "xformer/core/remove_tree.h"
#include "xformer/core/runtime.h"
#include "xformer/data/tokenizer.h"
#include "xformer/decode/search.h"
#include "xformer/models/image_transformer.h"
#include "xformer/models/music_transformer.h"
#include "xformer/models/resnet.h"
#include "xformer/models/transformer.h"
#include "xformer/nn/attention.h"
#include "xformer/nn/local_attention.h"
#include "xformer/nn/loss.h"
#include "xformer/nn/relative_position.h"
#include "xformer/nn/sasa.h"
#include "xformer/tasks/translation.h"
#include "xformer/train/run_dir.h"
#include "xformer/train/trainer.h"

namespace fs = std::filesystem;
using namespace xformer;

namespace {

struct Shape {
  int64_t d_model = 256, heads = 4, ffn = 1024, layers = 3, vocab = 8000;
  int64_t batch = 64, src_len = 32, tgt_len = 32;
  int64_t steps = 30, warmup = 5, threads = 0, blas_threads = 0;
  double dropout = 0.1;
  std::string device = "cpu", precision = "auto";  // precision: train.precision's values
  bool recompute = false;                          // train.recompute_activations
};

// Matrix-product FLOPs of one training step (forward + backward = 3 x forward, 2 per
// multiply-add): projections, FFN, attention products (causal ones counted in full, as is
// usual for MFU) and the output projection.
double train_flops_per_step(const Shape& s) {
  const double B = s.batch, S = s.src_len, T = s.tgt_len, D = s.d_model, F = s.ffn;
  const double enc = S * (4 * D * D + 2 * D * F + 2 * S * D);
  const double dec = T * (4 * D * D + 2 * T * D + 2 * D * D + 2 * S * D + 2 * D * F) + S * 2 * D * D;
  return 6 * B * (s.layers * (enc + dec) + T * s.vocab * D);
}

models::Transformer make_model(const Shape& s) {
  models::TransformerOptions o;
  o.src_vocab = o.tgt_vocab = s.vocab;
  o.pad_id = 0;
  o.d_model = s.d_model, o.heads = s.heads, o.ffn_dim = s.ffn;
  o.encoder_layers = o.decoder_layers = s.layers;
  o.dropout = s.dropout;
  o.max_positions = std::max<int64_t>(256, std::max(s.src_len, s.tgt_len) + 2);
  return models::Transformer(o);
}

// Fixed-shape random batches (ids 4..V-1, no padding), the same every epoch.
class SyntheticTask : public Task {
 public:
  explicit SyntheticTask(const Shape& s) : shape_(s), model_(make_model(s)) {
    const torch::Device device(s.device);
    model_->to(device);
    for (int i = 0; i < 4; ++i) {
      Batch b;
      const auto ids = torch::TensorOptions(torch::kLong).device(device);
      b.tensors["source"] = torch::randint(4, s.vocab, {s.batch, s.src_len}, ids);
      b.tensors["prev_target"] = torch::randint(4, s.vocab, {s.batch, s.tgt_len}, ids);
      b.tensors["target"] = torch::randint(4, s.vocab, {s.batch, s.tgt_len}, ids);
      b.n_items = s.batch;
      b.n_tokens = s.batch * s.tgt_len;
      pool_.push_back(b);
    }
  }
  std::shared_ptr<torch::nn::Module> model() override { return model_.ptr(); }
  void begin_epoch(int64_t) override { position_ = 0; }
  std::optional<Batch> next_batch() override {
    if (position_ >= 1000000) return std::nullopt;
    return pool_[position_++ % pool_.size()];
  }
  json state() const override { return {{"position", position_}}; }
  void load_state(const json& s) override { position_ = s.at("position"); }
  LossOut loss(const Batch& b) override { return tasks::transformer_loss(model_, b, 0.1, 0); }
  Metrics evaluate(Split, const std::string&) override {  // the loss of one batch
    return {{"loss", loss(pool_[0]).loss.item<double>() / pool_[0].n_tokens}};
  }
  void sample(const SampleOptions&) override {}

 private:
  Shape shape_;
  models::Transformer model_;
  std::vector<Batch> pool_;
  int64_t position_ = 0;
};

// Resident memory now and at its peak, in MB.
double rss_mb() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1048576.0);
}
double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

// Memory that `fn` adds at its peak, in MB: the caching allocator's peak on a GPU, the growth
// of the peak resident size on the CPU (so run one configuration per process there).
class PeakMemory {
 public:
  explicit PeakMemory(const torch::Device& device) : device_(device) {
#if XFORMER_HAVE_CUDA
    if (device_.is_cuda()) {
      torch::cuda::synchronize();
      namespace alloc = c10::cuda::CUDACachingAllocator;
      before_ = alloc::getDeviceStats(device_.index()).allocated_bytes[0].current / 1048576.0;
      alloc::resetPeakStats(device_.index());
      return;
    }
#endif
    before_ = rss_mb();
  }
  // null: a CUDA device in a build without CUDA (cannot happen with a LibTorch that runs one).
  json extra_mb() const {
    if (device_.is_cuda()) {
#if XFORMER_HAVE_CUDA
      namespace alloc = c10::cuda::CUDACachingAllocator;
      return alloc::getDeviceStats(device_.index()).allocated_bytes[0].peak / 1048576.0 - before_;
#else
      return nullptr;
#endif
    }
    return peak_rss_mb() - before_;
  }

 private:
  torch::Device device_;
  double before_ = 0;
};

int bench_train(const Shape& s) {
  const std::string run = (fs::temp_directory_path() / ("xformer_bench_" + std::to_string(getpid()))).string();
  train::prepare_run_dir(run, false, true);
  RawConfig raw;
  raw.value = {{"optim", {{"lr", 5e-4}, {"schedule", "constant"}, {"warmup_steps", 0}}},
               {"train", {{"max_steps", s.warmup + s.steps}, {"log_every", 1},
                          {"eval_every", 0}, {"save_every", 0}, {"device", s.device},
                          {"precision", s.precision}, {"recompute_activations", s.recompute}}}};
  auto config = resolve(raw);
  SyntheticTask task(s);
  train::Trainer trainer(config, task, {run, false});
  const PeakMemory memory(device_for_local_rank(torch::Device(s.device), 0));
  trainer.run();
  const json peak_extra_mb = memory.extra_mb();
  // One log line per step: skip the warm-up steps, time the rest.
  const double step_tokens = static_cast<double>(s.batch * s.tgt_len);
  double seconds = 0, tokens = 0;
  std::ifstream in(run + "/metrics.jsonl");
  int64_t step = 0;
  for (std::string line; std::getline(in, line);) {
    auto j = json::parse(line);
    if (j["split"] != "train" || ++step <= s.warmup) continue;
    tokens += step_tokens;
    seconds += step_tokens / j["tokens_per_s"].get<double>();
  }
  remove_tree(run);
  int64_t params = 0;
  for (const auto& p : task.model()->parameters()) params += p.numel();
  std::cout << json{{"impl", "xformer"},   {"libtorch", TORCH_VERSION},
                    {"threads", torch::get_num_threads()}, {"steps", s.steps},
                    {"device", s.device}, {"precision", s.precision}, {"recompute", s.recompute},
                    {"peak_extra_mb", peak_extra_mb},
                    {"seconds", seconds},  {"tgt_tokens_per_s", tokens / seconds},
                    {"step_ms", 1000 * seconds / s.steps}, {"params", params},
                    {"model_tflops", train_flops_per_step(s) * s.steps / seconds / 1e12}}
                   .dump()
            << std::endl;
  return 0;
}

int bench_decode(const Shape& s, const std::string& mode, int beam, bool cache) {
  auto model = make_model(s);
  const torch::Device device(s.device);
  model->to(device);
  model->eval();
  torch::NoGradGuard no_grad;
  const Precision precision = resolve_precision(s.precision, device);  // as `sample` runs it
  AutocastScope autocast(precision, device);
  auto src = torch::randint(4, s.vocab, {s.batch, s.src_len}, torch::TensorOptions(torch::kLong).device(s.device));
  decode::SearchOptions o;
  o.max_len.assign(s.batch, s.tgt_len);
  o.beam = beam;
  o.eos = 3;  // a random model rarely emits it: every row decodes tgt_len tokens
  auto run_once = [&] {
    models::TransformerStepper stepper(model, model->encode(src), cache);
    return mode == "beam" ? decode::beam_search(stepper, s.batch, o) : decode::greedy(stepper, s.batch, o);
  };
  run_once();  // warm-up
  auto start = std::chrono::steady_clock::now();
  int64_t tokens = 0;
  for (const auto& h : run_once()) tokens += h.tokens.size() + 1;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << json{{"impl", "xformer"}, {"mode", mode}, {"beam", mode == "beam" ? beam : 1},
                    {"cache", cache}, {"precision", precision_name(precision)}, {"sentences", s.batch}, {"seconds", secs},
                    {"sentences_per_s", s.batch / secs}, {"tokens_per_s", tokens / secs}}
                   .dump()
            << std::endl;
  return 0;
}

// Runs `fn` reps + 1 times (the first warms up) and prints `fields` with the median time and
// the peak memory it added.
int print_timing(int reps, const std::function<void()>& fn, json fields,
                 const torch::Device& device = torch::kCPU) {
  const torch::Device dev = device_for_local_rank(device, 0);  // CUDA: GPU 0, made current
  PeakMemory memory(dev);
  std::vector<double> ms;
  for (int i = 0; i < reps + 1; ++i) {
    if (dev.is_cuda()) torch::cuda::synchronize();
    auto start = std::chrono::steady_clock::now();
    fn();
    if (dev.is_cuda()) torch::cuda::synchronize();
    if (i > 0) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  fields["impl"] = "xformer";
  fields["device"] = dev.str();
  fields["ms"] = ms[ms.size() / 2], fields["peak_extra_mb"] = memory.extra_mb();
  std::cout << fields.dump() << std::endl;
  return 0;
}

// The output projection and the label-smoothed loss, forward + backward, over the
// (batch x tgt_len) target positions: fused (linear_label_smoothed_cross_entropy, the
// translation loss) or composed from LibTorch's linear, log-softmax and autograd.
int bench_loss(const Shape& s, const std::string& method, int reps) {
  const int64_t N = s.batch * s.tgt_len, D = s.d_model, V = s.vocab, pad = 0;
  const double eps = 0.1;
  auto hidden = torch::randn({N, D}).requires_grad_(true);
  auto weight = (torch::randn({V, D}) * std::pow(D, -0.5)).requires_grad_(true);
  auto target = torch::randint(1, V, {N}, torch::kLong);
  target.narrow(0, 0, N / 10).fill_(pad);  // some padding, as real batches have
  auto step = [&] {
    hidden.mutable_grad() = torch::Tensor(), weight.mutable_grad() = torch::Tensor();
    auto loss = method == "fused"
                    ? nn::linear_label_smoothed_cross_entropy(hidden, weight, target, eps, pad).loss
                    : nn::label_smoothed_cross_entropy(torch::nn::functional::linear(hidden, weight), target, eps, pad).loss;
    loss.backward();
  };
  return print_timing(reps, step, {{"method", method}, {"rows", N}, {"d_model", D}, {"vocab", V}});
}

// One self-attention layer, forward + backward, at batch 1 over L positions of width D: the
// packed input projection, `attend_heads` on q, k, v (1, H, L, Dh), the output projection.
int time_attention_layer(int64_t L, int64_t D, int64_t H, int reps,
                         const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&,
                                                           const torch::Tensor&)>& attend_heads,
                         json fields, const torch::Device& device = torch::kCPU) {
  const int64_t Dh = D / H;
  auto x = torch::randn({1, L, D}, torch::TensorOptions(device).requires_grad(true));
  auto w_in = (torch::randn({3 * D, D}, device) * std::pow(D, -0.5)).requires_grad_(true);
  auto w_out = (torch::randn({D, D}, device) * std::pow(D, -0.5)).requires_grad_(true);
  auto layer = [&] {
    auto qkv = torch::nn::functional::linear(x, w_in).chunk(3, -1);
    auto heads = [&](const torch::Tensor& t) { return t.view({1, L, H, Dh}).transpose(1, 2); };
    auto out = attend_heads(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]));
    torch::nn::functional::linear(out.transpose(1, 2).reshape({1, L, D}), w_out).sum().backward();
  };
  fields["d_model"] = D, fields["heads"] = H;
  return print_timing(reps, layer, fields, device);
}

// One spatial layer of a SASA ResNet, forward + backward on (batch, C, S, S): the SASA layer
// (K x K, `heads` heads, with its q/k/v projections) by the CPU kernels, the LibTorch offset
// loop or the fully unfolded neighbourhoods, or the 3x3 convolution it replaces.
int bench_sasa(const Shape& s, const std::string& method, int64_t side, int64_t kernel, int reps) {
  const int64_t C = s.d_model, N = s.heads, dk = C / N;
  auto x = torch::randn({s.batch, C, side, side}, torch::requires_grad());
  nn::SelfAttention2d layer(nn::SelfAttention2dOptions{C, C, N, kernel, 1, 0});
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(C, C, 3).padding(1).bias(false));
  auto step = [&] {
    torch::Tensor y;
    if (method == "conv") {
      y = conv(x);
    } else if (method == "kernel") {
      y = layer(x);  // on the CPU: the kernels of sasa_cpu.h
    } else {
      auto heads = [&](const torch::Tensor& t) { return t.view({s.batch, N, dk, side, side}); };
      auto attend = method == "offsets" ? &nn::sasa_attend_offsets : &nn::sasa_attend_unfold;
      y = attend(heads(layer->query(x)) * std::pow(dk, -0.5), heads(layer->key(x)), heads(layer->value(x)),
                 layer->rel_rows, layer->rel_cols);
    }
    y.sum().backward();
  };
  return print_timing(reps, step, {{"method", method}, {"channels", C}, {"heads", N}, {"side", side},
                                   {"kernel", method == "conv" ? 3 : kernel}, {"batch", s.batch}});
}

// Training images per second of a ResNet-26 (width d_model / 4 ... with conv or SASA spatial
// layers, conv stem, small-image layout) on random (batch, 3, S, S) images, with Adam.
int bench_resnet(const Shape& s, const std::string& spatial, int64_t side, int reps) {
  models::ResNetOptions o;
  o.spatial = spatial, o.width = s.d_model / 4, o.stem_width = s.d_model / 4, o.small_images = true;
  o.heads = s.heads, o.kernel = 7, o.classes = 10;
  models::ResNet net(o);
  torch::optim::Adam adam(net->parameters(), torch::optim::AdamOptions(1e-3));
  auto x = torch::randn({s.batch, 3, side, side});
  auto labels = torch::randint(0, 10, {s.batch}, torch::kLong);
  auto step = [&] {
    adam.zero_grad();
    torch::nn::functional::cross_entropy(net(x), labels).backward();
    adam.step();
  };
  const auto stats = net->stats(side, side);
  return print_timing(reps, step, {{"model", spatial == "conv" ? "resnet26" : "sasa_resnet26"}, {"width", o.width},
                                   {"side", side}, {"batch", s.batch}, {"params", stats.parameters},
                                   {"gflops_per_image", stats.flops / 1e9}});
}

// Causal attention with plain scores, relative position logits by skewing or by the naive
// (L, L, Dh) gather, or relative local attention in blocks of `block`.
int bench_attention(const Shape& s, const std::string& method, int64_t length, int reps, int64_t block) {
  const int64_t H = s.heads, Dh = s.d_model / H, L = length;
  const double scale = 1.0 / std::sqrt(static_cast<double>(Dh));
  const torch::Device device(s.device);
  auto table = (torch::randn({H, L / 2 + 1, Dh}, device) * std::pow(Dh, -0.5)).requires_grad_(true);
  nn::AttentionMask causal;
  causal.causal = true;
  auto attend = [&](const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
    if (method == "local") return nn::local_attend(q, k, v, block, {}, table * scale, 0.0, true);
    torch::Tensor bias;
    if (method == "skew") bias = nn::relative_logits(q, table * scale, L);
    if (method == "naive") bias = nn::relative_logits_naive(q, table * scale, L);
    return nn::attend(q, k, v, causal, 0.0, true, nullptr, std::move(bias));
  };
  return time_attention_layer(L, s.d_model, H, reps, attend,
                              {{"method", method}, {"length", L}, {"block", method == "local" ? block : 0}}, device);
}

// Attention over an image's channel tokens (raster order, S x S pixels x 3 channels, the grid
// S rows by 3S columns): full causal attention, or local 2D attention in query blocks of 8 rows x
// 24 columns (8 pixels) with 8 rows / 24 columns of memory flange (the img2img shape).
int bench_image_attention(const Shape& s, const std::string& method, int64_t side, int reps) {
  const int64_t R = side, C = 3 * side;
  nn::AttentionMask causal;
  causal.causal = true;
  auto attend = [&](const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
    if (method == "local2d") return nn::local_attend_2d(q, k, v, R, C, nn::Local2D{8, 24, 8, 24}, 0.0, true);
    return nn::attend(q, k, v, causal, 0.0, true);
  };
  return time_attention_layer(R * C, s.d_model, s.heads, reps, attend,
                              {{"method", method}, {"side", side}, {"positions", R * C}});
}

// Sampling `length` events from an untrained music_transformer (relative attention, vocabulary
// 391, EOS never ends a row) for `batch` rows, over the key/value cache or recomputing.
int bench_music_sample(const Shape& s, int64_t length, bool cache) {
  models::TransformerOptions o;
  o.src_vocab = o.tgt_vocab = 391;
  o.d_model = s.d_model, o.heads = s.heads, o.ffn_dim = s.ffn, o.decoder_layers = s.layers;
  o.pre_norm = true, o.dropout = 0;
  o.max_relative_position = length / 2;
  models::DecoderOnly model(o);
  model->eval();
  torch::NoGradGuard no_grad;
  decode::SearchOptions so;
  so.bos = 1, so.eos = o.tgt_vocab;  // an id the model cannot produce
  so.max_len.assign(s.batch, length);
  auto start = std::chrono::steady_clock::now();
  models::DecoderOnlyStepper stepper(model, cache);
  auto hyps = decode::sample(stepper, s.batch, so);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int64_t events = 0;
  for (const auto& h : hyps) events += h.tokens.size();
  std::cout << json{{"impl", "xformer"}, {"model", "music_transformer"}, {"cache", cache},
                    {"length", length}, {"rows", s.batch}, {"seconds", secs},
                    {"events_per_s", events / secs}}
                   .dump()
            << std::endl;
  return 0;
}

// Sampling `batch` images of side x side pixels (3 channels) from an untrained Image Transformer
// (local 2D attention, 8 rows x 8 pixels blocks with an 8 rows / 8 pixels flange), conditioned on
// a low-resolution image side / scale wide when scale > 1, over the key/value caches or
// recomputing every step.
int bench_image_sample(const Shape& s, int64_t side, int64_t scale, bool cache) {
  models::ImageTransformerOptions o;
  o.height = o.width = side;
  o.d_model = s.d_model, o.heads = s.heads, o.ffn_dim = s.ffn, o.layers = s.layers, o.dropout = 0;
  o.encoder_layers = scale > 1 ? 1 : 0;
  o.lr_height = o.lr_width = scale > 1 ? side / scale : 1;
  models::ImageTransformer model(o);
  model->to(torch::Device(s.device));
  auto lr = scale > 1 ? torch::randint(0, 256, {s.batch, side / scale, side / scale, 3}, torch::kLong) : torch::Tensor();
  auto start = std::chrono::steady_clock::now();
  models::sample_images(model, lr, s.batch, 1.0, 1, cache);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << json{{"impl", "xformer"}, {"model", "image_transformer"}, {"cache", cache}, {"side", side},
                    {"scale", scale}, {"rows", s.batch}, {"seconds", secs},
                    {"pixels_per_s", s.batch * side * side / secs}}
                   .dump()
            << std::endl;
  return 0;
}

// SentencePiece through its helper process: `lines` sentences of ~15 words encoded one request
// per line (the reference: every call a round trip) and as one batch, then decoded as a batch.
int bench_tokenize(int64_t lines) {
  const std::string dir = (fs::temp_directory_path() / ("xformer_bench_spm_" + std::to_string(getpid()))).string();
  fs::create_directories(dir);
  std::vector<std::string> text;
  {
    static const char* const kWords[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
                                         "near", "river", "bank", "today", "house", "small", "green"};
    std::mt19937 rng(1);
    std::ofstream out(dir + "/corpus.txt");
    for (int64_t i = 0; i < lines; ++i) {
      std::string line = "Line " + std::to_string(i);
      for (int w = 0; w < 13; ++w) line += std::string(" ") + kWords[rng() % 15];
      out << line << "\n";
      text.push_back(line + ".");
    }
  }
  data::TokenizerTrainOptions o;
  o.input_files = {dir + "/corpus.txt"};
  o.model_prefix = dir + "/spm";
  o.vocab_size = 500;
  data::Tokenizer::train(o);
  const auto tok = data::Tokenizer::load(o.model_prefix + ".model");
  auto seconds = [](auto&& fn) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  size_t pieces = 0;
  const double single = seconds([&] { for (const auto& t : text) pieces += tok.encode(t).size(); });
  std::vector<std::vector<int32_t>> ids;
  const double batched = seconds([&] { ids = tok.encode_batch(text); });
  const double decoded = seconds([&] { tok.decode_batch(ids); });
  remove_tree(dir);
  const double n = static_cast<double>(lines);
  std::cout << json{{"impl", "xformer"}, {"lines", lines}, {"pieces_per_line", pieces / n},
                    {"encode_single_us", 1e6 * single / n}, {"encode_batch_us", 1e6 * batched / n},
                    {"decode_batch_us", 1e6 * decoded / n}, {"batch_speedup", single / batched}}
                   .dump()
            << std::endl;
  return 0;
}

void add_shape(CLI::App* cmd, Shape& s) {
  cmd->add_option("--d-model", s.d_model);
  cmd->add_option("--heads", s.heads);
  cmd->add_option("--ffn", s.ffn);
  cmd->add_option("--layers", s.layers);
  cmd->add_option("--vocab", s.vocab);
  cmd->add_option("--batch", s.batch);
  cmd->add_option("--src-len", s.src_len);
  cmd->add_option("--tgt-len", s.tgt_len);
  cmd->add_option("--steps", s.steps);
  cmd->add_option("--warmup", s.warmup);
  cmd->add_option("--threads", s.threads, "LibTorch threads (0 = xformer's default)");
  cmd->add_option("--blas-threads", s.blas_threads, "OpenBLAS threads (0 = xformer's default)");
  cmd->add_option("--dropout", s.dropout);
  cmd->add_option("--device", s.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--precision", s.precision, "auto, fp32, bf16 or fp16 (training)")
      ->check(CLI::IsMember({"auto", "fp32", "bf16", "fp16"}));
}

}  // namespace

int main(int argc, char** argv) {
  ensure_fast_blas_kernels(argv);
  keep_freed_memory_for_reuse();
  init_logging();
  spdlog::set_level(spdlog::level::warn);
  register_builtins();
  CLI::App app{"xformer_bench: throughput of xformer code paths on synthetic data"};
  app.require_subcommand(1);
  Shape s;
  std::string mode = "greedy";
  int beam = 4;
  std::string cache = "on";
  auto* train = app.add_subcommand("train", "Training updates per second, and the peak memory training adds");
  add_shape(train, s);
  train->add_flag("--recompute", s.recompute, "Recompute layer activations in backward (train.recompute_activations)");
  auto* dec = app.add_subcommand("decode", "Decoding sentences per second");
  add_shape(dec, s);
  dec->add_option("--mode", mode)->check(CLI::IsMember({"greedy", "beam"}));
  dec->add_option("--beam", beam);
  dec->add_option("--cache", cache)->check(CLI::IsMember({"on", "off"}));
  std::string method = "skew";
  int64_t length = 512;
  int reps = 3;
  auto* att = app.add_subcommand("attention", "One causal attention layer: time and peak memory");
  add_shape(att, s);
  int64_t block = 256;
  att->add_option("--method", method)->check(CLI::IsMember({"plain", "skew", "naive", "local"}));
  att->add_option("--block", block, "Local attention's block (--method local)");
  att->add_option("--length", length);
  att->add_option("--reps", reps);
  int64_t side = 32;
  std::string image_method = "local2d";
  auto* image = app.add_subcommand("image-attention", "Attention over an image's channel tokens: time and peak memory");
  add_shape(image, s);
  image->add_option("--method", image_method)->check(CLI::IsMember({"full", "local2d"}));
  image->add_option("--side", side, "Image side in pixels (3 channels)");
  image->add_option("--reps", reps);
  auto* music = app.add_subcommand("music-sample", "Music sampling events per second");
  add_shape(music, s);
  music->add_option("--length", length);
  music->add_option("--cache", cache)->check(CLI::IsMember({"on", "off"}));
  int64_t scale = 4;
  auto* image_sample = app.add_subcommand("image-sample", "Image sampling pixels per second");
  add_shape(image_sample, s);
  image_sample->add_option("--side", side, "Image side in pixels (3 channels)");
  image_sample->add_option("--scale", scale, "Super-resolution factor (1 = unconditional)");
  image_sample->add_option("--cache", cache)->check(CLI::IsMember({"on", "off"}));
  std::string sasa_method = "kernel", spatial = "attention";
  int64_t kernel = 7;
  auto* sasa = app.add_subcommand("sasa", "One SASA layer or 3x3 convolution: time and peak memory");
  add_shape(sasa, s);
  sasa->add_option("--method", sasa_method)->check(CLI::IsMember({"kernel", "offsets", "unfold", "conv"}));
  sasa->add_option("--side", side, "Feature map side");
  sasa->add_option("--kernel", kernel, "Neighbourhood side");
  sasa->add_option("--reps", reps);
  auto* resnet = app.add_subcommand("resnet", "ResNet-26 training step time, conv or SASA");
  add_shape(resnet, s);
  resnet->add_option("--spatial", spatial)->check(CLI::IsMember({"conv", "attention"}));
  resnet->add_option("--side", side, "Image side");
  resnet->add_option("--reps", reps);
  auto* loss = app.add_subcommand("loss", "Output projection + label-smoothed loss, fused or composed: time and peak memory");
  add_shape(loss, s);
  std::string loss_method = "fused";
  loss->add_option("--method", loss_method)->check(CLI::IsMember({"fused", "composed"}));
  loss->add_option("--reps", reps);
  int64_t lines = 20000;
  auto* tokenize = app.add_subcommand("tokenize", "SentencePiece encoding: one request per line against batches");
  tokenize->add_option("--lines", lines);
  CLI11_PARSE(app, argc, argv);
  torch::manual_seed(1);
  std::cerr << configure_threads(s.threads, s.blas_threads) << std::endl;
  allow_tf32(true);  // as train.tf32's default
  if (tokenize->parsed()) return bench_tokenize(lines);
  if (loss->parsed()) return bench_loss(s, loss_method, reps);
  if (train->parsed()) return bench_train(s);
  if (att->parsed()) return bench_attention(s, method, length, reps, block);
  if (image->parsed()) return bench_image_attention(s, image_method, side, reps);
  if (music->parsed()) return bench_music_sample(s, length, cache == "on");
  if (image_sample->parsed()) return bench_image_sample(s, side, scale, cache == "on");
  if (sasa->parsed()) return bench_sasa(s, sasa_method, side, kernel, reps);
  if (resnet->parsed()) return bench_resnet(s, spatial, side, reps);
  return bench_decode(s, mode, beam, cache == "on");
}
