// Stand-alone self-attention for images (Ramachandran et al. 2019, "SASA"): every pixel's query
// attends to the keys of its K x K neighbourhood, with 2D relative position logits.
//
// For query pixel (i, j) and neighbour (a, b) of head n:
//   logit = q_ij . k_ab + q_ij[row half] . r_row[a - i] + q_ij[column half] . r_col[b - j]
// softmax over the neighbourhood (neighbours outside the image are masked out), output
// sum_ab p_ab v_ab. The relative embedding of a head's dk channels is split into a row offset
// part (the first dk / 2) and a column offset part (the rest); the tables are shared by the heads.
// Neighbourhood offsets run from -(K / 2) to K - 1 - K / 2 (centred for odd K).
//
// On the CPU, kernels that walk each image row once (sasa_cpu.h); elsewhere a loop over the K^2
// offsets with shifted views of the padded keys and values. Either way the extra memory is the
// (B, N, K^2, H, W) attention weights, not the K^2-times-larger unfolded neighbourhoods
// (`sasa_attend_unfold`, kept as the benchmark's reference).
#pragma once
#include <torch/torch.h>

namespace xformer::nn {

// q, k (B, N, dk, H, W), v (B, N, dv, H, W), rel_rows (K, dk / 2), rel_cols (K, dk - dk / 2)
// -> (B, N, dv, H, W). q is used as given (scale it beforehand). `value_mix` (K, K, M) with
// v (B, N, M, dv, H, W): the attention stem's spatially aware values, neighbour (a, b) using
// sum_m value_mix[a][b][m] v[m].
torch::Tensor sasa_attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                          const torch::Tensor& rel_rows, const torch::Tensor& rel_cols,
                          const torch::Tensor& value_mix = {});

// The same without value mixtures as LibTorch ops on any device: a loop over the K^2 offsets
// with shifted views of the padded keys and values and a hand-written backward that adds each
// neighbour's gradient in place. sasa_attend uses it off the CPU (or for other dtypes) and the
// CPU kernels (sasa_cpu.h) on it.
torch::Tensor sasa_attend_offsets(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const torch::Tensor& rel_rows, const torch::Tensor& rel_cols);

// The same result from the neighbourhoods unfolded in full ((B, N, d, H, W, K, K) products):
// simple, K^2 times the memory. No value mixtures.
torch::Tensor sasa_attend_unfold(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 const torch::Tensor& rel_rows, const torch::Tensor& rel_cols);

struct SelfAttention2dOptions {
  int64_t in_channels = 64, out_channels = 64;
  int64_t heads = 8, kernel = 7;
  int64_t stride = 1;          // > 1: average pooling (stride x stride) after the attention
  int64_t value_mixtures = 0;  // > 0: the attention stem's spatially aware values (m in the paper)
};

// The layer: 1x1 query/key/value projections (no bias), `heads` heads, relative embeddings.
// (B, in, H, W) -> (B, out, H / stride, W / stride).
class SelfAttention2dImpl : public torch::nn::Module {
 public:
  explicit SelfAttention2dImpl(const SelfAttention2dOptions& o);
  torch::Tensor forward(const torch::Tensor& x);
  const SelfAttention2dOptions& options() const { return options_; }

  torch::nn::Conv2d query{nullptr}, key{nullptr}, value{nullptr};
  torch::Tensor rel_rows, rel_cols;
  // Attention stem: mixture logits (emb_row(a) + emb_col(b)) . mix_m, softmax over m.
  torch::Tensor mix_rows, mix_cols, mix;

 private:
  SelfAttention2dOptions options_;
};
TORCH_MODULE(SelfAttention2d);

}  // namespace xformer::nn
