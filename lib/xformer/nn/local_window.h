// Which neighbourhood causal local self-attention sees (see local_attention.h). No LibTorch.
#pragma once
#include <cstdint>

namespace xformer::nn {

// Local 2D: positions are a grid in raster order, cut into query blocks of rows x cols; a query
// sees the keys of its block extended by `flange_rows` rows above and `flange_cols` columns on
// each side that come before it in raster order (itself included).
struct Local2D {
  int64_t rows = 8, cols = 8;                // query block
  int64_t flange_rows = 8, flange_cols = 8;  // memory around it
};

// Off, local 1D (block > 0) or local 2D (grid_cols > 0: rows of that many positions).
struct LocalWindow {
  int64_t block = 0;      // 1D: blocks of this many positions, each also seeing the previous one
  int64_t grid_cols = 0;  // 2D: the width of the grid (e.g. image width x channels)
  Local2D shape;          // 2D: blocks and flange

  bool enabled() const { return block > 0 || grid_cols > 0; }
};

}  // namespace xformer::nn
