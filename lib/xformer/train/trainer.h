// The one trainer of every task: gradient accumulation, clipping, schedules, NaN/Inf skipping,
// periodic evaluation with best-checkpoint selection and early stopping, atomic checkpoints
// with exact resume, mixed precision on CUDA (bf16 autocast, or fp16 with dynamic loss
// scaling), and a clean stop on SIGINT/SIGTERM.
//
// Losses are summed over a batch and gradients divided by the summed sample size of all
// batches of an update, so update_freq = k over batches of n tokens equals one batch of k*n.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>

#include "xformer/core/config.h"
#include "xformer/core/precision.h"
#include "xformer/tasks/task.h"

namespace xformer::train {

struct TrainerOptions {
  std::string run_dir;
  bool resume = false;
};

class Trainer {
 public:
  Trainer(const json& config, Task& task, TrainerOptions options);
  // Trains until max_steps/max_epochs/patience; returns the process exit code (0, or 130 if
  // interrupted after saving a checkpoint).
  int run();

 private:
  struct UpdateStats;
  bool update(UpdateStats& stats);  // one optimizer step; false at the end of max_epochs
  // An update with a NaN/Inf loss or gradient norm is skipped; too many in a row stop training.
  void skip_nonfinite(const std::string& what, double value);
  void evaluate_and_track();
  void save();  // step checkpoint + last.pt, pruned to keep_last
  void restore();
  json meta() const;

  json config_;
  Task& task_;
  TrainerOptions options_;
  std::shared_ptr<torch::nn::Module> model_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::vector<torch::Tensor> params_;
  torch::Device device_ = torch::kCPU;
  Precision precision_ = Precision::Float32;
  LossScaler scaler_{false};

  int64_t step_ = 0, epoch_ = 1;
  int64_t nonfinite_in_row_ = 0, nonfinite_total_ = 0;
  int64_t evals_since_best_ = 0;
  std::optional<double> best_;
  bool stop_early_ = false;
};

}  // namespace xformer::train
