#include "xformer/models/transformer.h"

#include <cmath>

#include "xformer/nn/dropout.h"

namespace xformer::models {

namespace F = torch::nn::functional;

void declare_layer_keys(Schema& s, const std::string& default_norm) {
  s.add("model.d_model", KeyType::Int, 512, "Model width D.").at_least(1);
  s.add("model.heads", KeyType::Int, 8, "Attention heads (D must be divisible by it).").at_least(1);
  s.add("model.ffn_dim", KeyType::Int, 2048, "Inner width of the feed-forward blocks.").at_least(1);
  s.add("model.dropout", KeyType::Float, 0.1, "Dropout on embeddings and sublayer outputs.").at_least(0).below(1);
  s.add("model.attention_dropout", KeyType::Float, 0.0, "Dropout on attention probabilities.").at_least(0).below(1);
  s.add("model.activation_dropout", KeyType::Float, 0.0, "Dropout inside the feed-forward block.")
      .at_least(0)
      .below(1);
  s.add("model.activation", KeyType::String, "relu", "Feed-forward activation.", {"relu", "gelu"});
  s.add("model.norm", KeyType::String, default_norm,
        "LayerNorm after each residual (post, the Transformer paper's) or before each sublayer (pre).",
        {"post", "pre"});
}

void read_layer_keys(const json& m, TransformerOptions& o) {
  o.d_model = m.at("d_model");
  o.heads = m.at("heads");
  o.ffn_dim = m.at("ffn_dim");
  o.dropout = m.at("dropout");
  o.attention_dropout = m.at("attention_dropout");
  o.activation_dropout = m.at("activation_dropout");
  o.activation = m.at("activation");
  o.pre_norm = m.at("norm") == "pre";
}

void declare_transformer_keys(Schema& s) {
  declare_layer_keys(s, "post");
  s.add("model.encoder_layers", KeyType::Int, 6, "Encoder layers.").at_least(1);
  s.add("model.decoder_layers", KeyType::Int, 6, "Decoder layers.").at_least(1);
  s.add("model.positions", KeyType::String, "sinusoidal", "Position encodings.",
        {"sinusoidal", "learned"});
  s.add("model.max_positions", KeyType::Int, 256, "Longest source or target sequence (tokens).").at_least(1);
  s.add("model.share_all_embeddings", KeyType::Bool, true,
        "One embedding matrix for source, target and output (needs a joint vocabulary).");
  s.add("model.share_decoder_input_output", KeyType::Bool, true,
        "Tie the target embedding and the output projection.");
}

TransformerOptions TransformerOptions::from_config(const json& m) {
  TransformerOptions o;
  read_layer_keys(m, o);
  o.encoder_layers = m.at("encoder_layers");
  o.decoder_layers = m.at("decoder_layers");
  o.learned_positions = m.at("positions") == "learned";
  o.max_positions = m.at("max_positions");
  o.share_all_embeddings = m.at("share_all_embeddings");
  o.share_decoder_input_output = m.at("share_decoder_input_output");
  return o;
}

void DecoderCache::reorder(const torch::Tensor& index) {
  for (auto& c : self_attn) c.reorder(index);
  for (auto& c : cross_attn) c.reorder(index);
}

void EncoderOut::reorder(const torch::Tensor& index) {
  states = states.index_select(0, index);
  padding = padding.index_select(0, index);
}

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t hidden, const std::string& activation,
                                 double dropout)
    : gelu_(activation == "gelu"), dropout_(dropout) {
  fc1 = register_module("fc1", torch::nn::Linear(dim, hidden));
  fc2 = register_module("fc2", torch::nn::Linear(hidden, dim));
  for (auto* fc : {&fc1, &fc2}) {
    torch::nn::init::xavier_uniform_((*fc)->weight);
    torch::nn::init::zeros_((*fc)->bias);
  }
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) {
  auto h = fc1(x);
  h = gelu_ ? torch::gelu(h) : torch::relu(h);
  h = nn::dropout(h, dropout_, is_training());
  return fc2(h);
}

namespace {
// Residual connection around `sublayer` with LayerNorm before (pre) or after (post) it.
template <typename Fn>
torch::Tensor residual(const torch::Tensor& x, torch::nn::LayerNorm& norm, bool pre_norm,
                       double dropout, bool training, Fn&& sublayer) {
  auto y = sublayer(pre_norm ? norm(x) : x);
  y = nn::dropout(y, dropout, training);
  return pre_norm ? x + y : norm(x + y);
}
}  // namespace

