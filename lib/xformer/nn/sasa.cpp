#include "xformer/nn/sasa.h"

#include "xformer/nn/sasa_cpu.h"

#include <cmath>
#include <limits>

namespace xformer::nn {

namespace F = torch::nn::functional;

namespace {

// (K, K, H, W) bool: neighbour (a, b) of pixel (i, j) lies inside the H x W image.
torch::Tensor inside_image(int64_t K, int64_t H, int64_t W, const torch::Device& device) {
  auto opts = torch::TensorOptions(torch::kLong).device(device);
  auto offsets = torch::arange(K, opts) - K / 2;
  auto rows = offsets.view({K, 1, 1, 1}) + torch::arange(H, opts).view({1, 1, H, 1});  // (K, 1, H, 1)
  auto cols = offsets.view({1, K, 1, 1}) + torch::arange(W, opts).view({1, 1, 1, W});  // (1, K, 1, W)
  return rows.ge(0).logical_and(rows.lt(H)).logical_and(cols.ge(0)).logical_and(cols.lt(W));
}

// Zero padding of the last two dims so that neighbour (a, b) of pixel (i, j) is at (i + a, j + b).
torch::Tensor pad_neighbourhood(const torch::Tensor& x, int64_t K) {
  const int64_t before = K / 2, after = K - 1 - K / 2;
  return F::pad(x, F::PadFuncOptions({before, after, before, after}));
}

void check_shapes(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                  const torch::Tensor& rel_rows, const torch::Tensor& rel_cols) {
  TORCH_CHECK(q.dim() == 5 && k.sizes() == q.sizes(), "sasa: q and k (B, N, dk, H, W) expected, got ", q.sizes(),
              " and ", k.sizes());
  TORCH_CHECK((v.dim() == 5 || v.dim() == 6) && v.size(0) == q.size(0) && v.size(1) == q.size(1) &&
                  v.size(-2) == q.size(3) && v.size(-1) == q.size(4),
              "sasa: v (B, N, [M,] dv, H, W) expected, got ", v.sizes());
  TORCH_CHECK(rel_rows.dim() == 2 && rel_cols.dim() == 2 && rel_rows.size(0) == rel_cols.size(0) &&
                  rel_rows.size(1) + rel_cols.size(1) == q.size(2),
              "sasa: relative tables (K, dk / 2) and (K, dk - dk / 2) expected, got ", rel_rows.sizes(), " and ",
              rel_cols.sizes());
}

// The offset loop with a hand-written backward that accumulates each neighbour's gradient in
// place: autograd through K^2 narrowed views would allocate and add a zero-filled padded
// gradient per offset, which made the layer several times slower.
struct SasaFunction : public torch::autograd::Function<SasaFunction> {
  // (B, N, dk|dv, Hp, Wp) padded -> the neighbour (a, b) of every pixel: (B, N, d, H, W) view.
  static torch::Tensor neighbour(const torch::Tensor& padded, int64_t a, int64_t b, int64_t H, int64_t W) {
    return padded.narrow(3, a, H).narrow(4, b, W);
  }

  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& rel_rows, const torch::Tensor& rel_cols) {
    const int64_t B = q.size(0), N = q.size(1), dk = q.size(2), H = q.size(3), W = q.size(4);
    const int64_t K = rel_rows.size(0), dr = rel_rows.size(1);
    auto kp = pad_neighbourhood(k, K), vp = pad_neighbourhood(v, K);
    auto logits = torch::empty({B, N, K * K, H, W}, q.options());
    for (int64_t a = 0; a < K; ++a)
      for (int64_t b = 0; b < K; ++b) {
        auto slot = logits.select(2, a * K + b);
        torch::sum_out(slot, q * neighbour(kp, a, b, H, W), {2});
      }
    auto grid = logits.view({B, N, K, K, H, W});
    grid.add_(torch::einsum("bndhw,kd->bnkhw", {q.narrow(2, 0, dr), rel_rows}).unsqueeze(3));
    grid.add_(torch::einsum("bndhw,kd->bnkhw", {q.narrow(2, dr, dk - dr), rel_cols}).unsqueeze(2));
    grid.masked_fill_(inside_image(K, H, W, q.device()).logical_not(), -std::numeric_limits<float>::infinity());
    auto p = logits.softmax(2);
    auto out = torch::zeros({B, N, v.size(2), H, W}, v.options());
    for (int64_t a = 0; a < K; ++a)
      for (int64_t b = 0; b < K; ++b) out.addcmul_(p.select(2, a * K + b).unsqueeze(2), neighbour(vp, a, b, H, W));
    ctx->save_for_backward({q, kp, vp, p, rel_rows, rel_cols});
    return out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &kp = saved[1], &vp = saved[2], &p = saved[3], &rel_rows = saved[4],
               &rel_cols = saved[5];
    const auto g = grads[0].contiguous();  // (B, N, dv, H, W)
    const int64_t B = q.size(0), N = q.size(1), dk = q.size(2), H = q.size(3), W = q.size(4);
    const int64_t K = rel_rows.size(0), dr = rel_rows.size(1);
    // Through the weighted sum of values.
    auto grad_p = torch::empty_like(p);
    auto grad_vp = torch::zeros_like(vp);
    for (int64_t a = 0; a < K; ++a)
      for (int64_t b = 0; b < K; ++b) {
        auto slot = grad_p.select(2, a * K + b);
        torch::sum_out(slot, g * neighbour(vp, a, b, H, W), {2});
        neighbour(grad_vp, a, b, H, W).addcmul_(p.select(2, a * K + b).unsqueeze(2), g);
      }
    // Through the softmax (masked neighbours have p = 0, so no gradient).
    auto grad_logits = p * (grad_p - (grad_p * p).sum(2, true));
    // Through the content logits q . k.
    auto grad_q = torch::zeros_like(q);
    auto grad_kp = torch::zeros_like(kp);
    for (int64_t a = 0; a < K; ++a)
      for (int64_t b = 0; b < K; ++b) {
        auto gl = grad_logits.select(2, a * K + b).unsqueeze(2);
        grad_q.addcmul_(gl, neighbour(kp, a, b, H, W));
        neighbour(grad_kp, a, b, H, W).addcmul_(gl, q);
      }
    // Through the relative logits: row offsets see the sum over columns and vice versa.
    auto grid = grad_logits.view({B, N, K, K, H, W});
    auto by_row = grid.sum(3), by_col = grid.sum(2);  // (B, N, K, H, W)
    grad_q.narrow(2, 0, dr).add_(torch::einsum("bnkhw,kd->bndhw", {by_row, rel_rows}));
    grad_q.narrow(2, dr, dk - dr).add_(torch::einsum("bnkhw,kd->bndhw", {by_col, rel_cols}));
    auto grad_rows = torch::einsum("bnkhw,bndhw->kd", {by_row, q.narrow(2, 0, dr)});
    auto grad_cols = torch::einsum("bnkhw,bndhw->kd", {by_col, q.narrow(2, dr, dk - dr)});
    const int64_t before = K / 2;
    return {grad_q, neighbour(grad_kp, before, before, H, W), neighbour(grad_vp, before, before, H, W), grad_rows,
            grad_cols};
  }
};

// The CPU kernels (sasa_cpu.h) under autograd.
struct SasaCpuFunction : public torch::autograd::Function<SasaCpuFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& rel_rows, const torch::Tensor& rel_cols) {
    auto out = sasa_cpu_forward(q, k, v, rel_rows, rel_cols);
    ctx->save_for_backward({q, k, v, out[1], rel_rows, rel_cols});
    return out[0];
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto s = ctx->get_saved_variables();
    return sasa_cpu_backward(grads[0], s[0], s[1], s[2], s[3], s[4], s[5]);
  }
};

