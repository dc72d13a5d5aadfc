// Checkpoints: one file per checkpoint holding the model, the optimizer, the CPU RNG state (of
// every rank in multi-process training) and
// a JSON "meta" record (format version, LibTorch version, step, epoch, data position, trainer
// counters, the resolved config). Written to a temporary file and renamed, so a crash never
// leaves a half-written checkpoint under a real name.
//
// Layout of a run's checkpoints/: step_00001000.pt ... (the last train.keep_last), and
// last.pt / best.pt as hard links to the newest / best of them.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>

namespace xformer::train {

constexpr int kCheckpointFormat = 2;  // 2: train::Adam state

// `rank_rng_states`, when given, holds every rank's CPU RNG state in rank order (rank 0's is
// this process's own).
void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                     const torch::optim::Optimizer* optimizer, const nlohmann::json& meta,
                     const std::vector<torch::Tensor>& rank_rng_states = {});

// Loads into `model` (and `optimizer` when given) and, with `restore_rng`, restores the RNG
// state saved for `rank`; returns meta, with "rng_restored": false when the checkpoint has no
// state for that rank (it was written by fewer ranks). DataError naming the path if missing,
// unreadable or of another format.
nlohmann::json load_checkpoint(const std::string& path, torch::nn::Module& model,
                               torch::optim::Optimizer* optimizer, bool restore_rng, int rank = 0);

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
// newest), as Vaswani et al. average their last checkpoints. Returns the newest one's meta, with
// "averaged_steps" when several were averaged.
nlohmann::json load_model_weights(const std::vector<std::string>& paths, torch::nn::Module& model);

// Points `link` at `target` atomically (hard link, or copy where links are impossible).
void replace_with_link(const std::string& target, const std::string& link);

}  // namespace xformer::train
