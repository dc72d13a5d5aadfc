// Box geometry for detection. Boxes are (x1, y1, x2, y2) in pixels with x2 >= x1, y2 >= y1,
// as (N, 4) float tensors.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace xformer::nn {

torch::Tensor box_area(const torch::Tensor& boxes);                          // (N)
torch::Tensor box_iou(const torch::Tensor& a, const torch::Tensor& b);       // (N, M)

// Greedy non-maximum suppression: the indices (long) of the boxes kept, by decreasing score;
// a box is dropped when its IoU with a kept higher-scoring box exceeds `iou_threshold`.
torch::Tensor nms(const torch::Tensor& boxes, const torch::Tensor& scores, double iou_threshold);
// The same within each class only (classes (N) long).
torch::Tensor batched_nms(const torch::Tensor& boxes, const torch::Tensor& scores, const torch::Tensor& classes,
                          double iou_threshold);

// Anchors of one feature level (RetinaNet): at each cell (y, x) of an H x W map with `stride`
// pixels per cell, centred at ((x + 0.5) stride, (y + 0.5) stride), one box per (scale, ratio)
// with area (size scale)^2 and height / width = ratio. (H W A, 4), cell-major, then scales,
// then ratios.
torch::Tensor level_anchors(int64_t height, int64_t width, double stride, double size,
                            const std::vector<double>& scales, const std::vector<double>& ratios);

// Regression targets of boxes against anchors (both (N, 4)): (dx, dy, dw, dh) =
// ((cx - acx) / aw, (cy - acy) / ah, log(w / aw), log(h / ah)); decode_boxes inverts it
// (dw, dh clamped so that no box grows past e^4.1 its anchor).
torch::Tensor encode_boxes(const torch::Tensor& anchors, const torch::Tensor& boxes);
torch::Tensor decode_boxes(const torch::Tensor& anchors, const torch::Tensor& deltas);

}  // namespace xformer::nn
