#include "xformer/models/music_transformer.h"

#include <cmath>

#include "xformer/core/error.h"
#include "xformer/nn/dropout.h"

namespace xformer::models {

namespace F = torch::nn::functional;

void declare_music_transformer_keys(Schema& s) {
  declare_layer_keys(s, "pre");
  s.add("model.layers", KeyType::Int, 6, "Decoder layers.").at_least(1);
  s.add("model.attention", KeyType::String, "relative",
        "Positions: learned relative logits in self-attention (relative, the Music Transformer) "
        "or sinusoidal absolute encodings added to the input (absolute, the baseline).",
        {"relative", "absolute"});
  s.add("model.max_relative_position", KeyType::Int, 0,
        "Farthest distance back with its own relative embedding; 0 = half the training length "
        "(with local attention: the window, 2 * local_block - 1).").at_least(0);
  s.add("model.local_block", KeyType::Int, 0,
        "Local attention for long sequences: each position attends within its block of this many "
        "positions and the previous block (memory and time linear in the length); 0 = attend to "
        "the whole sequence.").at_least(0);
  s.add("model.max_positions", KeyType::Int, 4096, "Longest sequence (absolute positions, sampling).")
      .at_least(1);
}

TransformerOptions music_transformer_options(const json& m, int64_t vocab, int64_t length) {
  TransformerOptions o;
  read_layer_keys(m, o);
  o.src_vocab = o.tgt_vocab = vocab;
  o.pad_id = 0;
  o.encoder_layers = 0, o.decoder_layers = m.at("layers");
  o.max_positions = m.at("max_positions");
  if (o.d_model % o.heads != 0)
    throw ConfigError("config error: model.d_model " + std::to_string(o.d_model) +
                      " is not divisible by model.heads " + std::to_string(o.heads));
  o.local.block = m.at("local_block");
  if (o.local.block < 0) throw ConfigError("config error: model.local_block must be >= 0");
  if (m.at("attention") == "relative") {
    const int64_t r = m.at("max_relative_position");
    if (r < 0) throw ConfigError("config error: model.max_relative_position must be >= 0");
    const int64_t fallback = o.local.block > 0 ? 2 * o.local.block - 1 : length / 2;
    o.max_relative_position = r > 0 ? r : std::max<int64_t>(1, fallback);
  } else if (o.max_positions < length) {
    throw ConfigError("config error: model.max_positions (" + std::to_string(o.max_positions) +
                      ") is shorter than task.length (" + std::to_string(length) +
                      "), the events an absolute-position model reads at once");
  }
  return o;
}

DecoderOnlyImpl::DecoderOnlyImpl(const TransformerOptions& o)
    : options_(o), embed_scale_(std::sqrt(static_cast<double>(o.d_model))) {
  embed = register_module("embed", torch::nn::Embedding(torch::nn::EmbeddingOptions(o.tgt_vocab, o.d_model)
                                                            .padding_idx(o.pad_id)));
  torch::nn::init::normal_(embed->weight, 0.0, std::pow(o.d_model, -0.5));
  {
    torch::NoGradGuard no_grad;
    embed->weight[o.pad_id].zero_();
  }
  if (o.max_relative_position == 0)
    positions = register_module("positions", nn::PositionalEncoding(o.max_positions, o.d_model, false));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.decoder_layers; ++i) layers->push_back(EncoderLayer(o));
  if (o.pre_norm)
    final_norm = register_module("final_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.d_model})));
}

torch::Tensor DecoderOnlyImpl::states(const torch::Tensor& tokens, std::vector<nn::KVCache>* caches,
                                      std::vector<torch::Tensor>* weights) {
  const int64_t offset = caches && !caches->empty() && (*caches)[0].k.defined() ? (*caches)[0].k.size(2) : 0;
  auto x = embed(tokens) * embed_scale_;  // (B, T, D)
  if (positions) x = x + positions(tokens.size(1), offset);
  x = nn::dropout(x, options_.dropout, is_training());
  nn::AttentionMask causal;
  causal.causal = true;
  if (caches) caches->resize(layers->size());
  if (weights) weights->resize(layers->size());
  for (size_t i = 0; i < layers->size(); ++i)
    x = layers[i]->as<EncoderLayer>()->forward(x, causal, caches ? &(*caches)[i] : nullptr,
                                               weights ? &(*weights)[i] : nullptr);
  return final_norm ? final_norm(x) : x;
}

torch::Tensor DecoderOnlyImpl::forward(const torch::Tensor& tokens) {
  return F::linear(states(tokens), output_weight());
}

DecoderOnlyStepper::DecoderOnlyStepper(DecoderOnly model, bool use_cache)
    : model_(std::move(model)), use_cache_(use_cache) {}

void DecoderOnlyStepper::prefill(const torch::Tensor& prefix) {
  const int64_t P = prefix.size(1);
  if (P <= 1) return;
  auto head = prefix.narrow(1, 0, P - 1);
  if (use_cache_) model_->states(head, &caches_);
  else history_ = head;
}

torch::Tensor DecoderOnlyStepper::step(const torch::Tensor& tokens) {
  auto device = model_->output_weight().device();
  auto next = tokens.to(device).unsqueeze(1);  // (N, 1)
  if (use_cache_) return F::linear(model_->states(next, &caches_).squeeze(1), model_->output_weight());
  history_ = history_.defined() ? torch::cat({history_, next}, 1) : next;
  auto all = model_->states(history_);
  return F::linear(all.select(1, all.size(1) - 1), model_->output_weight());
}

void DecoderOnlyStepper::reorder(const torch::Tensor& index) {
  auto i = index.to(model_->output_weight().device());
  for (auto& c : caches_) c.reorder(i);
  if (history_.defined()) history_ = history_.index_select(0, i);
}

}  // namespace xformer::models
