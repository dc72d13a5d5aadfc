#include "xformer/nn/sasa_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace xformer::nn {

namespace {

// One (image, head) plane: q, k (dk, H, W), v (dv, H, W), p (K^2, H, W), row-major.
struct Plane {
  int64_t dk, dv, H, W, K, dr;
  int64_t hw() const { return H * W; }
  // Pixels j of row i whose neighbour at column offset index bb lies inside: [first, last).
  int64_t first(int64_t bb) const { return std::max<int64_t>(0, K / 2 - bb); }
  int64_t last(int64_t bb) const { return std::min<int64_t>(W, W + K / 2 - bb); }
};

// Relative logits of row i: rt (K, W) from the row half of q, ct (K, W) from the column half.
template <typename T>
void relative_terms(const Plane& s, const T* q, const T* rows, const T* cols, int64_t i, T* rt, T* ct) {
  const int64_t W = s.W, dc = s.dk - s.dr;
  std::fill(rt, rt + s.K * W, T(0));
  std::fill(ct, ct + s.K * W, T(0));
  for (int64_t a = 0; a < s.K; ++a) {
    for (int64_t d = 0; d < s.dr; ++d) {
      const T w = rows[a * s.dr + d], *qd = q + d * s.hw() + i * W;
      for (int64_t j = 0; j < W; ++j) rt[a * W + j] += w * qd[j];
    }
    for (int64_t d = 0; d < dc; ++d) {
      const T w = cols[a * dc + d], *qd = q + (s.dr + d) * s.hw() + i * W;
      for (int64_t j = 0; j < W; ++j) ct[a * W + j] += w * qd[j];
    }
  }
}

// The logits (K^2, H, W) of one plane: q . k + relative terms, -inf outside the image.
template <typename T>
void logits_plane(const Plane& s, const T* q, const T* k, const T* rows, const T* cols, T* logits) {
  const int64_t K = s.K, W = s.W, HW = s.hw(), lo = K / 2;
  const T minus_inf = -std::numeric_limits<T>::infinity();
  std::vector<T> rt(K * W), ct(K * W);
  for (int64_t i = 0; i < s.H; ++i) {
    relative_terms(s, q, rows, cols, i, rt.data(), ct.data());
    for (int64_t a = 0; a < K; ++a) {
      const int64_t y = i + a - lo;
      for (int64_t bb = 0; bb < K; ++bb) {
        T* l = logits + (a * K + bb) * HW + i * W;
        std::fill(l, l + W, minus_inf);
        if (y < 0 || y >= s.H) continue;
        const int64_t j0 = s.first(bb), j1 = s.last(bb);
        for (int64_t j = j0; j < j1; ++j) l[j] = rt[a * W + j] + ct[bb * W + j];
        // Pixel j's neighbour is column j + bb - lo: pointers start at pixel j0.
        for (int64_t d = 0; d < s.dk; ++d) {
          const T *qd = q + d * HW + i * W + j0, *kd = k + d * HW + y * W + j0 + bb - lo;
          T* lj = l + j0;
          for (int64_t j = 0; j < j1 - j0; ++j) lj[j] += qd[j] * kd[j];
        }
      }
    }
  }
}

// out (dv, H, W) = the attention weights p (K^2, H, W) applied to the neighbours' values.
template <typename T>
void weighted_sum_plane(const Plane& s, const T* p, const T* v, T* out) {
  const int64_t K = s.K, W = s.W, HW = s.hw(), lo = K / 2;
  std::fill(out, out + s.dv * HW, T(0));
  for (int64_t i = 0; i < s.H; ++i)
    for (int64_t d = 0; d < s.dv; ++d) {
      T* od = out + d * HW + i * W;
      for (int64_t a = 0; a < K; ++a) {
        const int64_t y = i + a - lo;
        if (y < 0 || y >= s.H) continue;
        for (int64_t bb = 0; bb < K; ++bb) {
          const int64_t j0 = s.first(bb), n = s.last(bb) - j0;
          const T *po = p + (a * K + bb) * HW + i * W + j0, *vd = v + d * HW + y * W + j0 + bb - lo;
          T* oj = od + j0;
          for (int64_t j = 0; j < n; ++j) oj[j] += po[j] * vd[j];
        }
      }
    }
}

// Accumulates into gq, gk, gv (planes, zeroed by the caller) and grows/gcols (this plane's part).
template <typename T>
void backward_plane(const Plane& s, const T* g, const T* q, const T* k, const T* v, const T* p, const T* rows,
                    const T* cols, T* gq, T* gk, T* gv, T* grows, T* gcols) {
  const int64_t K = s.K, W = s.W, HW = s.hw(), lo = K / 2, dc = s.dk - s.dr;
  std::vector<T> gl(K * K * W), dot(W), by_row(K * W), by_col(K * W);
  for (int64_t i = 0; i < s.H; ++i) {
    // Through the weighted sum: gl = dL/dp, and the values' gradient.
    std::fill(gl.begin(), gl.end(), T(0));
    for (int64_t a = 0; a < K; ++a) {
      const int64_t y = i + a - lo;
      if (y < 0 || y >= s.H) continue;
      for (int64_t bb = 0; bb < K; ++bb) {
        const int64_t o = a * K + bb, j0 = s.first(bb), n = s.last(bb) - j0;
        const T* po = p + o * HW + i * W + j0;
        T* glo = gl.data() + o * W + j0;
        for (int64_t d = 0; d < s.dv; ++d) {
          const T *gd = g + d * HW + i * W + j0, *vd = v + d * HW + y * W + j0 + bb - lo;
          T* gvd = gv + d * HW + y * W + j0 + bb - lo;
          for (int64_t j = 0; j < n; ++j) {
            glo[j] += gd[j] * vd[j];
            gvd[j] += po[j] * gd[j];
          }
        }
      }
    }
    // Through the softmax: gl = p (gl - sum_o p gl).
    std::fill(dot.begin(), dot.end(), T(0));
    for (int64_t o = 0; o < K * K; ++o) {
      const T* po = p + o * HW + i * W;
      for (int64_t j = 0; j < W; ++j) dot[j] += po[j] * gl[o * W + j];
    }
    for (int64_t o = 0; o < K * K; ++o) {
      const T* po = p + o * HW + i * W;
      for (int64_t j = 0; j < W; ++j) gl[o * W + j] = po[j] * (gl[o * W + j] - dot[j]);
    }
    // Through q . k.
    for (int64_t a = 0; a < K; ++a) {
      const int64_t y = i + a - lo;
      if (y < 0 || y >= s.H) continue;
      for (int64_t bb = 0; bb < K; ++bb) {
        const int64_t j0 = s.first(bb), n = s.last(bb) - j0;
        const T* glo = gl.data() + (a * K + bb) * W + j0;
        for (int64_t d = 0; d < s.dk; ++d) {
          const T *qd = q + d * HW + i * W + j0, *kd = k + d * HW + y * W + j0 + bb - lo;
          T *gqd = gq + d * HW + i * W + j0, *gkd = gk + d * HW + y * W + j0 + bb - lo;
          for (int64_t j = 0; j < n; ++j) {
            gqd[j] += glo[j] * kd[j];
            gkd[j] += glo[j] * qd[j];
          }
        }
      }
    }
    // Through the relative logits: row offsets get the sum over columns, and vice versa.
    std::fill(by_row.begin(), by_row.end(), T(0));
    std::fill(by_col.begin(), by_col.end(), T(0));
    for (int64_t a = 0; a < K; ++a)
      for (int64_t bb = 0; bb < K; ++bb)
        for (int64_t j = 0; j < W; ++j) {
          const T x = gl[(a * K + bb) * W + j];
          by_row[a * W + j] += x;
          by_col[bb * W + j] += x;
        }
    for (int64_t a = 0; a < K; ++a) {
      for (int64_t d = 0; d < s.dr; ++d) {
        const T *qd = q + d * HW + i * W, *br = by_row.data() + a * W;
        T* gqd = gq + d * HW + i * W;
        const T w = rows[a * s.dr + d];
        T acc = 0;
        for (int64_t j = 0; j < W; ++j) {
          gqd[j] += br[j] * w;
          acc += br[j] * qd[j];
        }
        grows[a * s.dr + d] += acc;
      }
      for (int64_t d = 0; d < dc; ++d) {
        const T *qd = q + (s.dr + d) * HW + i * W, *bc = by_col.data() + a * W;
        T* gqd = gq + (s.dr + d) * HW + i * W;
        const T w = cols[a * dc + d];
        T acc = 0;
        for (int64_t j = 0; j < W; ++j) {
          gqd[j] += bc[j] * w;
          acc += bc[j] * qd[j];
        }
        gcols[a * dc + d] += acc;
      }
    }
  }
}

Plane plane_of(const torch::Tensor& q, const torch::Tensor& v, const torch::Tensor& rel_rows) {
  return {q.size(2), v.size(2), q.size(3), q.size(4), rel_rows.size(0), rel_rows.size(1)};
}

}  // namespace

