// The encoder-decoder Transformer of Vaswani et al. 2017 ("Attention Is All You Need").
//
// Shapes: B batch, S source length, T target length, D d_model, V vocabulary.
// Options cover the paper's base/big presets and the usual variants: pre- or post-norm,
// relu/gelu, sinusoidal or learned positions, tied embeddings. The decoder has an incremental
// mode (DecoderCache) so that greedy, beam search and sampling run one token at a time.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "xformer/core/config.h"
#include "xformer/decode/search.h"
#include "xformer/nn/attention.h"
#include "xformer/nn/positions.h"
#include "xformer/nn/recompute.h"

namespace xformer::models {

struct TransformerOptions {
  int64_t src_vocab = 0, tgt_vocab = 0, pad_id = 0;
  int64_t d_model = 512, heads = 8, ffn_dim = 2048;
  int64_t encoder_layers = 6, decoder_layers = 6;
  double dropout = 0.1, attention_dropout = 0.0, activation_dropout = 0.0;
  std::string activation = "relu";  // relu | gelu
  bool pre_norm = false;
  bool learned_positions = false;
  int64_t max_positions = 1024;
  bool share_all_embeddings = true;        // one matrix for source, target and output
  bool share_decoder_input_output = true;  // target embedding == output projection
  // > 0: learned relative position logits in (causal) self-attention, distances up to this far
  // back (decoder-only models; see nn/relative_position.h).
  int64_t max_relative_position = 0;
  // Causal self-attention restricted to a local 1D or 2D neighbourhood (decoders; see
  // nn/local_window.h). Off by default.
  nn::LocalWindow local;

  static TransformerOptions from_config(const json& model_config);
};

// Declares model.* keys of the "transformer" architecture.
void declare_transformer_keys(Schema& schema);

// The keys every architecture built from these layers shares (width, heads, feed-forward,
// dropouts, activation, norm), and reading them into options.
void declare_layer_keys(Schema& schema, const std::string& default_norm);
void read_layer_keys(const json& model_config, TransformerOptions& options);

// Per-layer key/value caches of an incremental decoder. reorder() follows surviving beams.
struct DecoderCache {
  std::vector<nn::KVCache> self_attn, cross_attn;
  int64_t length = 0;  // target positions already decoded
  void reorder(const torch::Tensor& index);
};

class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(int64_t dim, int64_t hidden, const std::string& activation, double dropout);
  torch::Tensor forward(const torch::Tensor& x);  // (..., D) -> (..., D)

 private:
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  bool gelu_;
  double dropout_;
};
TORCH_MODULE(FeedForward);

// Self-attention + feed-forward: the encoder's layer, and with a causal mask (and optionally a
// key/value cache) the layer of decoder-only models. With set_recompute(true), training keeps
// only the layer's input for backward (nn/recompute.h).
class EncoderLayerImpl : public torch::nn::Module, public nn::Recomputable {
 public:
  explicit EncoderLayerImpl(const TransformerOptions& o);
  // `weights`, when given, receives the self-attention probabilities (B, H, T, Tk).
  torch::Tensor forward(const torch::Tensor& x, const nn::AttentionMask& mask,
                        nn::KVCache* cache = nullptr, torch::Tensor* weights = nullptr);

 private:
  torch::Tensor compute(const torch::Tensor& x, const nn::AttentionMask& mask, nn::KVCache* cache,
                        torch::Tensor* weights);

  nn::MultiheadAttention self_attn{nullptr};
  FeedForward ffn{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  bool pre_norm_;
  double dropout_;
};
TORCH_MODULE(EncoderLayer);

class DecoderLayerImpl : public torch::nn::Module, public nn::Recomputable {
 public:
  explicit DecoderLayerImpl(const TransformerOptions& o);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& memory,
                        const nn::AttentionMask& memory_mask, nn::KVCache* self_cache,
                        nn::KVCache* cross_cache);

 private:
  torch::Tensor compute(const torch::Tensor& x, const torch::Tensor& memory,
                        const nn::AttentionMask& memory_mask, nn::KVCache* self_cache,
                        nn::KVCache* cross_cache);

  nn::MultiheadAttention self_attn{nullptr}, cross_attn{nullptr};
  FeedForward ffn{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  bool pre_norm_;
  double dropout_;
};
TORCH_MODULE(DecoderLayer);

// Encoder output and its padding mask, what the decoder attends to.
struct EncoderOut {
  torch::Tensor states;   // (B, S, D)
  torch::Tensor padding;  // (B, S) bool, true = padding
  void reorder(const torch::Tensor& index);
};

class TransformerImpl : public torch::nn::Module {
 public:
  explicit TransformerImpl(const TransformerOptions& options);

  EncoderOut encode(const torch::Tensor& src_tokens);  // (B, S) -> states (B, S, D)
  // prev_tokens (B, T) -> logits (B, T, V). With a cache, prev_tokens are the new positions
  // only (usually T = 1) and the cache grows by T.
  torch::Tensor decode(const torch::Tensor& prev_tokens, const EncoderOut& encoder,
                       DecoderCache* cache = nullptr);
  // decode() without the output projection: the decoder's final states (B, T, D), for losses
  // that fuse the projection (nn::linear_label_smoothed_cross_entropy).
  torch::Tensor decode_states(const torch::Tensor& prev_tokens, const EncoderOut& encoder,
                              DecoderCache* cache = nullptr);
  // (V, D): logits = states · output_weight()ᵀ (no bias).
  const torch::Tensor& output_weight() const { return output_weight_; }
  torch::Tensor forward(const torch::Tensor& src_tokens, const torch::Tensor& prev_tokens);

  DecoderCache make_cache() const;
  const TransformerOptions& options() const { return options_; }

 private:
  torch::Tensor embed(torch::nn::Embedding& table, const torch::Tensor& tokens, int64_t offset);

  TransformerOptions options_;
  torch::nn::Embedding src_embed{nullptr}, tgt_embed{nullptr};
  torch::Tensor output_weight_;  // (V, D): tgt_embed's weight when tied, else its own parameter
  nn::PositionalEncoding positions{nullptr};
  torch::nn::ModuleList encoder_layers, decoder_layers;
  torch::nn::LayerNorm encoder_norm{nullptr}, decoder_norm{nullptr};  // pre-norm only
  double embed_scale_;
};
TORCH_MODULE(Transformer);

// The decoder as decode/ drives it: one token per row and step over the key/value cache, or,
// with use_cache = false, by recomputing the whole prefix each step (the reference the cache is
// tested and benchmarked against).
class TransformerStepper : public decode::IncrementalDecoder {
 public:
  TransformerStepper(Transformer model, EncoderOut encoder, bool use_cache = true);
  torch::Tensor step(const torch::Tensor& tokens) override;  // (N) -> logits (N, V)
  void reorder(const torch::Tensor& index) override;

 private:
  Transformer model_;
  EncoderOut encoder_;
  DecoderCache cache_;
  bool use_cache_;
  torch::Tensor history_;  // (N, t) tokens so far, without a cache
};

}  // namespace xformer::models
