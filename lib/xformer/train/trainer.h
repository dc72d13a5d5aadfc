// The one trainer of every task: gradient accumulation, clipping, schedules, NaN/Inf skipping,
// periodic evaluation with best-checkpoint selection and early stopping, atomic checkpoints
// with exact resume, mixed precision on CUDA (bf16 autocast, or fp16 with dynamic loss
// scaling), and a clean stop on SIGINT/SIGTERM.
//
// Losses are summed over a batch and gradients divided by the summed sample size of all
// batches of an update, so update_freq = k over batches of n tokens equals one batch of k*n.
//
// Data parallel over R ranks (a Communicator): an update is still update_freq batches of the
// one global batch order; rank r computes those whose index in the update is r mod R and skips
// the others, then losses, sample sizes and gradients are summed over the ranks. So the
// effective batch never changes with R, and without dropout R ranks train the same model as
// one process with the same config (up to float summation order; with dropout each rank draws
// its own masks). Rank 0 evaluates and writes logs and checkpoints;
// each rank's RNG state goes into the checkpoint, so resume stays exact.
//
// With train.ema_decay, rank 0 also keeps a moving average of the weights (WeightAverage):
// evaluations, and so the best checkpoint, use it, and checkpoints save it beside the weights.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>

#include "xformer/core/config.h"
#include "xformer/core/precision.h"
#include "xformer/report/tensorboard.h"
#include "xformer/tasks/task.h"
#include "xformer/train/distributed.h"
#include "xformer/train/grad_reducer.h"
#include "xformer/train/weight_average.h"

namespace xformer::train {

struct TrainerOptions {
  std::string run_dir;
  bool resume = false;
  Communicator* comm = nullptr;  // set: one rank of a multi-process job
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
  // Rank 0: evaluates on the valid split, logs, and updates best_/patience; true on a new best.
  bool evaluate_valid();
  void log_train(const UpdateStats& stats);  // one metrics.jsonl line and one log line
  void record_metrics(const json& record);   // to metrics.jsonl and the TensorBoard events
  bool main_rank() const { return !options_.comm || options_.comm->rank() == 0; }
  int world_size() const { return options_.comm ? options_.comm->world_size() : 1; }
  void seed_rank_stream();  // ranks other than 0: a dropout stream of their own
  // Several ranks: batch-norm running statistics, which each rank gathers from its own batches,
  // become their mean over the ranks (before every evaluation and checkpoint), so that what is
  // evaluated and saved reflects every batch, and a resumed run finds all ranks alike.
  void average_running_stats();
  void save();  // average_running_stats(), then write_checkpoint()
  void write_checkpoint();  // step checkpoint + last.pt, pruned to keep_last
  void restore();
  json meta() const;

  json config_;
  Task& task_;
  TrainerOptions options_;
  std::shared_ptr<torch::nn::Module> model_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<GradReducer> reducer_;  // several ranks: sums gradients during backward
  std::unique_ptr<WeightAverage> average_;  // train.ema_decay > 0, rank 0: evaluated and saved
  std::unique_ptr<report::ScalarEventWriter> events_;  // train.tensorboard, rank 0
  torch::Device device_ = torch::kCPU;
  Precision precision_ = Precision::Float32;
  LossScaler scaler_{false};

  int64_t step_ = 0, epoch_ = 1;
  int64_t nonfinite_in_row_ = 0, nonfinite_total_ = 0;
  int64_t evals_since_best_ = 0;
  int64_t evaluated_step_ = -1;  // the last step validated (saved, so a finished run resumed does not validate it again)
  std::optional<double> best_;
  bool stop_early_ = false;
  bool interrupted_ = false;  // a stop signal, agreed on by every rank
  std::vector<std::string> sum_keys_;  // the task's extra loss statistics, in all-reduce order
  bool sum_keys_agreed_ = false;       // multi-process: sum_keys_ are rank 0's
};

}  // namespace xformer::train
