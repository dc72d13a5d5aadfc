#include "xformer/nn/local_attention.h"

#include <vector>

#include "xformer/nn/relative_position.h"

namespace xformer::nn {

namespace {

// (B, H, L, Dh) -> (B, H, n * block, Dh), zero rows appended.
torch::Tensor pad_positions(const torch::Tensor& x, int64_t padded) {
  const int64_t L = x.size(2);
  if (padded == L) return x;
  return torch::cat({x, torch::zeros({x.size(0), x.size(1), padded - L, x.size(3)}, x.options())}, 2);
}

// (B, H, n * block, Dh) -> (B * n, H, block, Dh): block n of each sequence as a batch row.
torch::Tensor fold_blocks(const torch::Tensor& x, int64_t block) {
  const int64_t B = x.size(0), H = x.size(1), n = x.size(2) / block, Dh = x.size(3);
  return x.view({B, H, n, block, Dh}).permute({0, 2, 1, 3, 4}).reshape({B * n, H, block, Dh});
}

// Keys/values of each block's window: (B, H, n * block, Dh) -> (B * n, H, 2 * block, Dh), the
// previous block (zeros before the first) followed by the block itself.
torch::Tensor fold_windows(const torch::Tensor& x, int64_t block) {
  auto previous = torch::cat({torch::zeros_like(x.narrow(2, 0, block)), x.narrow(2, 0, x.size(2) - block)}, 2);
  return torch::cat({fold_blocks(previous, block), fold_blocks(x, block)}, 2);
}

}  // namespace

torch::Tensor local_attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                           int64_t block, const torch::Tensor& key_padding,
                           const torch::Tensor& relative_table, double dropout, bool training,
                           torch::Tensor* weights) {
  TORCH_CHECK(block > 0, "local attention: block must be > 0, got ", block);
  TORCH_CHECK(q.sizes() == k.sizes() && k.sizes() == v.sizes(),
              "local attention: q, k, v of one shape (B, H, L, Dh) expected, got ", q.sizes(),
              ", ", k.sizes(), ", ", v.sizes());
  const int64_t B = q.size(0), H = q.size(1), L = q.size(2), Dh = q.size(3);
  const int64_t n = (L + block - 1) / block, padded = n * block;

  auto qb = fold_blocks(pad_positions(q, padded), block);   // (B*n, H, block, Dh)
  auto kb = fold_windows(pad_positions(k, padded), block);  // (B*n, H, 2*block, Dh)
  auto vb = fold_windows(pad_positions(v, padded), block);

  // Padding of each window's keys (B*n, 2*block): the first block has no predecessor; positions
  // past L are only ever seen by queries past L (causality), whose outputs are dropped.
  auto opts = torch::TensorOptions().dtype(torch::kBool).device(q.device());
  auto pad = torch::zeros({B, padded}, opts);
  if (key_padding.defined()) pad.narrow(1, 0, L).copy_(key_padding);
  auto previous = torch::cat({torch::ones({B, block}, opts), pad.narrow(1, 0, padded - block)}, 1);
  AttentionMask mask;
  mask.causal = true;
  mask.key_padding = torch::cat({previous.view({B * n, block}), pad.view({B * n, block})}, 1);
  if (key_padding.defined()) {
    // A query always sees its own position: a padded query a block past the last real one
    // would otherwise see no key at all, and its softmax (NaN) would poison every gradient.
    auto own = torch::cat({torch::zeros({block, block}, opts), torch::eye(block, opts)}, 1);  // (block, 2 block)
    mask.blocked = mask.key_padding.view({B * n, 1, 1, 2 * block}).logical_and(own.logical_not());
    mask.key_padding = torch::Tensor();
  }

  torch::Tensor bias;
  if (relative_table.defined()) bias = relative_logits(qb, relative_table, 2 * block);
  torch::Tensor wb;
  auto out = attend(qb, kb, vb, mask, dropout, training, weights ? &wb : nullptr, std::move(bias));
  // The first block's queries see no previous block: softmax over its padded keys gave them
  // weight 0 already (masked with -inf), so nothing else to fix.
  out = out.view({B, n, H, block, Dh}).permute({0, 2, 1, 3, 4}).reshape({B, H, padded, Dh});
  if (weights) {
    auto full = torch::zeros({B, H, padded, padded}, wb.options());
    auto w = wb.view({B, n, H, block, 2 * block});
    for (int64_t i = 0; i < n; ++i) {
      const int64_t rows = i * block, from = std::max<int64_t>(0, i - 1) * block;
      const int64_t width = (i == 0 ? 1 : 2) * block;
      full.narrow(2, rows, block).narrow(3, from, width).copy_(
          w.select(1, i).narrow(3, 2 * block - width, width));
    }
    *weights = full.narrow(2, 0, L).narrow(3, 0, L);
  }
  return out.narrow(2, 0, L);
}