// Spatially aware values (the attention stem): neighbour (a, b) mixes the M value maps, so the
// values differ per offset; plain autograd through the offset loop (one small layer).
torch::Tensor sasa_attend_mixed(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                const torch::Tensor& rel_rows, const torch::Tensor& rel_cols,
                                const torch::Tensor& value_mix) {
  const int64_t B = q.size(0), N = q.size(1), dk = q.size(2), H = q.size(3), W = q.size(4);
  const int64_t K = rel_rows.size(0), dr = rel_rows.size(1);
  auto kp = pad_neighbourhood(k, K), vp = pad_neighbourhood(v, K);
  std::vector<torch::Tensor> content;
  content.reserve(K * K);
  for (int64_t a = 0; a < K; ++a)
    for (int64_t b = 0; b < K; ++b) content.push_back((q * kp.narrow(3, a, H).narrow(4, b, W)).sum(2));
  auto logits = torch::stack(content, 2).view({B, N, K, K, H, W});
  auto row_term = torch::einsum("bndhw,kd->bnkhw", {q.narrow(2, 0, dr), rel_rows});
  auto col_term = torch::einsum("bndhw,kd->bnkhw", {q.narrow(2, dr, dk - dr), rel_cols});
  logits = logits + row_term.unsqueeze(3) + col_term.unsqueeze(2);
  logits = logits.masked_fill(inside_image(K, H, W, q.device()).logical_not(),
                              -std::numeric_limits<float>::infinity());
  auto p = logits.view({B, N, K * K, H, W}).softmax(2);
  torch::Tensor out;
  for (int64_t a = 0; a < K; ++a)
    for (int64_t b = 0; b < K; ++b) {
      auto vs = (vp.narrow(-2, a, H).narrow(-1, b, W) * value_mix[a][b].view({1, 1, -1, 1, 1, 1})).sum(2);
      auto term = p.select(2, a * K + b).unsqueeze(2) * vs;
      out = out.defined() ? out + term : term;
    }
  return out;
}

}  // namespace

