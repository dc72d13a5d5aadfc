// The CPU kernel behind linear_label_smoothed_cross_entropy (nn/loss.h) for float32 logits:
// label-smoothed cross entropy of each row of a (rows, V) block, and optionally its gradient,
// written over the logits in place.
//
// A row of V floats (32 KB for V = 8000) is read three times while it sits in the core's
// cache (its maximum; exp and the sums; the gradient), where LibTorch's log_softmax, gather,
// sum, exp and sub make six or more passes over the whole block from memory: the benchmark's
// fused projection + loss, forward and backward, went from ~300 to ~200 ms
// (docs/performance.md, "Loss and dropout kernels").
#pragma once
#include <cstdint>

namespace xformer::nn {

struct RowLossTotals {
  double loss = 0;  // sum over non-ignored rows of (1 - eps) * nll + eps/V * sum_v(-log p_v)
  double nll = 0;   // sum over non-ignored rows of -log p_target
};

// logits: rows x V floats, row-major. target: one index per row, in [0, V) or ignore_index
// (the caller checks). With write_grad, row i becomes d loss / d logits_i =
// softmax_i - (1 - eps) * onehot(target_i) - eps/V, zero on ignored rows. A row holding a
// non-finite logit gets a NaN loss and a NaN gradient, never a finite value (LibTorch would
// give +inf for a row whose only non-finite logits are -inf). One thread, the caller's (the
// default train.threads; OpenBLAS has the cores during the products).
RowLossTotals smoothed_loss_rows(float* logits, int64_t rows, int64_t V, const int64_t* target,
                                 double eps, int64_t ignore_index, bool write_grad);

}  // namespace xformer::nn
