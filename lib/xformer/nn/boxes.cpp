#include "xformer/nn/boxes.h"

#include <cmath>

namespace xformer::nn {

torch::Tensor box_area(const torch::Tensor& b) {
  return (b.select(1, 2) - b.select(1, 0)).clamp_min(0) * (b.select(1, 3) - b.select(1, 1)).clamp_min(0);
}

torch::Tensor box_iou(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.dim() == 2 && a.size(1) == 4 && b.dim() == 2 && b.size(1) == 4, "box_iou: (N, 4) boxes expected");
  auto top_left = torch::max(a.narrow(1, 0, 2).unsqueeze(1), b.narrow(1, 0, 2).unsqueeze(0));      // (N, M, 2)
  auto bottom_right = torch::min(a.narrow(1, 2, 2).unsqueeze(1), b.narrow(1, 2, 2).unsqueeze(0));  // (N, M, 2)
  auto wh = (bottom_right - top_left).clamp_min(0);
  auto inter = wh.select(2, 0) * wh.select(2, 1);
  auto uni = box_area(a).unsqueeze(1) + box_area(b).unsqueeze(0) - inter;
  return inter / uni.clamp_min(1e-12);
}

torch::Tensor nms(const torch::Tensor& boxes, const torch::Tensor& scores, double iou_threshold) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4 && scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "nms: boxes (N, 4) and scores (N) expected");
  auto order = scores.argsort(0, /*descending=*/true).cpu();
  auto iou = box_iou(boxes, boxes).cpu().to(torch::kFloat);
  const auto* o = order.data_ptr<int64_t>();
  auto acc = iou.accessor<float, 2>();
  const int64_t n = boxes.size(0);
  std::vector<char> removed(n, 0);
  std::vector<int64_t> keep;
  for (int64_t r = 0; r < n; ++r) {
    const int64_t i = o[r];
    if (removed[i]) continue;
    keep.push_back(i);
    for (int64_t s = r + 1; s < n; ++s)
      if (!removed[o[s]] && acc[i][o[s]] > iou_threshold) removed[o[s]] = 1;
  }
  return torch::tensor(keep, torch::kLong).to(boxes.device());
}

torch::Tensor batched_nms(const torch::Tensor& boxes, const torch::Tensor& scores, const torch::Tensor& classes,
                          double iou_threshold) {
  if (boxes.size(0) == 0) return torch::empty({0}, torch::TensorOptions(torch::kLong).device(boxes.device()));
  // Boxes of different classes moved apart so that they never overlap.
  const auto span = (boxes.max() - boxes.min()).item<double>() + 1;
  auto shifted = boxes + (classes.to(boxes.scalar_type()) * span).unsqueeze(1);
  return nms(shifted, scores, iou_threshold);
}

torch::Tensor level_anchors(int64_t height, int64_t width, double stride, double size,
                            const std::vector<double>& scales, const std::vector<double>& ratios) {
  std::vector<float> shapes;  // (A, 2): half widths and half heights
  for (double s : scales)
    for (double r : ratios) {
      const double area = (size * s) * (size * s), w = std::sqrt(area / r), h = w * r;
      shapes.push_back(static_cast<float>(w / 2)), shapes.push_back(static_cast<float>(h / 2));
    }
  const int64_t A = static_cast<int64_t>(shapes.size() / 2);
  auto half = torch::tensor(shapes).view({1, A, 2});
  auto ys = (torch::arange(height, torch::kFloat) + 0.5) * stride, xs = (torch::arange(width, torch::kFloat) + 0.5) * stride;
  auto centres = torch::stack({xs.unsqueeze(0).expand({height, width}), ys.unsqueeze(1).expand({height, width})}, 2)
                     .view({height * width, 1, 2});
  return torch::cat({centres - half, centres + half}, 2).view({height * width * A, 4});
}

namespace {
// (N, 4) boxes -> centre x, centre y, width, height.
std::array<torch::Tensor, 4> centre_size(const torch::Tensor& b) {
  auto w = b.select(1, 2) - b.select(1, 0), h = b.select(1, 3) - b.select(1, 1);
  return {b.select(1, 0) + 0.5 * w, b.select(1, 1) + 0.5 * h, w, h};
}
}  // namespace

torch::Tensor encode_boxes(const torch::Tensor& anchors, const torch::Tensor& boxes) {
  auto [ax, ay, aw, ah] = centre_size(anchors);
  auto [bx, by, bw, bh] = centre_size(boxes);
  return torch::stack({(bx - ax) / aw, (by - ay) / ah, (bw / aw).log(), (bh / ah).log()}, 1);
}

torch::Tensor decode_boxes(const torch::Tensor& anchors, const torch::Tensor& deltas) {
  auto [ax, ay, aw, ah] = centre_size(anchors);
  constexpr double kMaxLog = 4.1;  // about log(1000 / 16), as is usual
  auto cx = ax + deltas.select(1, 0) * aw, cy = ay + deltas.select(1, 1) * ah;
  auto w = aw * deltas.select(1, 2).clamp_max(kMaxLog).exp(), h = ah * deltas.select(1, 3).clamp_max(kMaxLog).exp();
  return torch::stack({cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h}, 1);
}

}  // namespace xformer::nn
