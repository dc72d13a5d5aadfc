// Multi-head scaled dot-product attention, the one attention module of the zoo.
//
// Shapes: B batch, Tq query length, Tk key length, D model width, H heads, Dh = D / H.
// Projections are packed as one (3D, D) in_proj like torch::nn::MultiheadAttention, so that
// self-attention does one (B*T, D) x (D, 3D) matmul and parity tests can share its weights.
//
// Incremental decoding: a KVCache holds the keys/values seen so far (B, H, t, Dh). For
// self-attention each call appends the new positions; for cross-attention (`static_kv`) the
// encoder's keys/values are projected once and reused. Causal masking is relative to the end
// of the cache, so one step of a cached decoder equals the last row of a full recomputation.
#pragma once
#include <torch/torch.h>

#include "xformer/nn/local_window.h"

namespace xformer::nn {

struct KVCache {
  torch::Tensor k, v;  // (B, H, t, Dh); undefined until the first call
  // Appends (B, H, n, Dh) keys and values. k and v are views of buffers that grow by doubling,
  // so a step copies only its own positions (concatenating per step made a T-step decode
  // O(T^2) in copies).
  void append(const torch::Tensor& k_new, const torch::Tensor& v_new);
  // Keeps rows `index` (N') of the batch, e.g. to follow the surviving beams.
  void reorder(const torch::Tensor& index);

 private:
  torch::Tensor k_buffer_, v_buffer_;  // (B, H, capacity, Dh); k, v are their first t positions
};

struct AttentionMask {
  torch::Tensor key_padding;  // (B, Tk) bool, true = padding; may be undefined
  bool causal = false;        // query i may see keys up to (Tk - Tq) + i
  torch::Tensor blocked;      // bool, broadcastable to (B, H, Tq, Tk), true = may not attend;
                              // may be undefined (any other pattern, e.g. local 2D windows)
};

class MultiheadAttentionImpl : public torch::nn::Module {
 public:
  // max_relative_position > 0 adds learned relative position logits (causal self-attention
  // only; see relative_position.h) for distances up to that many positions back.
  // `local` restricts causal self-attention to a neighbourhood: local 1D or 2D (see
  // local_window.h and local_attention.h).
  MultiheadAttentionImpl(int64_t dim, int64_t heads, double dropout = 0.0,
                         int64_t max_relative_position = 0, LocalWindow local = {});

  // query (B, Tq, D); memory (B, Tk, D) is the key/value source: the query itself for
  // self-attention, the encoder output for cross-attention. Returns (B, Tq, D).
  // `weights`, when given, receives the attention probabilities (B, H, Tq, Tk).
  torch::Tensor forward(const torch::Tensor& query, const torch::Tensor& memory,
                        const AttentionMask& mask = {}, KVCache* cache = nullptr,
                        bool static_kv = false, torch::Tensor* weights = nullptr);

  int64_t dim() const { return dim_; }
  int64_t heads() const { return heads_; }

  torch::Tensor in_proj_weight, in_proj_bias;  // (3D, D), (3D): q, k, v stacked
  torch::nn::Linear out_proj{nullptr};
  torch::Tensor relative_table;  // (H, R + 1, Dh); undefined without relative positions

 private:
  // (B, T, D) -> (B, H, T, Dh)
  torch::Tensor split_heads(const torch::Tensor& x) const;

  // Causal local self-attention: blocks in one pass, a window of the cache per step.
  torch::Tensor local_forward(const torch::Tensor& q, const torch::Tensor& k,
                              const torch::Tensor& v, const AttentionMask& mask,
                              torch::Tensor* weights);

  int64_t dim_, heads_, head_dim_;
  LocalWindow local_;
  double dropout_;
};
TORCH_MODULE(MultiheadAttention);

// softmax(q k^T / sqrt(Dh) + bias + mask) v for q (B, H, Tq, Dh), k/v (B, H, Tk, Dh), and an
// optional additive bias broadcastable to (B, H, Tq, Tk) (e.g. relative position logits): the
// reference computation, shared by the module (when no faster kernel applies) and the tests.
torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                     const AttentionMask& mask, double dropout, bool training,
                     torch::Tensor* weights = nullptr, torch::Tensor bias = {});

}  // namespace xformer::nn
