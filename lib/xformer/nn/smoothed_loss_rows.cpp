#include "xformer/nn/smoothed_loss_rows.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "xformer/nn/vector_clones.h"

namespace xformer::nn {

namespace {

// e^x for x <= 0 (the logits less their row's maximum), in arithmetic the compiler vectorises:
// x = n ln2 + r with |r| <= ln2/2, e^r from a degree-6 polynomial (Cephes' expf coefficients,
// relative error ~1e-7), 2^n put straight into the exponent bits. Below -87.3 (results under
// the smallest normal float) it returns 0, and for NaN too (the caller flags the row).
[[gnu::always_inline]] inline float exp_nonpositive(float x) {
  const bool underflow = !(x >= -87.3f);
  x = underflow ? -87.3f : x;
  // Round x / ln2 to an integer by adding and removing 1.5 * 2^23 (no float-to-int rounding
  // call, which would not vectorise).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;  // ln2 in two parts, so that r keeps its low bits
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e_r = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 0]
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return underflow ? 0.0f : e_r * two_n;
}

struct RowLoss {
  double loss = 0, nll = 0;
};

// One non-ignored row x (V floats) with target t.
XFORMER_VECTOR_CLONES RowLoss row_loss(float* __restrict x, int64_t V, int64_t t, double eps,
                                       bool write_grad) {
  float max = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : max)
  for (int64_t v = 0; v < V; ++v) max = x[v] > max ? x[v] : max;
  const float x_t = x[t];
  // sum_exp = sum_v e^(x_v - max), sum_shifted = sum_v (x_v - max) (shifted, so that a large
  // common offset of the logits costs no precision); with the gradient, x_v becomes
  // e^(x_v - max) on the way.
  float sum_exp = 0, sum_shifted = 0;
  if (write_grad) {
#pragma omp simd reduction(+ : sum_exp, sum_shifted)
    for (int64_t v = 0; v < V; ++v) {
      const float s = x[v] - max, e = exp_nonpositive(s);
      sum_shifted += s;
      sum_exp += e;
      x[v] = e;
    }
  } else {
#pragma omp simd reduction(+ : sum_exp, sum_shifted)
    for (int64_t v = 0; v < V; ++v) {
      const float s = x[v] - max;
      sum_shifted += s;
      sum_exp += exp_nonpositive(s);
    }
  }
  RowLoss out;
  if (!std::isfinite(sum_shifted)) {  // a NaN or infinite logit: no finite loss is right
    out.loss = out.nll = std::numeric_limits<double>::quiet_NaN();
    if (write_grad) std::fill(x, x + V, std::numeric_limits<float>::quiet_NaN());
    return out;
  }
  const double log_sum = std::log(static_cast<double>(sum_exp));  // log Z - max
  out.nll = log_sum - (static_cast<double>(x_t) - max);
  const double sum_logp = sum_shifted - static_cast<double>(V) * log_sum;  // sum_v log p_v
  out.loss = (1 - eps) * out.nll - eps / static_cast<double>(V) * sum_logp;
  if (write_grad) {
    const float inv_sum = static_cast<float>(1.0 / sum_exp), uniform = static_cast<float>(eps / V);
#pragma omp simd
    for (int64_t v = 0; v < V; ++v) x[v] = x[v] * inv_sum - uniform;
    x[t] -= static_cast<float>(1 - eps);
  }
  return out;
}

}  // namespace

RowLossTotals smoothed_loss_rows(float* logits, int64_t rows, int64_t V, const int64_t* target,
                                 double eps, int64_t ignore_index, bool write_grad) {
  RowLossTotals totals;
  for (int64_t i = 0; i < rows; ++i) {
    float* x = logits + i * V;
    if (target[i] != ignore_index) {
      const RowLoss r = row_loss(x, V, target[i], eps, write_grad);
      totals.loss += r.loss, totals.nll += r.nll;
    } else if (write_grad) {
      std::fill(x, x + V, 0.0f);
    }
  }
  return totals;
}

}  // namespace xformer::nn
