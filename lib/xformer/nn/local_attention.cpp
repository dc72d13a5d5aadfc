#include "xformer/nn/local_attention.h"

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

}  // namespace xformer::nn
