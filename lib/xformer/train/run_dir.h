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

// Prepares `dir` for `xformer train`. A non-empty dir is an error (exit 2) unless `resume`
// (keep it) or `force` (empty it first).
void prepare_run_dir(const std::string& dir, bool resume, bool force);

// The resolved config saved in a run dir (DataError naming the file if missing/corrupt).
nlohmann::json read_run_config(const std::string& dir);
void write_run_config(const std::string& dir, const nlohmann::json& config);

// Appends one line to metrics.jsonl.
void append_metrics(const std::string& dir, const nlohmann::json& record);

}  // namespace xformer::train
