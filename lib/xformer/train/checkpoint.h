// Checkpoints: one file per checkpoint holding the model, the optimizer, the RNG states (CPU,
// and the GPU's when training on CUDA, of every rank in multi-process training) and
// a JSON "meta" record (format version, LibTorch version, step, epoch, data position, trainer
// counters, the resolved config) and, with train.ema_decay, the moving average of the weights. Written to a temporary file and renamed, so a crash never
// leaves a half-written checkpoint under a real name.
//
// Layout of a run's checkpoints/: step_00001000.pt ... (the last train.keep_last), and
// last.pt / best.pt as hard links to the newest / best of them.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>

#include "xformer/train/weight_average.h"

namespace xformer::train {

constexpr int kCheckpointFormat = 2;  // 2: train::Adam state

// The random streams a process draws from: the CPU generator's state and, when `device` is
// CUDA, that device's generator's (dropout on the GPU draws there; undefined otherwise).
struct RngState {
  torch::Tensor cpu, device;
};
RngState current_rng_state(const torch::Device& device);

// `rank_rng_states`, when given, holds every rank's RNG state in rank order (else this
// process's CPU state is saved). `average`, when given, is saved next to the trained weights.
void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                     const torch::optim::Optimizer* optimizer, const nlohmann::json& meta,
                     const std::vector<RngState>& rank_rng_states = {},
                     const WeightAverage* average = nullptr);

struct LoadOptions {
  torch::optim::Optimizer* optimizer = nullptr;  // resume: the optimizer's state too
  bool restore_rng = false;                      // resume: the RNG state saved for `rank`
  int rank = 0;
  torch::Device device = torch::kCPU;  // with restore_rng: a CUDA device's generator too
  // Resume: the weight average's state; restarted from the loaded weights when the checkpoint
  // has none with the same decay (averaging turned on, or its decay changed, at resume).
  WeightAverage* average = nullptr;
  // Evaluation: the model gets the checkpoint's averaged weights when it has them.
  bool averaged_weights = false;
};

// Loads into `model` (and what `options` ask for); returns meta, with "rng_restored": false when
// the checkpoint has no RNG state for the rank (it was written by fewer ranks), "ema_restored"
// when options.average was given, and "ema_loaded" when the model got averaged weights.
// DataError naming the path if missing, unreadable, of another format or not fitting the model.
nlohmann::json load_checkpoint(const std::string& path, torch::nn::Module& model, const LoadOptions& options = {});

// Reads only the meta record.
nlohmann::json read_checkpoint_meta(const std::string& path);

// A run's step checkpoint files: "step_00001000.pt" for step 1000, and those in `dir`, oldest
// first (ordered by step; other files, even "step_notes.pt", are not listed).
std::string step_checkpoint_name(int64_t step);
std::vector<std::string> step_checkpoints(const std::string& dir);

// "last" | "best" | "average:N" | a path -> the files to load: one, or for average:N the run's
// last N step checkpoints, oldest first (DataError if absent, ConfigError for a bad N or fewer
// step checkpoints than N).
std::vector<std::string> resolve_checkpoints(const std::string& run_dir, const std::string& which);

// Loads the model weights of `paths` into `model`: one checkpoint as load_checkpoint does, or the
// average of several (floating-point parameters and buffers averaged; integer buffers from the
// newest), as Vaswani et al. average their last checkpoints. With `averaged_weights`, each
// checkpoint's moving average of the weights (train.ema_decay) is used where it has one; when
// only some of several checkpoints have one, ConfigError (never a silent mixture).
// Returns the newest one's meta, with "averaged_steps" when several were averaged.
nlohmann::json load_model_weights(const std::vector<std::string>& paths, torch::nn::Module& model,
                                  bool averaged_weights = true);

// Points `link` at `target` atomically (hard link, or copy where links are impossible).
void replace_with_link(const std::string& target, const std::string& link);

}  // namespace xformer::train
