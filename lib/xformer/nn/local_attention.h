// Causal local attention (Image Transformer "local 1D"; Music Transformer relative local
// attention): positions are split into blocks of `block` queries, and each query sees the keys
// of its own block up to itself plus the whole previous block. Cost grows as L * 2 * block
// instead of L^2, so sequences far longer than a full attention matrix allows fit.
//
// Blocks are folded into the batch: the queries of block n (block positions) attend to the
// window [previous block, block n] (2 * block keys) with the ordinary causal rule "query i of Tq
// sees keys up to (Tk - Tq) + i", the first block's missing predecessor masked as padding. Relative
// position logits (skewing) then apply per window unchanged, since the queries are the last Tq of
// the window's Tk positions, the layout relative_logits expects.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "xformer/nn/attention.h"
#include "xformer/nn/local_window.h"

namespace xformer::nn {

// q, k, v (B, H, L, Dh), all L positions (no cache). key_padding (B, L) may be undefined; a
// query always sees its own position, padding or not (a padded query needs some key).
// relative_table (H, R + 1, Dh), scaled like q k^T, may be undefined. `weights`, when given,
// receives the probabilities laid out as (B, H, L, L), zero outside each window (for
// inspection; O(L^2)). Returns (B, H, L, Dh).
torch::Tensor local_attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                           int64_t block, const torch::Tensor& key_padding,
                           const torch::Tensor& relative_table, double dropout, bool training,
                           torch::Tensor* weights = nullptr);

// First key a query at absolute position `position` may see: the start of the previous block.
inline int64_t local_window_start(int64_t position, int64_t block) {
  return std::max<int64_t>(0, (position / block - 1) * block);
}

// Causal local 2D attention (Image Transformer "local 2D") over an (R, C) grid of positions
// in raster order, in query blocks with a memory flange (see Local2D in local_window.h).
// q, k, v (B, H, R * C, Dh) in raster order. Returns (B, H, R * C, Dh). Blocks are folded into
// the batch with their windows (memory O(R C (rows + flange_rows)(cols + 2 flange_cols) /
// (rows cols)) per channel, linear in the pixels).
torch::Tensor local_attend_2d(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              int64_t R, int64_t C, const Local2D& shape, double dropout, bool training);

// The keys (raster indices, ascending) that the query at raster `position` of an (R, C) grid
// sees under local_attend_2d: what one cached sampling step attends to.
std::vector<int64_t> local_2d_keys(int64_t position, int64_t R, int64_t C, const Local2D& shape);

}  // namespace xformer::nn
