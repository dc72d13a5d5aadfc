#include "xformer/nn/relative_position.h"

namespace xformer::nn {

namespace {

void check_shapes(const torch::Tensor& q, const torch::Tensor& table, int64_t Tk) {
  TORCH_CHECK(q.dim() == 4 && table.dim() == 3 && table.size(0) == q.size(1) &&
                  table.size(2) == q.size(3) && table.size(1) >= 1,
              "relative position logits: q (B, H, Tq, Dh) and table (H, R + 1, Dh) expected, got ",
              q.sizes(), " and ", table.sizes());
  TORCH_CHECK(Tk >= q.size(2), "relative position logits: ", q.size(2), " queries but only ", Tk,
              " keys");
}

}  // namespace

torch::Tensor relative_logits(const torch::Tensor& q, const torch::Tensor& table, int64_t Tk) {
  check_shapes(q, table, Tk);
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Dh = q.size(3);
  const int64_t R = table.size(1) - 1;
  // Column c of the product is distance Tk - 1 - c back (clipped to R): (H, Tk, Dh).
  auto back = torch::arange(Tk - 1, -1, -1, torch::TensorOptions().dtype(torch::kLong).device(q.device()));
  auto embeddings = table.index_select(1, back.clamp_max(R));
  // One (B*Tq, Dh) x (Dh, Tk) product per head, not B*H small ones.
  auto per_head = q.transpose(0, 1).reshape({H, B * Tq, Dh});
  auto a = torch::bmm(per_head, embeddings.transpose(1, 2))  // (H, B*Tq, Tk)
               .view({H, B, Tq, Tk})
               .transpose(0, 1);                              // (B, H, Tq, Tk)
  // Skew: out[i, j] = a[i, j - i + Tq - 1]. Lay each (Tq, Tk) matrix out as rows of Tk + 1 with
  // a zero column on the left, after Tk - Tq zeros, in one flat buffer; viewed as (Tq + 1, Tk)
  // rows, its rows 1..Tq are the shifted ones. (One buffer, written once.)
  auto flat = torch::zeros({B, H, (Tq + 1) * Tk}, a.options());
  flat.narrow(2, Tk - Tq, Tq * (Tk + 1)).view({B, H, Tq, Tk + 1}).narrow(3, 1, Tk).copy_(a);
  return flat.view({B, H, Tq + 1, Tk}).narrow(2, 1, Tq);
}

torch::Tensor relative_logits_naive(const torch::Tensor& q, const torch::Tensor& table,
                                    int64_t Tk) {
  check_shapes(q, table, Tk);
  const int64_t Tq = q.size(2), R = table.size(1) - 1;
  auto opts = torch::TensorOptions().dtype(torch::kLong).device(q.device());
  auto pos = torch::arange(Tk - Tq, Tk, opts).unsqueeze(1);  // (Tq, 1) absolute query positions
  auto key = torch::arange(Tk, opts).unsqueeze(0);            // (1, Tk)
  auto distance = pos - key;                                  // (Tq, Tk), negative = future
  auto past = distance.ge(0);
  auto rows = distance.clamp(0, R);                           // (Tq, Tk)
  auto gathered = table.index_select(1, rows.flatten()).view({table.size(0), Tq, Tk, -1});
  auto logits = torch::einsum("bhid,hijd->bhij", {q, gathered});  // (B, H, Tq, Tk)
  return logits * past;
}

}  // namespace xformer::nn