torch::Tensor sasa_attend_offsets(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const torch::Tensor& rel_rows, const torch::Tensor& rel_cols) {
  check_shapes(q, k, v, rel_rows, rel_cols);
  TORCH_CHECK(v.dim() == 5, "sasa_attend_offsets: no value mixtures");
  return SasaFunction::apply(q, k, v, rel_rows, rel_cols);
}

torch::Tensor sasa_attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                          const torch::Tensor& rel_rows, const torch::Tensor& rel_cols,
                          const torch::Tensor& value_mix) {
  check_shapes(q, k, v, rel_rows, rel_cols);
  TORCH_CHECK(value_mix.defined() == (v.dim() == 6), "sasa: value mixtures need v (B, N, M, dv, H, W)");
  if (!value_mix.defined()) {
    const bool kernel = q.is_cpu() && (q.scalar_type() == torch::kFloat || q.scalar_type() == torch::kDouble) &&
                        k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type() &&
                        rel_rows.scalar_type() == q.scalar_type() && rel_cols.scalar_type() == q.scalar_type();
    return kernel ? SasaCpuFunction::apply(q, k, v, rel_rows, rel_cols) : sasa_attend_offsets(q, k, v, rel_rows, rel_cols);
  }
  TORCH_CHECK(value_mix.dim() == 3 && value_mix.size(0) == rel_rows.size(0) && value_mix.size(1) == rel_rows.size(0) &&
                  value_mix.size(2) == v.size(2),
              "sasa: value_mix (K, K, M) expected, got ", value_mix.sizes());
  return sasa_attend_mixed(q, k, v, rel_rows, rel_cols, value_mix);
}

