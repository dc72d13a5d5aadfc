// COCO-style average precision for detection (the definition of the COCO evaluation: greedy
// matching by score at IoU thresholds .50:.05:.95, 101-point interpolated precision, at most
// 100 detections per image, areas small < 32^2 <= medium < 96^2 <= large of the boxes, crowd
// regions ignored: any number of detections may fall on one, measured by the share of the
// detection inside it). No LibTorch here.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

namespace xformer::metrics {

using Box = std::array<double, 4>;  // x1, y1, x2, y2

struct Detection {
  int64_t image = 0, label = 0;
  double score = 0;
  Box box{};
};

struct GroundTruth {
  int64_t image = 0, label = 0;
  Box box{};
  bool crowd = false;  // a region of many objects: detections on it are neither right nor wrong
};

struct DetectionAp {
  double map = 0;              // mean over IoU .50:.05:.95 and the classes with ground truth
  double ap50 = 0, ap75 = 0;   // at IoU .50 and .75
  double ap_small = 0, ap_medium = 0, ap_large = 0;  // mAP over ground truth of each size
};

double box_iou(const Box& a, const Box& b);

// Average precision over `classes` classes. Classes (or size ranges) without ground truth are
// left out of the means; a mean over nothing is 0 (reported as -1 by COCO's tool).
DetectionAp detection_ap(const std::vector<Detection>& detections, const std::vector<GroundTruth>& truth,
                         int64_t classes);

}  // namespace xformer::metrics
