// Position encodings for sequence models: sinusoidal (Vaswani et al. 2017: sin on even
// dimensions, cos on odd ones, wavelengths from 2*pi to 10000*2*pi) or learned.
#pragma once
#include <torch/torch.h>

namespace xformer::nn {

// (max_len, dim) table of the paper's sinusoids.
torch::Tensor sinusoidal_table(int64_t max_len, int64_t dim);

class PositionalEncodingImpl : public torch::nn::Module {
 public:
  PositionalEncodingImpl(int64_t max_len, int64_t dim, bool learned);
  // (T, D) encodings of positions offset .. offset + T - 1. TORCH_CHECKs the maximum length.
  torch::Tensor forward(int64_t length, int64_t offset = 0);
  int64_t max_len() const { return max_len_; }

 private:
  int64_t max_len_;
  torch::Tensor table_;  // buffer (sinusoidal) or parameter (learned)
};
TORCH_MODULE(PositionalEncoding);

}  // namespace xformer::nn