std::vector<torch::Tensor> sasa_cpu_forward(const torch::Tensor& q_in, const torch::Tensor& k_in,
                                            const torch::Tensor& v_in, const torch::Tensor& rows_in,
                                            const torch::Tensor& cols_in) {
  auto q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  auto rows = rows_in.contiguous(), cols = cols_in.contiguous();
  const Plane s = plane_of(q, v, rows);
  const int64_t planes = q.size(0) * q.size(1), K = s.K;
  auto logits = torch::empty({q.size(0), q.size(1), K * K, s.H, s.W}, q.options());
  auto out = torch::empty({q.size(0), q.size(1), s.dv, s.H, s.W}, q.options());
  torch::Tensor p;
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "sasa_cpu_forward", [&] {
    const auto *qp = q.data_ptr<scalar_t>(), *kp = k.data_ptr<scalar_t>(), *vp = v.data_ptr<scalar_t>();
    const auto *rp = rows.data_ptr<scalar_t>(), *cp = cols.data_ptr<scalar_t>();
    auto* lp = logits.data_ptr<scalar_t>();
    at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n)
        logits_plane<scalar_t>(s, qp + n * s.dk * s.hw(), kp + n * s.dk * s.hw(), rp, cp, lp + n * K * K * s.hw());
    });
    // LibTorch's softmax over the neighbours (the centre is always inside, so no pixel's logits
    // are all -inf). Its middle-dim path is half the forward time: a kernel-side vectorised exp
    // would be the next step.
    p = logits.softmax(2);
    const auto* pp = p.data_ptr<scalar_t>();
    auto* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n)
        weighted_sum_plane<scalar_t>(s, pp + n * K * K * s.hw(), vp + n * s.dv * s.hw(), op + n * s.dv * s.hw());
    });
  });
  return {out, p};
}

