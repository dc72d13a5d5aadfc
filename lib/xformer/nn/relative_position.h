// Relative position logits for causal self-attention (Shaw et al. 2018), computed with the
// memory-efficient "skewing" of Huang et al. 2018 (Music Transformer).
//
// Each head h learns one embedding per distance back, table (H, R + 1, Dh): row r is used by a
// query for the key r positions before it, and distances beyond R share row R. The logit added
// to q_i · k_j is q_i · table[h, min(i - j, R)].
//
// Naively that needs a (Tq, Tk, Dh) gather of embeddings per head: O(L^2 D) memory. Skewing
// instead multiplies q by the Tk embeddings of distances Tk-1 .. 0 once, (Tq, Dh) x (Dh, Tk),
// and shifts row i of the product left by (Tq - 1 - i) with one pad + reshape, so the extra
// memory is the (Tq, Tk) logits the attention has anyway plus O(Tk Dh).
#pragma once
#include <torch/torch.h>

namespace xformer::nn {

// q (B, H, Tq, Dh): the queries of the last Tq of Tk positions (Tq = Tk when training, 1 per
// step with a key/value cache); table (H, R + 1, Dh). Returns (B, H, Tq, Tk) with
// out[b, h, i, j] = q[b, h, i] · table[h, min(p_i - j, R)] where p_i = Tk - Tq + i, for j <= p_i.
// Entries with j > p_i (the future) are unspecified: the causal mask must hide them.
torch::Tensor relative_logits(const torch::Tensor& q, const torch::Tensor& table, int64_t Tk);

// The same by explicit gather of a (H, Tq, Tk, Dh) tensor: the O(L^2 D) reference for tests and
// the benchmark. Future entries are zero.
torch::Tensor relative_logits_naive(const torch::Tensor& q, const torch::Tensor& table, int64_t Tk);

}  // namespace xformer::nn
