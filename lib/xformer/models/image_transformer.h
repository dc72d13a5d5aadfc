// Image Transformer (Parmar et al. 2018): images generated one channel intensity at a time.
//
// An H x W x C image is the sequence of its N = H W C intensities in raster order (row, column,
// channel). Token t is embedded by its channel's own table (C x 256 values) plus learned row,
// column and channel embeddings; the decoder reads the image shifted right by one (a start token
// first) under causal local attention, 1D (blocks of the sequence) or 2D (windows of the
// H x (W C) grid), and predicts each intensity with a 256-way softmax. The conditional variant
// (super-resolution) adds an encoder over the low-resolution image's intensities, embedded the
// same way, which every decoder layer cross-attends to.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "xformer/decode/search.h"
#include "xformer/models/transformer.h"

namespace xformer::models {

struct ImageTransformerOptions {
  int64_t height = 32, width = 32, channels = 3;  // generated image
  int64_t d_model = 256, heads = 4, ffn_dim = 1024, layers = 6;
  double dropout = 0.1;
  std::string attention = "local2d";  // local1d | local2d
  int64_t block_length = 256;          // local1d: positions per block
  nn::Local2D local_2d{8, 24, 8, 24};  // local2d: in positions of the H x (W C) grid
  int64_t encoder_layers = 0;          // > 0: conditioned on a low-resolution image
  int64_t lr_height = 8, lr_width = 8;
  // Conditional: each decoder input also gets the encoder state of the low-resolution intensity
  // under it (same channel), a direct path beside cross-attention.
  bool aligned_conditioning = true;

  int64_t positions() const { return height * width * channels; }
};

class ImageTransformerImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kValues = 256;

  explicit ImageTransformerImpl(const ImageTransformerOptions& o);

  // Low-resolution images (B, h, w, C) long -> encoder states (B, h w C, D).
  torch::Tensor encode(const torch::Tensor& lr);
  // Decoder states for the first T positions given their inputs (B, T): the previous
  // intensity, or kStart at position 0. With caches (one per layer) the inputs continue the
  // positions already cached. `memory`: encoder states (conditional) or undefined.
  torch::Tensor decode_states(const torch::Tensor& inputs, const torch::Tensor& memory,
                              std::vector<nn::KVCache>* self_caches = nullptr,
                              std::vector<nn::KVCache>* cross_caches = nullptr);
  // Images (B, H, W, C) long (and LR images when conditional) -> logits (B, N, 256) where
  // position t predicts intensity t from those before it.
  torch::Tensor forward(const torch::Tensor& images, const torch::Tensor& lr = {});
  // (B, H, W, C) -> decoder inputs (B, N): kStart then the intensities shifted right.
  torch::Tensor shifted_inputs(const torch::Tensor& images) const;
  // Encoder states (B, h w C, D) at the low-resolution intensities under positions
  // offset .. offset + T - 1 -> (B, T, D).
  torch::Tensor aligned_memory(const torch::Tensor& memory, int64_t offset, int64_t T) const;
  // Decoder states (..., D) -> logits over the 256 intensities (..., 256).
  torch::Tensor logits(const torch::Tensor& states) { return output(states); }

  const ImageTransformerOptions& options() const { return options_; }
  bool conditional() const { return options_.encoder_layers > 0; }
  int64_t start_token() const { return kValues; }

 private:
  // Embeds token ids (B, T) (rows of `values`) at positions offset .. offset + T - 1 of an
  // image w pixels wide, with the given row and column tables.
  torch::Tensor embed(const torch::Tensor& ids, int64_t offset, int64_t w, torch::nn::Embedding& rows,
                      torch::nn::Embedding& cols);

  ImageTransformerOptions options_;
  torch::nn::Embedding values{nullptr};  // (C * 256 + 1, D): per-channel intensities + start
  torch::nn::Embedding rows{nullptr}, cols{nullptr}, chans{nullptr};
  torch::nn::Embedding lr_rows{nullptr}, lr_cols{nullptr};
  torch::nn::ModuleList encoder{nullptr}, decoder{nullptr};
  torch::nn::LayerNorm encoder_norm{nullptr}, decoder_norm{nullptr};
  torch::nn::Linear output{nullptr};
};
TORCH_MODULE(ImageTransformer);

// Sampling one intensity at a time over the key/value caches (or recomputing every step). The
// token fed to step() is the previous intensity; the first step takes the start token.
class ImageTransformerStepper : public decode::IncrementalDecoder {
 public:
  // lr (B, h, w, C) long for the conditional model, else undefined.
  ImageTransformerStepper(ImageTransformer model, const torch::Tensor& lr, bool use_cache = true);
  torch::Tensor step(const torch::Tensor& tokens) override;  // (N) -> logits (N, 256)
  void reorder(const torch::Tensor& index) override;

 private:
  ImageTransformer model_;
  torch::Device device_;
  torch::Tensor memory_;
  std::vector<nn::KVCache> self_caches_, cross_caches_;
  torch::Tensor history_;  // (N, t) inputs so far, without a cache
  bool use_cache_;
};

// Samples n images (n, H, W, C) long on the CPU, one intensity per step at `temperature`
// (reproducible for a seed), conditioned on lr (n, h, w, C) for the conditional model (else
// undefined); over the key/value caches, or recomputing every step when use_cache is false.
torch::Tensor sample_images(ImageTransformer model, const torch::Tensor& lr, int64_t n, double temperature,
                            uint64_t seed, bool use_cache = true);

}  // namespace xformer::models
