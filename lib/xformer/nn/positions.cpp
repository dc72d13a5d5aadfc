#include "xformer/nn/positions.h"

#include <cmath>

namespace xformer::nn {

torch::Tensor sinusoidal_table(int64_t max_len, int64_t dim) {
  auto pos = torch::arange(max_len, torch::kFloat).unsqueeze(1);                  // (L, 1)
  auto i = torch::arange(0, dim, 2, torch::kFloat);                               // (D/2)
  auto inv_freq = torch::exp(i * (-std::log(10000.0) / static_cast<double>(dim)));  // (D/2)
  auto angles = pos * inv_freq;                                                   // (L, D/2)
  auto table = torch::zeros({max_len, dim});
  using torch::indexing::Slice;
  table.index_put_({Slice(), Slice(0, dim, 2)}, torch::sin(angles));
  table.index_put_({Slice(), Slice(1, dim, 2)}, torch::cos(angles).narrow(1, 0, dim / 2));
  return table;
}

PositionalEncodingImpl::PositionalEncodingImpl(int64_t max_len, int64_t dim, bool learned)
    : max_len_(max_len) {
  if (learned) {
    table_ = register_parameter("weight", torch::randn({max_len, dim}) * std::pow(dim, -0.5));
  } else {
    table_ = register_buffer("table", sinusoidal_table(max_len, dim));
  }
}

torch::Tensor PositionalEncodingImpl::forward(int64_t length, int64_t offset) {
  TORCH_CHECK(offset + length <= max_len_, "sequence of length ", offset + length,
              " exceeds max_positions ", max_len_);
  return table_.narrow(0, offset, length);
}

}  // namespace xformer::nn
