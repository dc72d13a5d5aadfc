#include "xformer/nn/loss.h"

#include "xformer/core/precision.h"
#include "xformer/nn/smoothed_loss_rows.h"

namespace xformer::nn {

namespace {
torch::ScalarType accumulation_type(torch::ScalarType t) { return t == torch::kDouble ? t : torch::kFloat; }

// Targets are class indices in [0, V) or the ignore index. Checked on the CPU, where it costs
// nothing; on a GPU a check would wait for the device, so there a bad target makes the returned
// term (added to the loss) NaN, which the trainer reports and skips, rather than a silently
// clamped class. Zero otherwise.
torch::Tensor invalid_targets_term(const torch::Tensor& target, int64_t V, int64_t ignore_index,
                                   const torch::TensorOptions& loss_options) {
  auto valid = target.eq(ignore_index) | (target.ge(0) & target.lt(V));
  if (target.device().is_cpu()) {
    TORCH_CHECK(valid.all().item<bool>(), "label-smoothed cross entropy: a target index outside [0, ", V,
                ") that is not the ignore index ", ignore_index);
    return torch::zeros({}, loss_options);
  }
  return torch::where(valid.all(), torch::zeros({}, loss_options), torch::full({}, NAN, loss_options));
}
}  // namespace

SmoothedLoss label_smoothed_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target,
                                          double epsilon, int64_t ignore_index) {
  // float32 at least: float16/bfloat16 logits are summed in float32, doubles stay doubles.
  auto logp = torch::log_softmax(logits.to(accumulation_type(logits.scalar_type())), -1);  // (N, V)
  const int64_t V = logits.size(-1);
  auto invalid = invalid_targets_term(target, V, ignore_index, logp.options().dtype(logp.scalar_type()));
  auto keep = target.ne(ignore_index);                                        // (N)
  auto nll = -logp.gather(-1, target.clamp(0, V - 1).unsqueeze(-1)).squeeze(-1);  // (N)
  auto uniform = -logp.sum(-1);                                                    // (N)
  auto per_token = (1.0 - epsilon) * nll + (epsilon / static_cast<double>(V)) * uniform;
  SmoothedLoss out;
  out.loss = per_token.masked_fill(~keep, 0).sum() + invalid;
  out.nll = nll.masked_fill(~keep, 0).sum();
  return out;
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct FusedResult {
  torch::Tensor loss, nll;            // scalars
  torch::Tensor grad_hidden, grad_weight;  // (N, D), (V, D); defined when asked for
};

FusedResult fused_forward(const torch::Tensor& hidden, const torch::Tensor& weight,
                          const torch::Tensor& target, double eps, int64_t ignore_index,
                          int64_t chunk_rows, bool with_grad) {
  TORCH_CHECK(hidden.dim() == 2 && weight.dim() == 2 && hidden.size(1) == weight.size(1),
              "linear_label_smoothed_cross_entropy: hidden (N, D) and weight (V, D) expected, got ",
              hidden.sizes(), " and ", weight.sizes());
  TORCH_CHECK(target.dim() == 1 && target.size(0) == hidden.size(0),
              "linear_label_smoothed_cross_entropy: target (N) expected, got ", target.sizes());
  const int64_t N = hidden.size(0), V = weight.size(0);
  // Rows per chunk: (chunk, V) logits of 16 MB keep the CPU's work in cache; a GPU wants few,
  // large products (512 MB), as each chunk is a round of kernel launches.
  const int64_t budget = hidden.is_cuda() ? int64_t{1} << 27 : int64_t{1} << 22;  // elements
  const int64_t chunk = chunk_rows > 0 ? chunk_rows : std::max<int64_t>(1, budget / V);
  // The products run in autocast's reduced type (CUDA) as a Linear layer would, else in the
  // inputs' type; the log-softmax, the loss and the logits' gradient in float32 (double for
  // doubles). `convert`: the products' type is not that of the inputs or of the accumulation.
  const auto mm_type = autocast_type(hidden.device()).value_or(hidden.scalar_type());
  const auto fopt = hidden.options().dtype(accumulation_type(mm_type));
  const bool convert = mm_type != hidden.scalar_type() || mm_type != weight.scalar_type() ||
                       mm_type != accumulation_type(mm_type);
  const auto hidden_mm = hidden.to(mm_type), weight_mm = weight.to(mm_type);
  FusedResult r;
  r.loss = invalid_targets_term(target, V, ignore_index, fopt);
  r.nll = torch::zeros({}, fopt);
  if (with_grad) {
    r.grad_hidden = torch::empty_like(hidden);
    r.grad_weight = torch::zeros_like(weight);
  }
  // float32 on the CPU: each row's loss and gradient in one kernel over the row while it is in
  // cache (nn/smoothed_loss_rows.h); otherwise LibTorch ops over the chunk.
  const bool row_kernel = hidden.device().is_cpu() && !convert && mm_type == torch::kFloat;
  auto logits_buf = torch::empty({std::min(chunk, N), V}, hidden.options().dtype(mm_type));
  auto logp_buf = row_kernel ? torch::Tensor() : torch::empty({std::min(chunk, N), V}, fopt);
  const auto target_c = target.contiguous();
  for (int64_t start = 0; start < N; start += chunk) {
    const int64_t n = std::min(chunk, N - start);
    auto h = hidden_mm.narrow(0, start, n);                    // (n, D)
    auto t = target_c.narrow(0, start, n);                     // (n)
    auto logits = logits_buf.narrow(0, 0, n);  // (n, V)
    torch::mm_out(logits, h, weight_mm.t());
    torch::Tensor g;  // (n, V) d loss / d logits
    if (row_kernel) {
      const auto sums = smoothed_loss_rows(logits.data_ptr<float>(), n, V, t.data_ptr<int64_t>(),
                                           eps, ignore_index, with_grad);
      r.loss += sums.loss;
      r.nll += sums.nll;
      if (!with_grad) continue;
      g = logits;  // the kernel wrote the gradient over the logits
    } else {
      auto logp = logp_buf.narrow(0, 0, n);  // (n, V)
      at::_log_softmax_out(logp, convert ? logits.to(fopt.dtype()) : logits, 1, false);
      auto keep = t.ne(ignore_index);
      auto index = t.clamp(0, V - 1).unsqueeze(1);               // (n, 1)
      auto nll = -logp.gather(1, index).squeeze(1);              // (n)
      auto per_token = (1.0 - eps) * nll - (eps / V) * logp.sum(1);
      r.loss += per_token.masked_fill(~keep, 0).sum();
      r.nll += nll.masked_fill(~keep, 0).sum();
      if (!with_grad) continue;
      // d loss / d logits = softmax - (1 - eps) * onehot(target) - eps/V; zero on ignored rows.
      g = logp.exp_().sub_(eps / V);
      g.scatter_add_(1, index, torch::full({n, 1}, -(1.0 - eps), fopt));
      if (g.is_cuda())  // no host sync on the GPU
        g.masked_fill_(keep.logical_not().unsqueeze(1), 0);
      else if (!keep.all().item<bool>())
        g.index_fill_(0, keep.logical_not().nonzero().squeeze(1), 0);
    }
    auto grad_h = r.grad_hidden.narrow(0, start, n);  // (n, D)
    if (convert) {
      g = g.to(mm_type);
      grad_h.copy_(torch::mm(g, weight_mm));
      r.grad_weight.add_(torch::mm(g.t(), h));  // (V, D): the weight's type += the products'
    } else {
      torch::mm_out(grad_h, g, weight);
      r.grad_weight.addmm_(g.t(), h);  // (V, D)
    }
  }
  return r;
}

struct FusedLinearSmoothedLoss : torch::autograd::Function<FusedLinearSmoothedLoss> {
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& hidden,
                               const torch::Tensor& weight, const torch::Tensor& target,
                               double eps, int64_t ignore_index, int64_t chunk_rows) {
    auto r = fused_forward(hidden, weight, target, eps, ignore_index, chunk_rows, true);
    ctx->saved_data["grad_hidden"] = r.grad_hidden;
    ctx->saved_data["grad_weight"] = r.grad_weight;
    ctx->mark_non_differentiable({r.nll});
    return {r.loss, r.nll};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto& g = grad[0];  // scalar d out / d loss
    auto gh = ctx->saved_data["grad_hidden"].toTensor() * g;
    auto gw = ctx->saved_data["grad_weight"].toTensor() * g;
    return {gh, gw, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

SmoothedLoss linear_label_smoothed_cross_entropy(const torch::Tensor& hidden,
                                                 const torch::Tensor& weight,
                                                 const torch::Tensor& target, double epsilon,
                                                 int64_t ignore_index, int64_t chunk_rows) {
  SmoothedLoss out;
  if (torch::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad())) {
    auto r = FusedLinearSmoothedLoss::apply(hidden, weight, target, epsilon, ignore_index, chunk_rows);
    out.loss = r[0], out.nll = r[1];
  } else {
    auto r = fused_forward(hidden, weight, target, epsilon, ignore_index, chunk_rows, false);
    out.loss = r.loss, out.nll = r.nll;
  }
  return out;
}

torch::Tensor sigmoid_focal_loss(const torch::Tensor& logits, const torch::Tensor& targets, double alpha,
                                 double gamma) {
  TORCH_CHECK(logits.sizes() == targets.sizes(), "sigmoid_focal_loss: logits and targets of one shape expected");
  auto x = logits.to(torch::kFloat), t = targets.to(torch::kFloat);
  auto p = x.sigmoid();
  auto ce = torch::nn::functional::binary_cross_entropy_with_logits(
      x, t, torch::nn::functional::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
  auto p_t = p * t + (1 - p) * (1 - t);
  auto alpha_t = alpha * t + (1 - alpha) * (1 - t);
  return (alpha_t * (1 - p_t).pow(gamma) * ce).sum();
}

}  // namespace xformer::nn
