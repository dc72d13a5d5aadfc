#include "xformer/nn/dropout.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <mutex>

namespace xformer::nn {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The SplitMix64 output function: a bijective 64-bit mix whose outputs over consecutive
// counters pass standard statistical test batteries (Steele et al. 2014).
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// out[i] = in[i] * scale if element i is kept, else 0. Element i uses 32 bits of
// mix64(seed + (i / 2) * golden): kept when they are below keep_below.
void apply_mask(const float* in, float* out, int64_t n, uint64_t seed, uint32_t keep_below,
                float scale) {
  constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;
  const int64_t pairs = (n + 1) / 2;
  at::parallel_for(0, pairs, 16384, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const uint64_t r = mix64(seed + static_cast<uint64_t>(j) * kGolden);
      const int64_t i = 2 * j;
      out[i] = static_cast<uint32_t>(r) < keep_below ? in[i] * scale : 0.0f;
      if (i + 1 < n) out[i + 1] = static_cast<uint32_t>(r >> 32) < keep_below ? in[i + 1] * scale : 0.0f;
    }
  });
}

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
  apply_mask(in.data_ptr<float>(), out.data_ptr<float>(), in.numel(), seed, keep_below,
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
