#include "xformer/models/retinanet.h"

#include <cmath>

#include "xformer/nn/boxes.h"
#include "xformer/nn/loss.h"

namespace xformer::models {

namespace F = torch::nn::functional;

namespace {

torch::nn::Conv2d padded_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2));
}

// head_convs x (3x3 conv, ReLU), then a 3x3 conv to `out` channels; weights N(0, 0.01).
torch::nn::Sequential head(int64_t channels, int64_t convs, int64_t out, double bias) {
  torch::nn::Sequential s;
  for (int64_t i = 0; i < convs; ++i) {
    s->push_back(padded_conv(channels, channels, 3));
    s->push_back(torch::nn::ReLU());
  }
  s->push_back(padded_conv(channels, out, 3));
  for (auto& p : s->named_parameters()) {
    if (p.key().find("weight") != std::string::npos) torch::nn::init::normal_(p.value(), 0.0, 0.01);
    else torch::nn::init::zeros_(p.value());
  }
  auto last = s[s->size() - 1]->as<torch::nn::Conv2d>();
  torch::nn::init::constant_(last->bias, bias);
  return s;
}

// (B, A * k, H, W) -> (B, H W A, k): anchors of a cell contiguous, cells in raster order.
torch::Tensor per_anchor(const torch::Tensor& x, int64_t k) {
  return x.permute({0, 2, 3, 1}).reshape({x.size(0), -1, k});
}

}  // namespace

RetinaNetImpl::RetinaNetImpl(const RetinaNetOptions& o) : options_(o) {
  TORCH_CHECK(o.classes > 0 && o.fpn_channels > 0 && o.head_convs >= 0 && o.prior > 0 && o.prior < 1,
              "RetinaNet: positive classes and FPN channels, head_convs >= 0 and 0 < prior < 1 expected");
  backbone = register_module("backbone", ResNet(o.backbone));
  const int64_t Fc = o.fpn_channels, A = o.anchors_per_cell();
  lateral = register_module("lateral", torch::nn::ModuleList());
  smooth = register_module("smooth", torch::nn::ModuleList());
  for (int64_t stage = 1; stage <= 3; ++stage) {
    lateral->push_back(padded_conv(backbone->feature_channels(stage), Fc, 1));
    smooth->push_back(padded_conv(Fc, Fc, 3));
  }
  p6 = register_module("p6", padded_conv(backbone->feature_channels(3), Fc, 3, 2));
  p7 = register_module("p7", padded_conv(Fc, Fc, 3, 2));
  class_head = register_module("class_head", head(Fc, o.head_convs, A * o.classes, -std::log((1 - o.prior) / o.prior)));
  box_head = register_module("box_head", head(Fc, o.head_convs, A * 4, 0.0));
}

RetinaNetOutput RetinaNetImpl::forward(const torch::Tensor& images) {
  const auto& o = options_;
  auto c = backbone->features(images);  // C2 .. C5
  std::vector<torch::Tensor> p(3);
  p[2] = lateral[2]->as<torch::nn::Conv2d>()->forward(c[3]);
  for (int64_t l = 1; l >= 0; --l) {
    auto lat = lateral[l]->as<torch::nn::Conv2d>()->forward(c[l + 1]);
    auto up = F::interpolate(p[l + 1], F::InterpolateFuncOptions()
                                           .size(std::vector<int64_t>{lat.size(2), lat.size(3)})
                                           .mode(torch::kNearest));
    p[l] = lat + up;
  }
  std::vector<torch::Tensor> levels;
  for (int64_t l = 0; l < 3; ++l) levels.push_back(smooth[l]->as<torch::nn::Conv2d>()->forward(p[l]));
  levels.push_back(p6(c[3]));
  levels.push_back(p7(torch::relu(levels.back())));
  RetinaNetOutput out;
  std::vector<torch::Tensor> logits, deltas, anchors;
  // The nominal strides (8 .. 128, or 2 .. 32 with small_images), the same along both axes: a
  // map rounded up from an odd size, or a non-square image, keeps its cells' anchors on the
  // pixels those cells see.
  for (size_t l = 0; l < levels.size(); ++l) {
    const auto& x = levels[l];
    logits.push_back(per_anchor(class_head->forward(x), o.classes));
    deltas.push_back(per_anchor(box_head->forward(x), 4));
    const double stride = (o.backbone.small_images ? 2 : 8) << l;
    anchors.push_back(nn::level_anchors(x.size(2), x.size(3), stride, o.anchor_scale * stride, o.scales, o.ratios)
                          .to(images.device()));
  }
  out.class_logits = torch::cat(logits, 1);
  out.box_deltas = torch::cat(deltas, 1);
  out.anchors = torch::cat(anchors, 0);
  return out;
}