EncoderLayerImpl::EncoderLayerImpl(const TransformerOptions& o)
    : pre_norm_(o.pre_norm), dropout_(o.dropout) {
  self_attn = register_module("self_attn", nn::MultiheadAttention(o.d_model, o.heads, o.attention_dropout,
                                                                  o.max_relative_position, o.local));
  ffn = register_module("ffn", FeedForward(o.d_model, o.ffn_dim, o.activation, o.activation_dropout));
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.d_model})));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.d_model})));
}

torch::Tensor EncoderLayerImpl::forward(const torch::Tensor& x, const nn::AttentionMask& mask,
                                        nn::KVCache* cache, torch::Tensor* weights) {
  if (recompute() && is_training() && !cache && !weights)
    return nn::recompute_in_backward(
        [this, mask](const std::vector<torch::Tensor>& in) { return compute(in[0], mask, nullptr, nullptr); },
        {x});
  return compute(x, mask, cache, weights);
}

torch::Tensor EncoderLayerImpl::compute(const torch::Tensor& x, const nn::AttentionMask& mask,
                                        nn::KVCache* cache, torch::Tensor* weights) {
  auto h = residual(x, norm1, pre_norm_, dropout_, is_training(), [&](const torch::Tensor& in) {
    return self_attn(in, in, mask, cache, /*static_kv=*/false, weights);
  });
  return residual(h, norm2, pre_norm_, dropout_, is_training(),
                  [&](const torch::Tensor& in) { return ffn(in); });
}

DecoderLayerImpl::DecoderLayerImpl(const TransformerOptions& o)
    : pre_norm_(o.pre_norm), dropout_(o.dropout) {
  self_attn = register_module("self_attn",
                              nn::MultiheadAttention(o.d_model, o.heads, o.attention_dropout, 0, o.local));
  cross_attn = register_module("cross_attn",
                               nn::MultiheadAttention(o.d_model, o.heads, o.attention_dropout));
  ffn = register_module("ffn", FeedForward(o.d_model, o.ffn_dim, o.activation, o.activation_dropout));
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.d_model})));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.d_model})));
  norm3 = register_module("norm3", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.d_model})));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& memory,
                                        const nn::AttentionMask& memory_mask,
                                        nn::KVCache* self_cache, nn::KVCache* cross_cache) {
  if (recompute() && is_training() && !self_cache && !cross_cache)
    return nn::recompute_in_backward(
        [this, memory_mask](const std::vector<torch::Tensor>& in) {
          return compute(in[0], in[1], memory_mask, nullptr, nullptr);
        },
        {x, memory});
  return compute(x, memory, memory_mask, self_cache, cross_cache);
}

torch::Tensor DecoderLayerImpl::compute(const torch::Tensor& x, const torch::Tensor& memory,
                                        const nn::AttentionMask& memory_mask,
                                        nn::KVCache* self_cache, nn::KVCache* cross_cache) {
  nn::AttentionMask causal;
  causal.causal = true;
  auto h = residual(x, norm1, pre_norm_, dropout_, is_training(), [&](const torch::Tensor& in) {
    return self_attn(in, in, causal, self_cache);
  });
  h = residual(h, norm2, pre_norm_, dropout_, is_training(), [&](const torch::Tensor& in) {
    return cross_attn(in, memory, memory_mask, cross_cache, /*static_kv=*/true);
  });
  return residual(h, norm3, pre_norm_, dropout_, is_training(),
                  [&](const torch::Tensor& in) { return ffn(in); });
}