torch::Tensor local_attend_2d(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              int64_t R, int64_t C, const Local2D& s, double dropout, bool training) {
  TORCH_CHECK(s.rows > 0 && s.cols > 0 && s.flange_rows >= 0 && s.flange_cols >= 0,
              "local 2D attention: blocks must be positive and flanges >= 0");
  TORCH_CHECK(q.dim() == 4 && q.sizes() == k.sizes() && k.sizes() == v.sizes() && q.size(2) == R * C,
              "local 2D attention: q, k, v (B, H, R*C, Dh) with R*C = ", R * C, " expected, got ",
              q.sizes());
  const int64_t B = q.size(0), H = q.size(1), Dh = q.size(3);
  const int64_t nr = (R + s.rows - 1) / s.rows, nc = (C + s.cols - 1) / s.cols, nb = nr * nc;
  const int64_t Rp = nr * s.rows, Cp = nc * s.cols;                       // grid padded to blocks
  const int64_t wr = s.rows + s.flange_rows, wc = s.cols + 2 * s.flange_cols;  // window
  const int64_t Tq = s.rows * s.cols, Tk = wr * wc;

  // Queries: (B, H, Rp, Cp, Dh) -> (B * nb, H, rows * cols, Dh).
  auto grid_q = torch::constant_pad_nd(q.reshape({B, H, R, C, Dh}), {0, 0, 0, Cp - C, 0, Rp - R});
  auto qb = grid_q.view({B, H, nr, s.rows, nc, s.cols, Dh}).permute({0, 2, 4, 1, 3, 5, 6})
                .reshape({B * nb, H, Tq, Dh});
  // Keys/values: pad the flanges (above, left, right) too, then cut overlapping windows.
  auto windows = [&](const torch::Tensor& x) {
    auto padded = torch::constant_pad_nd(x.reshape({B, H, R, C, Dh}),
                                         {0, 0, s.flange_cols, Cp - C + s.flange_cols, s.flange_rows, Rp - R});
    return padded.unfold(2, wr, s.rows).unfold(3, wc, s.cols)  // (B, H, nr, nc, Dh, wr, wc)
        .permute({0, 2, 3, 1, 5, 6, 4})
        .reshape({B * nb, H, Tk, Dh});
  };
  auto kb = windows(k), vb = windows(v);

  // Which window keys are real pixels (nb, Tk), and the raster-causal pattern (Tq, Tk): query
  // (i, j) sits at window (flange_rows + i, flange_cols + j).
  auto bopts = torch::TensorOptions().dtype(torch::kBool).device(q.device());
  auto real = torch::zeros({s.flange_rows + Rp, Cp + 2 * s.flange_cols}, bopts);
  real.narrow(0, s.flange_rows, R).narrow(1, s.flange_cols, C).fill_(true);
  real = real.unfold(0, wr, s.rows).unfold(1, wc, s.cols).reshape({nb, 1, Tk});
  auto iopts = torch::TensorOptions().dtype(torch::kLong).device(q.device());
  auto query_at = ((torch::arange(s.rows, iopts) + s.flange_rows).unsqueeze(1) * wc +
                   torch::arange(s.cols, iopts) + s.flange_cols).reshape({Tq, 1});
  auto key_at = torch::arange(Tk, iopts).unsqueeze(0);
  // Raster order inside the window follows raster order in the image (same rows, same columns).
  auto future = key_at.gt(query_at);                     // (Tq, Tk)
  auto self = key_at.eq(query_at);
  // Padding keys are hidden, except a query's own position: padded queries (outside the image,
  // dropped below) then never see an empty row.
  auto blocked = future.logical_or(real.logical_not().logical_and(self.logical_not()));  // (nb, Tq, Tk)
  AttentionMask mask;
  mask.blocked = blocked.unsqueeze(0).expand({B, nb, Tq, Tk}).reshape({B * nb, 1, Tq, Tk});

  auto out = attend(qb, kb, vb, mask, dropout, training);  // (B * nb, H, Tq, Dh)
  return out.view({B, nr, nc, H, s.rows, s.cols, Dh}).permute({0, 3, 1, 4, 2, 5, 6})
      .reshape({B, H, Rp, Cp, Dh}).narrow(2, 0, R).narrow(3, 0, C).reshape({B, H, R * C, Dh});
}

std::vector<int64_t> local_2d_keys(int64_t position, int64_t R, int64_t C, const Local2D& s) {
  TORCH_CHECK(position >= 0 && position < R * C, "local_2d_keys: position ", position,
              " outside a ", R, "x", C, " grid");
  const int64_t r = position / C, c = position % C;
  const int64_t r0 = r / s.rows * s.rows, c0 = c / s.cols * s.cols;
  std::vector<int64_t> keys;
  for (int64_t y = std::max<int64_t>(0, r0 - s.flange_rows); y <= r; ++y)
    for (int64_t x = std::max<int64_t>(0, c0 - s.flange_cols);
         x < std::min(C, c0 + s.cols + s.flange_cols); ++x)
      if (y < r || x <= c) keys.push_back(y * C + x);
  return keys;
}

}  // namespace xformer::nn