std::vector<torch::Tensor> sasa_cpu_backward(const torch::Tensor& grad_out, const torch::Tensor& q_in,
                                             const torch::Tensor& k_in, const torch::Tensor& v_in,
                                             const torch::Tensor& p, const torch::Tensor& rows_in,
                                             const torch::Tensor& cols_in) {
  auto g = grad_out.contiguous(), q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  auto rows = rows_in.contiguous(), cols = cols_in.contiguous();
  const Plane s = plane_of(q, v, rows);
  const int64_t planes = q.size(0) * q.size(1), K = s.K, dc = s.dk - s.dr;
  auto gq = torch::zeros_like(q), gk = torch::zeros_like(k), gv = torch::zeros_like(v);
  // Each plane's share of the relative tables' gradients, summed afterwards.
  auto grows = torch::zeros({planes, K, s.dr}, q.options()), gcols = torch::zeros({planes, K, dc}, q.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "sasa_cpu_backward", [&] {
    const auto *gp = g.data_ptr<scalar_t>(), *qp = q.data_ptr<scalar_t>(), *kp = k.data_ptr<scalar_t>();
    const auto *vp = v.data_ptr<scalar_t>(), *pp = p.data_ptr<scalar_t>();
    const auto *rp = rows.data_ptr<scalar_t>(), *cp = cols.data_ptr<scalar_t>();
    auto *gqp = gq.data_ptr<scalar_t>(), *gkp = gk.data_ptr<scalar_t>(), *gvp = gv.data_ptr<scalar_t>();
    auto *grp = grows.data_ptr<scalar_t>(), *gcp = gcols.data_ptr<scalar_t>();
    at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        const int64_t qo = n * s.dk * s.hw(), vo = n * s.dv * s.hw();
        backward_plane<scalar_t>(s, gp + vo, qp + qo, kp + qo, vp + vo, pp + n * K * K * s.hw(), rp, cp, gqp + qo,
                                 gkp + qo, gvp + vo, grp + n * K * s.dr, gcp + n * K * dc);
      }
    });
  });
  return {gq, gk, gv, grows.sum(0), gcols.sum(0)};
}

}  // namespace xformer::nn
