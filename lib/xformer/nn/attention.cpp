#include "xformer/nn/attention.h"

#include <torch/version.h>

#include <cmath>

#include "xformer/nn/batched_matmul.h"
#include "xformer/nn/dropout.h"
#include "xformer/nn/local_attention.h"
#include "xformer/nn/relative_position.h"

namespace xformer::nn {

namespace F = torch::nn::functional;

void KVCache::append(const torch::Tensor& k_new, const torch::Tensor& v_new) {
  const int64_t t = k.defined() ? k.size(2) : 0, n = k_new.size(2);
  const bool fits = k_buffer_.defined() && k.defined() && k.is_alias_of(k_buffer_) &&
                    k_buffer_.size(0) == k_new.size(0) && t + n <= k_buffer_.size(2);
  if (!fits) {
    const int64_t capacity = std::max<int64_t>(2 * (t + n), 16);
    auto grow = [&](const torch::Tensor& old, const torch::Tensor& like) {
      auto sizes = like.sizes().vec();
      sizes[2] = capacity;
      auto buffer = torch::empty(sizes, like.options());
      if (t > 0) buffer.narrow(2, 0, t).copy_(old);
      return buffer;
    };
    k_buffer_ = grow(k, k_new);
    v_buffer_ = grow(v, v_new);
  }
  k_buffer_.narrow(2, t, n).copy_(k_new);
  v_buffer_.narrow(2, t, n).copy_(v_new);
  k = k_buffer_.narrow(2, 0, t + n);
  v = v_buffer_.narrow(2, 0, t + n);
}

void KVCache::reorder(const torch::Tensor& index) {
  if (k_buffer_.defined() && k.defined() && k.is_alias_of(k_buffer_)) {
    const int64_t t = k.size(2);
    k_buffer_ = k_buffer_.index_select(0, index);
    v_buffer_ = v_buffer_.index_select(0, index);
    k = k_buffer_.narrow(2, 0, t);
    v = v_buffer_.narrow(2, 0, t);
    return;
  }
  if (k.defined()) k = k.index_select(0, index);
  if (v.defined()) v = v.index_select(0, index);
}

MultiheadAttentionImpl::MultiheadAttentionImpl(int64_t dim, int64_t heads, double dropout,
                                               int64_t max_relative_position, LocalWindow local)
    : dim_(dim), heads_(heads), head_dim_(dim / heads), local_(local), dropout_(dropout) {
  TORCH_CHECK(local.block >= 0 && local.grid_cols >= 0 && !(local.block > 0 && local.grid_cols > 0),
              "local attention: a 1D block or a 2D grid width (not both), got ", local.block, " and ",
              local.grid_cols);
  TORCH_CHECK(!(local.grid_cols > 0 && max_relative_position > 0),
              "relative positions are not implemented for local 2D attention");
  TORCH_CHECK(dim % heads == 0, "attention width ", dim, " is not divisible by ", heads, " heads");
  TORCH_CHECK(max_relative_position >= 0, "max_relative_position must be >= 0, got ",
              max_relative_position);
  if (max_relative_position > 0) {
    relative_table = register_parameter(
        "relative_table", torch::randn({heads, max_relative_position + 1, head_dim_}) *
                              std::pow(static_cast<double>(head_dim_), -0.5));
  }
  in_proj_weight = register_parameter("in_proj_weight", torch::empty({3 * dim, dim}));
  in_proj_bias = register_parameter("in_proj_bias", torch::zeros({3 * dim}));
  out_proj = register_module("out_proj", torch::nn::Linear(dim, dim));
  torch::nn::init::xavier_uniform_(in_proj_weight);
  torch::nn::init::xavier_uniform_(out_proj->weight);
  torch::nn::init::zeros_(out_proj->bias);
}

torch::Tensor MultiheadAttentionImpl::split_heads(const torch::Tensor& x) const {
  return x.view({x.size(0), x.size(1), heads_, head_dim_}).transpose(1, 2);
}

torch::Tensor MultiheadAttentionImpl::forward(const torch::Tensor& query,
                                              const torch::Tensor& memory,
                                              const AttentionMask& mask, KVCache* cache,
                                              bool static_kv, torch::Tensor* weights) {
  const int64_t B = query.size(0), Tq = query.size(1), D = dim_;
  torch::Tensor q, k, v;
  const bool self_attention = query.is_same(memory);
  if (self_attention) {
    auto qkv = F::linear(query, in_proj_weight, in_proj_bias).chunk(3, -1);
    q = qkv[0], k = split_heads(qkv[1]), v = split_heads(qkv[2]);
  } else {
    q = F::linear(query, in_proj_weight.narrow(0, 0, D), in_proj_bias.narrow(0, 0, D));
    if (!(static_kv && cache && cache->k.defined())) {
      auto kv = F::linear(memory, in_proj_weight.narrow(0, D, 2 * D),
                          in_proj_bias.narrow(0, D, 2 * D))
                    .chunk(2, -1);
      k = split_heads(kv[0]), v = split_heads(kv[1]);
    }
  }
  q = split_heads(q);
  if (cache) {
    if (static_kv) {
      if (cache->k.defined()) k = cache->k, v = cache->v;
      else cache->k = k, cache->v = v;
    } else {
      cache->append(k, v);
      k = cache->k, v = cache->v;
    }
  }
  if (local_.enabled()) {
    TORCH_CHECK(self_attention && mask.causal && !mask.blocked.defined(),
                "local attention is for causal self-attention only, without a blocked pattern");
    auto out = local_forward(q, k, v, mask, weights);  // (B, H, Tq, Dh)
    return out_proj(out.transpose(1, 2).reshape({B, Tq, D}));
  }
  torch::Tensor bias;  // (B, H, Tq, Tk) relative position logits, scaled like q k^T
  if (relative_table.defined()) {
    TORCH_CHECK(self_attention && mask.causal,
                "relative position attention is implemented for causal self-attention only");
    bias = relative_logits(q, relative_table / std::sqrt(static_cast<double>(head_dim_)), k.size(2));
  }
  auto out = attend(q, k, v, mask, dropout_, is_training(), weights, std::move(bias));  // (B, H, Tq, Dh)
  out = out.transpose(1, 2).reshape({B, Tq, D});
  return out_proj(out);
}

torch::Tensor MultiheadAttentionImpl::local_forward(const torch::Tensor& q, const torch::Tensor& k,
                                                    const torch::Tensor& v, const AttentionMask& mask,
                                                    torch::Tensor* weights) {
  torch::Tensor table;  // scaled like q k^T
  if (relative_table.defined()) table = relative_table / std::sqrt(static_cast<double>(head_dim_));
  const int64_t Tq = q.size(2), Tk = k.size(2);
  TORCH_CHECK(Tq == Tk || Tq == 1,
              "local attention with a key/value cache takes one position per call, got ", Tq);
  if (local_.grid_cols > 0) {
    TORCH_CHECK(!weights && !mask.key_padding.defined(),
                "local 2D attention reports no weights and takes no key padding");
    const int64_t C = local_.grid_cols;
    if (Tq == 1) {  // a cached step: the keys of the new position's window
      const auto keys = local_2d_keys(Tk - 1, (Tk - 1) / C + 1, C, local_.shape);
      auto index = torch::tensor(keys, torch::TensorOptions(torch::kLong)).to(k.device());
      return attend(q, k.index_select(2, index), v.index_select(2, index), {}, dropout_, is_training());
    }
    // Whole rows: a prefix is padded with positions after all of its own (which none can see).
    const int64_t R = (Tk + C - 1) / C, pad = R * C - Tk;
    auto rows = [&](const torch::Tensor& x) { return torch::constant_pad_nd(x, {0, 0, 0, pad}); };
    return local_attend_2d(rows(q), rows(k), rows(v), R, C, local_.shape, dropout_, is_training())
        .narrow(2, 0, Tk);
  }
  if (Tq == Tk)
    return local_attend(q, k, v, local_.block, mask.key_padding, table, dropout_, is_training(), weights);
  // A cached step: the new position's window of the cache.
  const int64_t start = local_window_start(Tk - 1, local_.block), window = Tk - start;
  AttentionMask m;
  m.causal = true;
  if (mask.key_padding.defined()) {  // the query itself always visible, as in local_attend
    m.key_padding = mask.key_padding.narrow(1, start, window).clone();
    m.key_padding.select(1, window - 1).fill_(false);
  }
  torch::Tensor bias;
  if (table.defined()) bias = relative_logits(q, table, window);
  auto out = attend(q, k.narrow(2, start, window), v.narrow(2, start, window), m, dropout_,
                    is_training(), weights, std::move(bias));
  if (weights) *weights = torch::constant_pad_nd(*weights, {start, 0});  // (B, H, 1, Tk)
  return out;
}

torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                     const AttentionMask& mask, double dropout, bool training,
                     torch::Tensor* weights, torch::Tensor bias) {
  const int64_t Tq = q.size(2), Tk = k.size(2);
  // A causal step with a single query at the end of the cache sees every key: no mask needed.
  const bool causal = mask.causal && !(Tq == 1);
#if TORCH_VERSION_MAJOR >= 2
  // LibTorch 2.x: the fused kernel (flash / memory-efficient on CUDA) when no weights are asked.
  if (!weights) {
    // Square causal attention without padding or bias: the flash kernel's own causal mode (its
    // is_causal aligns the mask top-left, right only when Tq == Tk).
    if (causal && Tq == Tk && !mask.key_padding.defined() && !mask.blocked.defined() && !bias.defined())
      return at::scaled_dot_product_attention(q, k, v, c10::nullopt, training ? dropout : 0.0,
                                              /*is_causal=*/true);
    // Boolean mask, true = may attend: (B, 1, 1, Tk) padding and/or (Tq, Tk) causal.
    torch::Tensor keep;
    if (mask.key_padding.defined())
      keep = mask.key_padding.logical_not().view({q.size(0), 1, 1, Tk});
    if (causal) {
      auto c = torch::ones({Tq, Tk}, q.options().dtype(torch::kBool)).tril(Tk - Tq);
      keep = keep.defined() ? keep.logical_and(c) : c;
    }
    if (mask.blocked.defined()) {
      auto open = mask.blocked.logical_not();
      keep = keep.defined() ? keep.logical_and(open) : open;
    }
    c10::optional<torch::Tensor> attn_mask;
    if (bias.defined())  // an additive float mask: the bias, -inf where not allowed
      attn_mask = keep.defined() ? bias.masked_fill(keep.logical_not(), -INFINITY) : bias;
    else if (keep.defined())
      attn_mask = keep;
    return at::scaled_dot_product_attention(q, k, v, attn_mask, training ? dropout : 0.0,
                                            /*is_causal=*/false);
  }
#endif
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto scores = batched_matmul(q * scale, k.transpose(-2, -1));  // (B, H, Tq, Tk)
  // In place on the fresh scores, and the bias released once added: with relative positions
  // the layer then holds one (B, H, Tq, Tk) tensor fewer at its peak.
  if (bias.defined()) scores.add_(bias), bias = torch::Tensor();
  if (mask.key_padding.defined())
    scores.masked_fill_(mask.key_padding.view({q.size(0), 1, 1, Tk}),
                        -std::numeric_limits<float>::infinity());
  if (causal) {
    auto future = torch::ones({Tq, Tk}, q.options().dtype(torch::kBool)).triu(Tk - Tq + 1);
    scores.masked_fill_(future, -std::numeric_limits<float>::infinity());
  }
  if (mask.blocked.defined()) scores.masked_fill_(mask.blocked, -std::numeric_limits<float>::infinity());
  auto probs = torch::softmax(scores, -1);
  if (weights) *weights = probs;
  probs = nn::dropout(probs, dropout, training);
  return batched_matmul(probs, v);
}

}  // namespace xformer::nn
