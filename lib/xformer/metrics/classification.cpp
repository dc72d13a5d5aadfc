#include "xformer/metrics/classification.h"

#include <torch/nn/functional/loss.h>

#include <algorithm>
#include <stdexcept>

namespace xformer::metrics {

ClassificationScores::ClassificationScores(int64_t classes)
    : k_(std::min<int64_t>(5, classes)), confusion_(torch::zeros({classes, classes}, torch::kLong)) {}

void ClassificationScores::add(const torch::Tensor& logits, const torch::Tensor& labels) {
  const auto scores = logits.to(torch::kCPU, torch::kFloat);  // (B, C)
  const auto truth = labels.to(torch::kCPU, torch::kLong);     // (B)
  nll_ += torch::nn::functional::cross_entropy(scores, truth,
                                               torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
              .item<double>();
  const auto best = std::get<1>(scores.topk(k_, 1));  // (B, k), best first
  const auto hit = best.eq(truth.unsqueeze(1));
  top1_ += hit.select(1, 0).sum().item<double>();
  topk_ += hit.any(1).sum().item<double>();
  confusion_.index_put_({truth, best.select(1, 0)}, torch::ones_like(truth), /*accumulate=*/true);
  count_ += truth.size(0);
}

static double mean(double sum, int64_t count) {
  if (count == 0) throw std::logic_error("ClassificationScores: no images were added");
  return sum / static_cast<double>(count);
}

double ClassificationScores::nll() const { return mean(nll_, count_); }
double ClassificationScores::accuracy() const { return mean(top1_, count_); }
double ClassificationScores::top5_accuracy() const { return mean(topk_, count_); }

}  // namespace xformer::metrics
