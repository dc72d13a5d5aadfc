#include "xformer/metrics/detection.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

namespace xformer::metrics {

namespace {

constexpr size_t kMaxDetections = 100;  // per image and class

double area(const Box& b) { return std::max(0.0, b[2] - b[0]) * std::max(0.0, b[3] - b[1]); }

// The part of box d inside region r, over d's area (COCO's overlap with a crowd region).
double share_inside(const Box& d, const Box& r) {
  const Box inter{std::max(d[0], r[0]), std::max(d[1], r[1]), std::min(d[2], r[2]), std::min(d[3], r[3])};
  return area(d) > 0 ? area(inter) / area(d) : 0;
}

struct AreaRange {
  double lo, hi;
  bool outside(const Box& b) const { return area(b) < lo || area(b) > hi; }
};

// One class's detections (by decreasing score, at most kMaxDetections) and ground truth, per image.
struct ClassData {
  std::map<int64_t, std::vector<const Detection*>> detections;
  std::map<int64_t, std::vector<const GroundTruth*>> truth;
};

// AP of one class at IoU threshold t over the ground truth inside `range`, or -1 without any.
// Matching follows COCO: each detection, by decreasing score, takes the unmatched ground truth
// of highest IoU >= t, preferring ground truth inside the range; detections matched to ground
// truth outside the range, and unmatched ones outside it, are ignored.
double average_precision(const ClassData& c, double t, const AreaRange& range) {
  auto ignored = [&](const GroundTruth* g) { return g->crowd || range.outside(g->box); };
  std::vector<std::pair<double, bool>> rows;  // (score, true positive) of the counted detections
  int64_t positives = 0;
  // Images in id order, as COCO's evaluation walks them: detections of equal score then rank
  // by image id (the sort below is stable), wherever the ground truth is.
  std::set<int64_t> images;
  for (const auto& [image, unused] : c.truth) images.insert(image);
  for (const auto& [image, unused] : c.detections) images.insert(image);
  static const std::vector<const GroundTruth*> kNone;
  for (int64_t image : images) {
    const auto it = c.truth.find(image);
    std::vector<const GroundTruth*> truth = it == c.truth.end() ? kNone : it->second;
    std::stable_partition(truth.begin(), truth.end(), [&](const GroundTruth* g) { return !ignored(g); });
    for (const auto* g : truth) positives += ignored(g) ? 0 : 1;
    std::vector<char> taken(truth.size(), 0);
    const auto dit = c.detections.find(image);
    if (dit == c.detections.end()) continue;
    for (const auto* d : dit->second) {
      double best = std::min(t, 1 - 1e-10);
      int64_t match = -1;
      for (size_t g = 0; g < truth.size(); ++g) {
        if (taken[g] && !truth[g]->crowd) continue;
        if (match >= 0 && !ignored(truth[match]) && ignored(truth[g])) break;
        const double iou = truth[g]->crowd ? share_inside(d->box, truth[g]->box) : box_iou(d->box, truth[g]->box);
        if (iou < best) continue;
        best = iou, match = static_cast<int64_t>(g);
      }
      if (match >= 0) {
        taken[match] = 1;
        if (!ignored(truth[match])) rows.emplace_back(d->score, true);
      } else if (!range.outside(d->box)) {
        rows.emplace_back(d->score, false);
      }
    }
  }
  if (positives == 0) return -1;
  std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<double> precision, recall;
  double tp = 0, fp = 0;
  for (const auto& r : rows) {
    (r.second ? tp : fp) += 1;
    precision.push_back(tp / (tp + fp));
    recall.push_back(tp / static_cast<double>(positives));
  }
  // Precision envelope (non-increasing), read at recall 0, 0.01, ..., 1.
  for (size_t i = precision.size(); i-- > 1;) precision[i - 1] = std::max(precision[i - 1], precision[i]);
  double sum = 0;
  for (int r = 0; r <= 100; ++r) {
    const auto at = std::lower_bound(recall.begin(), recall.end(), r / 100.0 - 1e-12);
    if (at != recall.end()) sum += precision[at - recall.begin()];
  }
  return sum / 101;
}

// Mean of the values that are not -1 (0 when there are none).
double mean_present(const std::vector<double>& v) {
  double sum = 0;
  int n = 0;
  for (double x : v)
    if (x >= 0) sum += x, ++n;
  return n ? sum / n : 0;
}

}  // namespace

double box_iou(const Box& a, const Box& b) {
  const double w = std::min(a[2], b[2]) - std::max(a[0], b[0]), h = std::min(a[3], b[3]) - std::max(a[1], b[1]);
  const double inter = std::max(0.0, w) * std::max(0.0, h), uni = area(a) + area(b) - inter;
  return uni > 0 ? inter / uni : 0;
}

DetectionAp detection_ap(const std::vector<Detection>& detections, const std::vector<GroundTruth>& truth,
                         int64_t classes) {
  std::vector<ClassData> by_class(classes);
  for (const auto& g : truth)
    if (g.label >= 0 && g.label < classes) by_class[g.label].truth[g.image].push_back(&g);
  for (const auto& d : detections)
    if (d.label >= 0 && d.label < classes) by_class[d.label].detections[d.image].push_back(&d);
  for (auto& c : by_class)
    for (auto& [image, dets] : c.detections) {
      std::stable_sort(dets.begin(), dets.end(), [](const Detection* a, const Detection* b) { return a->score > b->score; });
      if (dets.size() > kMaxDetections) dets.resize(kMaxDetections);
    }
  const AreaRange all{0, 1e10}, small{0, 32 * 32}, medium{32 * 32, 96 * 96}, large{96 * 96, 1e10};
  auto over = [&](const std::vector<double>& thresholds, const AreaRange& range) {
    std::vector<double> aps;
    for (double t : thresholds)
      for (const auto& c : by_class) aps.push_back(average_precision(c, t, range));
    return mean_present(aps);
  };
  std::vector<double> coco;
  for (int i = 0; i < 10; ++i) coco.push_back(0.5 + 0.05 * i);
  DetectionAp r;
  r.map = over(coco, all);
  r.ap50 = over({0.5}, all);
  r.ap75 = over({0.75}, all);
  r.ap_small = over(coco, small);
  r.ap_medium = over(coco, medium);
  r.ap_large = over(coco, large);
  return r;
}

}  // namespace xformer::metrics