RetinaNetLoss retinanet_loss(const RetinaNetOutput& out, const std::vector<ObjectTargets>& targets) {
  const int64_t B = out.class_logits.size(0), C = out.class_logits.size(2);
  TORCH_CHECK(static_cast<int64_t>(targets.size()) == B, "retinanet_loss: one target per image expected");
  const auto& anchors = out.anchors;
  auto cls = torch::zeros({}, out.class_logits.options().dtype(torch::kFloat));
  auto reg = cls.clone();
  int64_t positives = 0;
  for (int64_t b = 0; b < B; ++b) {
    const auto boxes = targets[b].boxes.to(anchors.device(), torch::kFloat);
    const auto labels = targets[b].labels.to(anchors.device());
    auto target = torch::zeros_like(out.class_logits[b], torch::kFloat);  // (N, C)
    auto counted = torch::ones({anchors.size(0)}, torch::TensorOptions(torch::kBool).device(anchors.device()));
    if (boxes.size(0) > 0) {
      TORCH_CHECK(labels.max().item<int64_t>() < C && labels.min().item<int64_t>() >= 0,
                  "retinanet_loss: object labels must be in [0, ", C, ")");
      auto iou = nn::box_iou(anchors, boxes);  // (N, M)
      auto [best_iou, best_object] = iou.max(1);
      auto positive = best_iou.ge(0.5);
      // Every object keeps its best anchor, whatever the IoU.
      auto best_anchor = iou.argmax(0);  // (M)
      positive.index_fill_(0, best_anchor, true);
      best_object.index_put_({best_anchor}, torch::arange(boxes.size(0), best_object.options()));
      counted = positive.logical_or(best_iou.lt(0.4));
      auto index = positive.nonzero().squeeze(1);
      auto matched = best_object.index_select(0, index);
      target.index_put_({index, labels.index_select(0, matched)}, torch::ones({index.size(0)}, target.options()));
      auto wanted = nn::encode_boxes(anchors.index_select(0, index), boxes.index_select(0, matched));
      auto d = (out.box_deltas[b].index_select(0, index).to(torch::kFloat) - wanted).abs();
      constexpr double kBeta = 1.0 / 9;
      reg = reg + torch::where(d.lt(kBeta), 0.5 * d * d / kBeta, d - 0.5 * kBeta).sum();
      positives += index.size(0);
    }
    auto keep = counted.nonzero().squeeze(1);
    cls = cls + nn::sigmoid_focal_loss(out.class_logits[b].index_select(0, keep), target.index_select(0, keep));
  }
  const double n = static_cast<double>(std::max<int64_t>(1, positives));
  return {cls / n, reg / n, positives};
}

std::vector<Detections> retinanet_detect(const RetinaNetOutput& out, int64_t image_height, int64_t image_width,
                                         double score_threshold, int64_t candidates, double nms_iou,
                                         int64_t max_detections) {
  torch::NoGradGuard no_grad;
  const int64_t B = out.class_logits.size(0), C = out.class_logits.size(2);
  std::vector<Detections> result;
  for (int64_t b = 0; b < B; ++b) {
    auto scores = out.class_logits[b].to(torch::kFloat).sigmoid().flatten();  // (N C)
    auto above = scores.gt(score_threshold).nonzero().squeeze(1);
    auto s = scores.index_select(0, above);
    const int64_t k = std::min<int64_t>(candidates, s.size(0));
    auto [top, order] = s.topk(k);
    auto flat = above.index_select(0, order);
    auto anchor = flat.div(C, "floor"), label = flat.remainder(C);
    auto boxes = nn::decode_boxes(out.anchors.index_select(0, anchor),
                                  out.box_deltas[b].to(torch::kFloat).index_select(0, anchor));
    boxes = torch::stack({boxes.select(1, 0).clamp(0, image_width), boxes.select(1, 1).clamp(0, image_height),
                          boxes.select(1, 2).clamp(0, image_width), boxes.select(1, 3).clamp(0, image_height)},
                         1);
    auto keep = nn::batched_nms(boxes, top, label, nms_iou);
    if (keep.size(0) > max_detections) keep = keep.narrow(0, 0, max_detections);
    result.push_back({boxes.index_select(0, keep).cpu(), top.index_select(0, keep).cpu(), label.index_select(0, keep).cpu()});
  }
  return result;
}

}  // namespace xformer::models