TransformerImpl::TransformerImpl(const TransformerOptions& o)
    : options_(o), embed_scale_(std::sqrt(static_cast<double>(o.d_model))) {
  TORCH_CHECK(!o.share_all_embeddings || o.src_vocab == o.tgt_vocab,
              "share_all_embeddings needs one joint vocabulary");
  auto make_embedding = [&](int64_t vocab) {
    auto e = torch::nn::Embedding(torch::nn::EmbeddingOptions(vocab, o.d_model).padding_idx(o.pad_id));
    torch::nn::init::normal_(e->weight, 0.0, std::pow(o.d_model, -0.5));
    torch::NoGradGuard no_grad;
    e->weight[o.pad_id].zero_();
    return e;
  };
  src_embed = register_module("src_embed", make_embedding(o.src_vocab));
  tgt_embed = o.share_all_embeddings ? src_embed
                                     : register_module("tgt_embed", make_embedding(o.tgt_vocab));
  if (o.share_decoder_input_output) {
    output_weight_ = tgt_embed->weight;
  } else {
    output_weight_ = register_parameter("output_weight", torch::empty({o.tgt_vocab, o.d_model}));
    torch::nn::init::normal_(output_weight_, 0.0, std::pow(o.d_model, -0.5));
  }
  positions = register_module("positions",
                              nn::PositionalEncoding(o.max_positions, o.d_model, o.learned_positions));
  encoder_layers = register_module("encoder_layers", torch::nn::ModuleList());
  decoder_layers = register_module("decoder_layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.encoder_layers; ++i) encoder_layers->push_back(EncoderLayer(o));
  for (int64_t i = 0; i < o.decoder_layers; ++i) decoder_layers->push_back(DecoderLayer(o));
  if (o.pre_norm) {
    encoder_norm = register_module("encoder_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.d_model})));
    decoder_norm = register_module("decoder_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.d_model})));
  }
}

torch::Tensor TransformerImpl::embed(torch::nn::Embedding& table, const torch::Tensor& tokens,
                                     int64_t offset) {
  auto x = table(tokens) * embed_scale_ + positions(tokens.size(1), offset);  // (B, T, D)
  return nn::dropout(x, options_.dropout, is_training());
}

EncoderOut TransformerImpl::encode(const torch::Tensor& src_tokens) {
  EncoderOut out;
  out.padding = src_tokens.eq(options_.pad_id);
  nn::AttentionMask mask;
  mask.key_padding = out.padding;
  auto x = embed(src_embed, src_tokens, 0);
  for (auto& layer : *encoder_layers) x = layer->as<EncoderLayer>()->forward(x, mask);
  out.states = options_.pre_norm ? encoder_norm(x) : x;
  return out;
}

torch::Tensor TransformerImpl::decode(const torch::Tensor& prev_tokens, const EncoderOut& encoder,
                                      DecoderCache* cache) {
  return F::linear(decode_states(prev_tokens, encoder, cache), output_weight_);  // (B, T, V)
}

torch::Tensor TransformerImpl::decode_states(const torch::Tensor& prev_tokens,
                                             const EncoderOut& encoder, DecoderCache* cache) {
  const int64_t offset = cache ? cache->length : 0;
  nn::AttentionMask memory_mask;
  memory_mask.key_padding = encoder.padding;
  auto x = embed(tgt_embed, prev_tokens, offset);
  for (size_t i = 0; i < decoder_layers->size(); ++i) {
    x = decoder_layers[i]->as<DecoderLayer>()->forward(
        x, encoder.states, memory_mask, cache ? &cache->self_attn[i] : nullptr,
        cache ? &cache->cross_attn[i] : nullptr);
  }
  if (options_.pre_norm) x = decoder_norm(x);
  if (cache) cache->length += prev_tokens.size(1);
  return x;
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& src_tokens,
                                       const torch::Tensor& prev_tokens) {
  return decode(prev_tokens, encode(src_tokens));
}

DecoderCache TransformerImpl::make_cache() const {
  DecoderCache cache;
  cache.self_attn.resize(options_.decoder_layers);
  cache.cross_attn.resize(options_.decoder_layers);
  return cache;
}

TransformerStepper::TransformerStepper(Transformer model, EncoderOut encoder, bool use_cache)
    : model_(std::move(model)), encoder_(std::move(encoder)), cache_(model_->make_cache()),
      use_cache_(use_cache) {}

torch::Tensor TransformerStepper::step(const torch::Tensor& tokens) {
  auto device = encoder_.states.device();
  auto next = tokens.to(device).unsqueeze(1);  // (N, 1)
  if (use_cache_) return model_->decode(next, encoder_, &cache_).squeeze(1);
  history_ = history_.defined() ? torch::cat({history_, next}, 1) : next;
  return model_->decode(history_, encoder_).select(1, history_.size(1) - 1);
}

void TransformerStepper::reorder(const torch::Tensor& index) {
  auto i = index.to(encoder_.states.device());
  encoder_.reorder(i);
  cache_.reorder(i);
  if (history_.defined()) history_ = history_.index_select(0, i);
}

}  // namespace xformer::models