torch::Tensor sasa_attend_unfold(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 const torch::Tensor& rel_rows, const torch::Tensor& rel_cols) {
  check_shapes(q, k, v, rel_rows, rel_cols);
  TORCH_CHECK(v.dim() == 5, "sasa_attend_unfold: no value mixtures");
  const int64_t B = q.size(0), N = q.size(1), dk = q.size(2), H = q.size(3), W = q.size(4);
  const int64_t K = rel_rows.size(0), dr = rel_rows.size(1);
  auto ku = pad_neighbourhood(k, K).unfold(3, K, 1).unfold(4, K, 1);  // (B, N, dk, H, W, K, K) view
  auto vu = pad_neighbourhood(v, K).unfold(3, K, 1).unfold(4, K, 1);
  auto logits = (q.unsqueeze(-1).unsqueeze(-1) * ku).sum(2);  // (B, N, H, W, K, K)
  auto row_term = torch::einsum("bndhw,kd->bnhwk", {q.narrow(2, 0, dr), rel_rows});
  auto col_term = torch::einsum("bndhw,kd->bnhwk", {q.narrow(2, dr, dk - dr), rel_cols});
  logits = logits + row_term.unsqueeze(-1) + col_term.unsqueeze(-2);
  logits = logits.masked_fill(inside_image(K, H, W, q.device()).permute({2, 3, 0, 1}).logical_not(),
                              -std::numeric_limits<float>::infinity());
  auto p = logits.view({B, N, H, W, K * K}).softmax(-1).view({B, N, 1, H, W, K, K});
  return (p * vu).sum({-2, -1});
}

SelfAttention2dImpl::SelfAttention2dImpl(const SelfAttention2dOptions& o) : options_(o) {
  TORCH_CHECK(o.in_channels > 0 && o.heads > 0 && o.out_channels % o.heads == 0 && o.out_channels / o.heads >= 2,
              "SelfAttention2d: out_channels (", o.out_channels, ") must be a multiple of heads (", o.heads,
              ") with at least 2 channels per head");
  TORCH_CHECK(o.kernel >= 1 && o.stride >= 1 && o.value_mixtures >= 0,
              "SelfAttention2d: kernel >= 1, stride >= 1 and value_mixtures >= 0 expected");
  const int64_t dk = o.out_channels / o.heads, M = std::max<int64_t>(1, o.value_mixtures);
  auto projection = [&](const char* name, int64_t out) {
    return register_module(name, torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels, out, 1).bias(false)));
  };
  query = projection("query", o.out_channels);
  key = projection("key", o.out_channels);
  value = projection("value", M * o.out_channels);
  rel_rows = register_parameter("rel_rows", torch::randn({o.kernel, dk / 2}));
  rel_cols = register_parameter("rel_cols", torch::randn({o.kernel, dk - dk / 2}));
  if (o.value_mixtures > 0) {
    mix_rows = register_parameter("mix_rows", torch::randn({o.kernel, dk}));
    mix_cols = register_parameter("mix_cols", torch::randn({o.kernel, dk}));
    mix = register_parameter("mix", torch::randn({o.value_mixtures, dk}) * std::pow(dk, -0.5));
  }
}

torch::Tensor SelfAttention2dImpl::forward(const torch::Tensor& x) {
  const auto& o = options_;
  TORCH_CHECK(x.dim() == 4 && x.size(1) == o.in_channels, "SelfAttention2d: (B, ", o.in_channels,
              ", H, W) expected, got ", x.sizes());
  const int64_t B = x.size(0), H = x.size(2), W = x.size(3), N = o.heads, dk = o.out_channels / N;
  auto q = query(x).view({B, N, dk, H, W}) * std::pow(static_cast<double>(dk), -0.5);
  auto k = key(x).view({B, N, dk, H, W});
  torch::Tensor out;
  if (o.value_mixtures > 0) {
    // Spatially aware values: neighbour (a, b) mixes the M value projections with weights
    // softmax_m((mix_rows[a] + mix_cols[b]) . mix[m]) (K, K, M).
    auto weights = (torch::matmul(mix_rows, mix.t()).unsqueeze(1) + torch::matmul(mix_cols, mix.t()).unsqueeze(0))
                       .softmax(-1);
    auto v = value(x).view({B, o.value_mixtures, N, dk, H, W}).transpose(1, 2);
    out = sasa_attend(q, k, v, rel_rows, rel_cols, weights);
  } else {
    out = sasa_attend(q, k, value(x).view({B, N, dk, H, W}), rel_rows, rel_cols);
  }
  out = out.reshape({B, o.out_channels, H, W});
  if (o.stride > 1) out = F::avg_pool2d(out, F::AvgPool2dFuncOptions(o.stride).stride(o.stride).ceil_mode(true));
  return out;
}

}  // namespace xformer::nn
