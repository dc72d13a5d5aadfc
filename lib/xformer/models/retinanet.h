// RetinaNet (Lin et al. 2017) on a ResNet backbone with convolution or SASA layers: a feature
// pyramid P3-P7 from the backbone's stages C3-C5, a classification head (sigmoid per class,
// focal loss) and a box head shared by every level, 9 anchors per location (3 scales x 3
// aspect ratios).
//
// Levels: P3-P5 from C3-C5 by 1x1 lateral convolutions, top-down nearest upsampling and 3x3
// smoothing; P6 a 3x3 stride-2 convolution of C5, P7 another of ReLU(P6). Level P_l's stride
// is 2^l pixels (8 .. 128 for an ImageNet-style backbone, a quarter of that with
// small_images), along both axes, and its anchors have side anchor_scale x stride (x scales,
// x ratios).
#pragma once
#include <torch/torch.h>

#include <vector>

#include "xformer/models/resnet.h"

namespace xformer::models {

struct RetinaNetOptions {
  ResNetOptions backbone;
  int64_t classes = 80;
  int64_t fpn_channels = 256, head_convs = 4;
  double anchor_scale = 4.0;
  std::vector<double> scales{1.0, 1.2599210498948732, 1.5874010519681994};  // 2^0, 2^(1/3), 2^(2/3)
  std::vector<double> ratios{0.5, 1.0, 2.0};
  double prior = 0.01;  // initial foreground probability of every anchor
  int64_t anchors_per_cell() const { return static_cast<int64_t>(scales.size() * ratios.size()); }
};

// Per-anchor outputs for a batch, levels concatenated (N = sum over levels of H W A).
struct RetinaNetOutput {
  torch::Tensor class_logits;  // (B, N, classes)
  torch::Tensor box_deltas;    // (B, N, 4), against the anchors (nn::encode_boxes)
  torch::Tensor anchors;       // (N, 4) in image pixels
};

class RetinaNetImpl : public torch::nn::Module {
 public:
  explicit RetinaNetImpl(const RetinaNetOptions& o);
  RetinaNetOutput forward(const torch::Tensor& images);  // (B, C, H, W)
  const RetinaNetOptions& options() const { return options_; }
  ResNet backbone{nullptr};

 private:
  RetinaNetOptions options_;
  torch::nn::ModuleList lateral{nullptr}, smooth{nullptr};
  torch::nn::Conv2d p6{nullptr}, p7{nullptr};
  torch::nn::Sequential class_head{nullptr}, box_head{nullptr};
};
TORCH_MODULE(RetinaNet);

// One image's objects: boxes (M, 4) in pixels and labels (M) long (M may be 0).
struct ObjectTargets {
  torch::Tensor boxes, labels;
};

struct RetinaNetLoss {
  torch::Tensor classification, regression;  // summed over the batch, each / positives
  int64_t positives = 0;
};

// Anchors with IoU >= 0.5 to an object are its positives (and each object's best anchor), those
// below 0.4 to every object negatives, the rest ignored. Classification: focal loss (alpha
// 0.25, gamma 2) over positives and negatives; regression: smooth L1 (beta 1/9) of the
// positives' deltas. Both are divided by the number of positives (at least 1).
RetinaNetLoss retinanet_loss(const RetinaNetOutput& out, const std::vector<ObjectTargets>& targets);

struct Detections {
  torch::Tensor boxes, scores, labels;  // (K, 4), (K), (K) long, by decreasing score
};

// Per image: the anchors' class scores above score_threshold (at most `candidates` of them),
// decoded boxes clipped to the image, per-class NMS at nms_iou, the best max_detections.
std::vector<Detections> retinanet_detect(const RetinaNetOutput& out, int64_t image_height, int64_t image_width,
                                         double score_threshold = 0.05, int64_t candidates = 1000,
                                         double nms_iou = 0.5, int64_t max_detections = 100);

}  // namespace xformer::models
