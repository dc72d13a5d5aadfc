#include "xformer/nn/dropout.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <mutex>

#include "xformer/nn/dropout_mask.h"

namespace xformer::nn {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

uint64_t draw_seed() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get<at::CPUGeneratorImpl>()->random64();
}

torch::Tensor masked(const torch::Tensor& x, uint64_t seed, double p) {
  auto in = x.contiguous();
  auto out = torch::empty_like(in);
  const double keep = 1.0 - p;
  const auto keep_below = static_cast<uint32_t>(std::min(keep * 4294967296.0, 4294967295.0));
  apply_dropout_mask(in.data_ptr<float>(), out.data_ptr<float>(), in.numel(), seed, keep_below,
                     static_cast<float>(1.0 / keep));
  return out;
}

struct HashDropout : torch::autograd::Function<HashDropout> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, double p) {
    const uint64_t seed = draw_seed();
    ctx->saved_data["seed"] = static_cast<int64_t>(seed);
    ctx->saved_data["p"] = p;
    return masked(x, seed, p);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto seed = static_cast<uint64_t>(ctx->saved_data["seed"].toInt());
    return {masked(grad[0], seed, ctx->saved_data["p"].toDouble()), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor dropout(const torch::Tensor& x, double p, bool training) {
  TORCH_CHECK(p >= 0 && p <= 1, "dropout probability must be in [0, 1], got ", p);
  if (!training || p == 0) return x;
  if (p == 1) return x * 0;
  if (x.device().is_cpu() && x.scalar_type() == torch::kFloat) return HashDropout::apply(x, p);
  return torch::dropout(x, p, true);
}

}  // namespace xformer::nn
