#include "xformer/nn/batched_matmul.h"

#include <dlfcn.h>

#include <vector>

namespace xformer::nn {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The Fortran BLAS sgemm that LibTorch itself was linked against (OpenBLAS on Debian), looked
// up at run time: LibTorch does not export its own gemm wrapper, and builds with a private,
// statically linked BLAS (PyTorch's wheels) have none to find; those use torch::matmul.
using Sgemm = void (*)(const char* transa, const char* transb, const int* m, const int* n,
                       const int* k, const float* alpha, const float* a, const int* lda,
                       const float* b, const int* ldb, const float* beta, float* c, const int* ldc);

Sgemm blas_sgemm() {
  static const auto fn = reinterpret_cast<Sgemm>(dlsym(RTLD_DEFAULT, "sgemm_"));
  return fn;
}

// A (rows, cols) matrix inside a tensor as BLAS sees it: BLAS is column-major, so a row-major
// matrix with leading dimension ld is, to BLAS, its transpose.
struct Layout {
  bool row_major;
  int64_t ld;
};

// The layout of x's last two dims, or nullopt when neither dim is unit-stride.
std::optional<Layout> layout_of(const torch::Tensor& x) {
  const int64_t rows = x.size(-2), cols = x.size(-1);
  const int64_t s_row = x.stride(-2), s_col = x.stride(-1);
  if (rows == 1 && cols == 1) return Layout{true, 1};  // strides of size-1 dims are arbitrary
  if (s_col == 1 && (rows == 1 || s_row >= std::max<int64_t>(cols, 1)))
    return Layout{true, rows == 1 ? std::max<int64_t>(cols, 1) : s_row};
  if (s_row == 1 && (cols == 1 || s_col >= std::max<int64_t>(rows, 1)))
    return Layout{false, cols == 1 ? std::max<int64_t>(rows, 1) : s_col};
  return std::nullopt;
}

// Element offsets of each matrix of x (batch dims in row-major order).
std::vector<int64_t> batch_offsets(const torch::Tensor& x) {
  const int64_t dims = x.dim() - 2;
  std::vector<int64_t> offsets{0};
  for (int64_t d = 0; d < dims; ++d) {
    std::vector<int64_t> next;
    next.reserve(offsets.size() * x.size(d));
    for (int64_t base : offsets)
      for (int64_t i = 0; i < x.size(d); ++i) next.push_back(base + i * x.stride(d));
    offsets.swap(next);
  }
  return offsets;
}

// c = a · b per matrix, c freshly allocated contiguous. Operands may be any strided views.
torch::Tensor gemm_per_matrix(torch::Tensor a, torch::Tensor b) {
  auto la = layout_of(a);
  if (!la) a = a.contiguous(), la = layout_of(a);
  auto lb = layout_of(b);
  if (!lb) b = b.contiguous(), lb = layout_of(b);
  TORCH_CHECK(la && lb, "batched_matmul: no BLAS layout for strides ", a.strides(), " and ", b.strides());
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  auto sizes = a.sizes().vec();
  sizes.back() = N;
  auto c = torch::empty(sizes, a.options());
  if (c.numel() == 0) return c;
  if (K == 0) return c.zero_();
  const auto oa = batch_offsets(a), ob = batch_offsets(b);
  const float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  float* pc = c.data_ptr<float>();
  // Row-major C = A B is column-major C^T = B^T A^T: BLAS gets b first.
  const char tb = lb->row_major ? 'N' : 'T', ta = la->row_major ? 'N' : 'T';
  const int m = static_cast<int>(N), n = static_cast<int>(M), k = static_cast<int>(K);
  const int ldb = static_cast<int>(lb->ld), lda = static_cast<int>(la->ld), ldc = m;
  const float one = 1, zero = 0;
  const auto sgemm = blas_sgemm();
  for (size_t i = 0; i < oa.size(); ++i)
    sgemm(&tb, &ta, &m, &n, &k, &one, pb + ob[i], &ldb, pa + oa[i], &lda, &zero,
          pc + static_cast<int64_t>(i) * M * N, &ldc);
  return c;
}

struct BatchedMatmul : torch::autograd::Function<BatchedMatmul> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& b) {
    ctx->save_for_backward({a, b});
    return gemm_per_matrix(a, b);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    auto saved = ctx->get_saved_variables();
    const auto &a = saved[0], &b = saved[1], &g = grad[0];
    // dA = dC · Bᵀ, dB = Aᵀ · dC: transposes are views, read in place by BLAS.
    return {ctx->needs_input_grad(0) ? gemm_per_matrix(g, b.transpose(-1, -2)) : torch::Tensor(),
            ctx->needs_input_grad(1) ? gemm_per_matrix(a.transpose(-1, -2), g) : torch::Tensor()};
  }
};

}  // namespace

torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.dim() >= 3 && a.dim() == b.dim() && a.size(-1) == b.size(-2) &&
                  a.sizes().slice(0, a.dim() - 2) == b.sizes().slice(0, b.dim() - 2),
              "batched_matmul: (..., M, K) and (..., K, N) with equal batch dims expected, got ",
              a.sizes(), " and ", b.sizes());
  const bool cpu_float = a.device().is_cpu() && b.device().is_cpu() &&
                         a.scalar_type() == torch::kFloat && b.scalar_type() == torch::kFloat;
  if (!cpu_float || !blas_sgemm()) return torch::matmul(a, b);
  return BatchedMatmul::apply(a, b);
}

}  // namespace xformer::nn
