// Exponential moving average of a model's parameters (train.ema_decay), updated after every
// optimizer step and evaluated instead of the trained weights: it smooths out the last updates'
// noise, often for a better valid score at no training cost (Polyak & Juditsky 1992; as
// Marian's exponential smoothing and the EMA of image models).
//
// The average is bias-corrected as Adam's moments are, so it never mixes in a zero or the
// initial weights: after t updates with decay d it is
//   sum_k d^(t-k) (1 - d) w_k / (1 - d^t),  k = 1..t,
// the exponentially weighted mean of the weights after each update, roughly of the last
// 1 / (1 - d) updates. Buffers (batch-norm statistics) are not averaged: they come from the
// trained model.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <vector>

namespace xformer::train {

class WeightAverage {
 public:
  WeightAverage(const torch::nn::Module& model, double decay);

  // After each optimizer step: folds the model's current parameters into the average.
  void update();
  // Starts over from the model's current parameters (as if they were the first update's).
  void restart();
  // Exchanges the model's parameters with their average, in place; calling it again swaps back.
  void swap();

  int64_t updates() const { return updates_; }
  double decay() const { return decay_; }
  const std::vector<torch::Tensor>& average() const { return average_; }

  // State for checkpoints: the averaged tensors, in the model's parameter order, and the
  // number of updates they hold. load() checks count and shapes against the model's.
  void save(torch::serialize::OutputArchive& archive) const;
  nlohmann::json state() const;
  void load(torch::serialize::InputArchive& archive, const nlohmann::json& state, const std::string& path);

 private:
  double decay_;
  int64_t updates_ = 0;
  std::vector<torch::Tensor> params_;   // the model's parameters (handles, not copies)
  std::vector<torch::Tensor> average_;  // same shapes, devices and dtypes
};

// Evaluates with the averaged parameters for the scope's lifetime (no-op for nullptr).
class AveragedWeightsScope {
 public:
  explicit AveragedWeightsScope(WeightAverage* average) : average_(average) {
    if (average_) average_->swap();
  }
  ~AveragedWeightsScope() {
    if (average_) average_->swap();
  }
  AveragedWeightsScope(const AveragedWeightsScope&) = delete;
  AveragedWeightsScope& operator=(const AveragedWeightsScope&) = delete;

 private:
  WeightAverage* average_;
};

}  // namespace xformer::train
