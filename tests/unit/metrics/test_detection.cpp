// COCO-style detection AP on constructed cases with known values: perfect, missed, duplicate,
// wrong class, IoU thresholds, size ranges.
#include "test_support.h"

#include "xformer/metrics/detection.h"

using namespace xformer::metrics;

namespace {
Detection det(int64_t image, int64_t label, double score, Box b) { return {image, label, score, b}; }
GroundTruth gt(int64_t image, int64_t label, Box b) { return {image, label, b}; }
}  // namespace

TEST_CASE("detection AP: perfect, missed, duplicate and wrong-class cases", "[metrics][detection]") {
  const Box a{10, 10, 60, 60}, b{100, 20, 150, 90}, c{5, 5, 45, 30};
  std::vector<GroundTruth> truth = {gt(0, 0, a), gt(0, 1, b), gt(1, 0, c)};

  auto perfect = detection_ap({det(0, 0, 0.9, a), det(0, 1, 0.3, b), det(1, 0, 0.5, c)}, truth, 3);
  CHECK(perfect.map == Approx(1.0));
  CHECK(perfect.ap50 == Approx(1.0));
  CHECK(perfect.ap75 == Approx(1.0));

  // Class 0: one of its two objects found: precision 1 up to recall 0.5, i.e. 51 of the 101
  // recall points; class 1 perfect.
  auto missed = detection_ap({det(0, 0, 0.9, a), det(0, 1, 0.3, b)}, truth, 3);
  CHECK(missed.map == Approx((51.0 / 101 + 1) / 2));

  // Class 0 found twice in image 0 (the lower-scored copy is a false positive) before image 1's:
  // TP, FP, TP -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> (51 + 50 * 2/3) / 101.
  auto duplicate = detection_ap({det(0, 0, 0.9, a), det(0, 0, 0.8, a), det(1, 0, 0.7, c)}, {truth[0], truth[2]}, 1);
  CHECK(duplicate.map == Approx((51 + 50 * 2.0 / 3) / 101));

  // The right box with the wrong class: class 0 gets nothing; class 1 (no objects) does not count.
  auto wrong = detection_ap({det(0, 1, 0.9, a)}, {truth[0]}, 2);
  CHECK(wrong.map == 0.0);
  CHECK(wrong.ap50 == 0.0);
}

TEST_CASE("detection AP: IoU thresholds and object sizes", "[metrics][detection]") {
  // IoU 0.62 counts at .50, .55 and .60 only.
  auto partial = detection_ap({det(0, 0, 0.9, {0, 0, 10, 6.2})}, {gt(0, 0, {0, 0, 10, 10})}, 1);
  CHECK(box_iou({0, 0, 10, 6.2}, {0, 0, 10, 10}) == Approx(0.62));
  CHECK(partial.ap50 == Approx(1.0));
  CHECK(partial.ap75 == 0.0);
  CHECK(partial.map == Approx(0.3));

  // A small (10x10) object found, a large (100x100) one missed; no medium objects.
  std::vector<GroundTruth> truth = {gt(0, 0, {0, 0, 10, 10}), gt(0, 0, {200, 200, 300, 300})};
  auto sized = detection_ap({det(0, 0, 0.9, {0, 0, 10, 10})}, truth, 1);
  CHECK(sized.ap_small == Approx(1.0));
  CHECK(sized.ap_large == 0.0);
  CHECK(sized.ap_medium == 0.0);
  CHECK(sized.map == Approx(51.0 / 101));
  // A false positive of large size does not hurt the small range.
  auto with_fp = detection_ap({det(0, 0, 0.95, {400, 400, 500, 500}), det(0, 0, 0.9, {0, 0, 10, 10})}, truth, 1);
  CHECK(with_fp.ap_small == Approx(1.0));
  CHECK(with_fp.map < sized.map);
}

TEST_CASE("detection AP: equal scores rank by image id, as COCO's evaluation does", "[metrics][detection]") {
  const Box a{10, 10, 60, 60}, far{200, 200, 250, 250};
  // Class 0: one object, in image 1, found at score 0.9; image 0 has no class-0 object but a
  // class-0 detection of the same score. Image 0 comes first: FP then TP -> precision 1/2 at
  // recall 1 (AP 0.5). With the images' ids the other way round: TP first, AP 1.
  const std::vector<GroundTruth> truth = {gt(1, 0, a), gt(0, 1, far)};
  CHECK(detection_ap({det(1, 0, 0.9, a), det(0, 0, 0.9, a)}, truth, 1).map == Approx(0.5));
  const std::vector<GroundTruth> swapped = {gt(0, 0, a), gt(1, 1, far)};
  CHECK(detection_ap({det(0, 0, 0.9, a), det(1, 0, 0.9, a)}, swapped, 1).map == Approx(1.0));
}

TEST_CASE("detection AP: detections on a crowd region are neither right nor wrong", "[metrics][detection]") {
  const Box a{10, 10, 60, 60}, crowd_box{100, 100, 300, 300};
  GroundTruth crowd = gt(0, 0, crowd_box);
  crowd.crowd = true;
  // One object found, and three detections inside the crowd region (IoU with it far below 0.5,
  // but wholly inside it): ignored, so AP stays 1. Without the crowd flag the region is a second,
  // missed object and they are 3 false positives ranked first: precision 1/4 up to recall 1/2.
  const std::vector<Detection> found = {det(0, 0, 0.9, {120, 120, 160, 160}), det(0, 0, 0.9, {200, 200, 240, 240}),
                                        det(0, 0, 0.8, {150, 250, 190, 290}), det(0, 0, 0.5, a)};
  CHECK(detection_ap(found, {gt(0, 0, a), crowd}, 1).map == Approx(1.0));
  CHECK(detection_ap(found, {gt(0, 0, a), gt(0, 0, crowd_box)}, 1).map == Approx(0.25 * 51 / 101));
  // A detection half inside the crowd region counts as on it at IoU .50 only: a false positive
  // at the other nine thresholds, ranked first: (1 + 9 * 0.5) / 10.
  CHECK(detection_ap({det(0, 0, 0.9, {50, 150, 150, 250}), det(0, 0, 0.5, a)}, {gt(0, 0, a), crowd}, 1).map ==
        Approx((1 + 9 * 0.5) / 10));
  // A class whose only ground truth is a crowd region has no AP (left out of the mean).
  CHECK(detection_ap({det(0, 0, 0.9, a), det(0, 1, 0.9, {120, 120, 160, 160})}, {gt(0, 0, a), [&] {
                       auto g = gt(0, 1, crowd_box);
                       g.crowd = true;
                       return g;
                     }()}, 2).map == Approx(1.0));
}
