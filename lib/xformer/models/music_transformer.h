// Decoder-only Transformer language model: the Music Transformer (Huang et al. 2018) with
// relative self-attention, or, as its baseline, the same stack with absolute sinusoidal positions.
//
// Shapes: B batch, T length, D d_model, V vocabulary. Layers are the shared self-attention
// layer (models/transformer.h) under a causal mask; embeddings are tied with the output.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "xformer/core/config.h"
#include "xformer/decode/search.h"
#include "xformer/models/transformer.h"

namespace xformer::models {

// Declares model.* keys of the "music_transformer" architecture.
void declare_music_transformer_keys(Schema& schema);

// model.* -> options: vocab (tgt_vocab), d_model, heads, ffn_dim, layers (decoder_layers),
// dropout, norm, and relative (max_relative_position > 0) or absolute positions.
// `length` is the training length, for max_relative_position's default (length / 2).
TransformerOptions music_transformer_options(const json& model_config, int64_t vocab, int64_t length);

class DecoderOnlyImpl : public torch::nn::Module {
 public:
  explicit DecoderOnlyImpl(const TransformerOptions& o);

  // tokens (B, T) -> final states (B, T, D). With caches (one per layer), tokens are the next
  // positions after those already cached. `weights`, when given, receives each layer's
  // attention probabilities (B, H, T, Tk).
  torch::Tensor states(const torch::Tensor& tokens, std::vector<nn::KVCache>* caches = nullptr,
                       std::vector<torch::Tensor>* weights = nullptr);
  torch::Tensor forward(const torch::Tensor& tokens);  // logits (B, T, V)
  const torch::Tensor& output_weight() const { return embed->weight; }  // (V, D), tied
  const TransformerOptions& options() const { return options_; }

 private:
  TransformerOptions options_;
  torch::nn::Embedding embed{nullptr};
  nn::PositionalEncoding positions{nullptr};  // absolute positions only
  torch::nn::ModuleList layers;
  torch::nn::LayerNorm final_norm{nullptr};  // pre-norm only
  double embed_scale_;
};
TORCH_MODULE(DecoderOnly);

// decode/'s view of a DecoderOnly: feeds a prefix once, then one token per row and step over
// the per-layer key/value caches (use_cache = false recomputes the whole history instead).
class DecoderOnlyStepper : public decode::IncrementalDecoder {
 public:
  DecoderOnlyStepper(DecoderOnly model, bool use_cache = true);
  // Feeds prefix (N, P) but its last token, which the first step() should be given.
  void prefill(const torch::Tensor& prefix);
  torch::Tensor step(const torch::Tensor& tokens) override;  // (N) -> logits (N, V)
  void reorder(const torch::Tensor& index) override;

 private:
  DecoderOnly model_;
  bool use_cache_;
  std::vector<nn::KVCache> caches_;
  torch::Tensor history_;  // (N, t) tokens fed so far, without a cache
};

}  // namespace xformer::models
