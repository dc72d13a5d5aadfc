#include "xformer/nn/dropout_mask.h"

#include <algorithm>

#include "xformer/nn/vector_clones.h"

namespace xformer::nn {

namespace {

// A 32-bit avalanche mix (Wellons' "lowbias32": two xorshift-multiply rounds); 32-bit lanes,
// so eight elements go through it at once with AVX2, where a 64-bit mix stays scalar.
[[gnu::always_inline]] inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// `count` elements from index `low_begin` within one block of 2^32 element indices.
XFORMER_VECTOR_CLONES void mask_block(const float* in, float* out, uint32_t low_begin, uint32_t count,
                                      uint32_t key0, uint32_t key1, uint32_t keep_below, float scale) {
#pragma omp simd
  for (uint32_t j = 0; j < count; ++j) {
    const uint32_t h = mix32(mix32((low_begin + j) ^ key0) + key1);
    out[j] = h < keep_below ? in[j] * scale : 0.0f;
  }
}

}  // namespace

void apply_dropout_mask(const float* in, float* out, int64_t n, uint64_t seed, uint32_t keep_below,
                        float scale) {
  // Past 2^32 elements the block number goes into the second key, so no mask repeats; pieces
  // of at most 2^31 elements keep every count within 32 bits.
  for (int64_t i = 0; i < n;) {
    const int64_t block = i >> 32;
    const int64_t piece_end = std::min({n, (block + 1) << 32, i + (int64_t{1} << 31)});
    const auto key0 = static_cast<uint32_t>(seed);
    const auto key1 = static_cast<uint32_t>(seed >> 32) + static_cast<uint32_t>(block) * 0x9e3779b9U;
    mask_block(in + i, out + i, static_cast<uint32_t>(i), static_cast<uint32_t>(piece_end - i), key0, key1,
               keep_below, scale);
    i = piece_end;
  }
}

}  // namespace xformer::nn
