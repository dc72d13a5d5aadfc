// The scores of a classifier over a split, summed batch by batch: negative log-likelihood,
// top-1 and top-k accuracy (k = min(5, classes), so with 5 classes or fewer every label is in
// the top k and top-k accuracy is 1), and the confusion matrix of the top-1 predictions.
#pragma once
#include <torch/types.h>

#include <cstdint>

namespace xformer::metrics {

class ClassificationScores {
 public:
  explicit ClassificationScores(int64_t classes);

  // logits (B, classes) on any device, labels (B) of class indices.
  void add(const torch::Tensor& logits, const torch::Tensor& labels);

  int64_t count() const { return count_; }
  // Means over the images added so far (count() must be positive).
  double nll() const;
  double accuracy() const;
  double top5_accuracy() const;
  // (true class, predicted class) counts, int64 on the CPU.
  const torch::Tensor& confusion() const { return confusion_; }

 private:
  int64_t k_;
  int64_t count_ = 0;
  double nll_ = 0, top1_ = 0, topk_ = 0;
  torch::Tensor confusion_;
};

}  // namespace xformer::metrics
