// The CPU kernel behind nn::dropout (nn/dropout.h) for float32: keep/drop decisions from a
// counter-based hash of (seed, element index), so that backward regenerates the mask from the
// seed instead of storing it.
#pragma once
#include <cstdint>

namespace xformer::nn {

// out[i] = in[i] * scale where element i is kept, else 0; element i is kept when
// hash(seed, i) < keep_below (32-bit). `in` and `out` may be the same array. One thread, the
// caller's.
void apply_dropout_mask(const float* in, float* out, int64_t n, uint64_t seed, uint32_t keep_below,
                        float scale);

}  // namespace xformer::nn
