// A run directory is self-describing:
//   config.json    the resolved config (every key, defaults filled in)
//   train.log      everything logged
//   metrics.jsonl  one JSON object per line: step, split, loss, ... (eval lines add task metrics)
//   checkpoints/   step_*.pt, last.pt, best.pt
//   samples/       what eval and sample wrote (hypotheses, samples)
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace xformer::train {

// An exclusive lock on a run directory (flock on DIR/.lock, which holds the owner's pid),
// held while the object lives and released by the kernel if the process dies.
class RunDirLock {
 public:
  RunDirLock() = default;
  explicit RunDirLock(int fd) : fd_(fd) {}
  RunDirLock(RunDirLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  RunDirLock& operator=(RunDirLock&& other) noexcept;
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;
  ~RunDirLock();

 private:
  int fd_ = -1;
};

// Where `xformer train --config FILE` writes without --run-dir: runs/<FILE's folder>/<FILE's
// name without .json> (configs/music/demo.json -> runs/music/demo), so that configs of one name
// in different folders never share a run.
std::string default_run_dir(const std::string& config_file);

// Prepares `dir` for `xformer train` and locks it: another process training in it is an error
// (exit 2) naming its pid, so two trainers never write one run. A non-empty dir is an error
// (exit 2), left as it was, unless `resume` (keep it) or `force` (empty it first; refused, before
// anything is written, when the dir holds anything xformer did not write there).
RunDirLock prepare_run_dir(const std::string& dir, bool resume, bool force);

// The resolved config saved in a run dir (DataError naming the file if missing/corrupt).
nlohmann::json read_run_config(const std::string& dir);
void write_run_config(const std::string& dir, const nlohmann::json& config);

// `config` (the run's with `option`'s changes: "--resume", "--set") against the run's saved config:
// ConfigError (exit 2) naming the first task or model key whose value differs, since the
// checkpoint was made for that model and data. Dropout, batching, evaluation, sampling, training
// and optimizer keys may differ.
void check_config_fits_checkpoint(const std::string& dir, const nlohmann::json& config, const std::string& option);
// The same comparison between the config a checkpoint was trained with (its meta's "config")
// and the config it is loaded for: ConfigError naming the first key that differs (an edited
// config.json, or --checkpoint naming another run's file).
void check_checkpoint_fits_config(const std::string& checkpoint, const nlohmann::json& meta, const nlohmann::json& config);

// Resuming from the checkpoint of `step`: metrics.jsonl loses the lines of later steps (logged
// before the run stopped, and about to be logged again).
void drop_metrics_after(const std::string& dir, int64_t step);

// Appends one line to metrics.jsonl.
void append_metrics(const std::string& dir, const nlohmann::json& record);

}  // namespace xformer::train
