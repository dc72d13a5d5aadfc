// The checks of a training config that need no device, data or run directory. `xformer train`
// runs them before it creates or touches the run directory, sweeps for every trial before the
// first starts, and `xformer info --config` before printing the config: a config that passes
// here fails later only on what needs the machine (device, memory) or the data's contents.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace xformer::train {

// ConfigError naming the key: train.best_metric reported by the task, recomputation on a model
// that has such layers, the schedule (check_schedule), a step or epoch limit.
void check_training_config(const nlohmann::json& config);

// ConfigError unless task.<split> names data that exists, for each of `splits` the config has.
// `train` checks task.train and task.valid before it starts, `eval` the split it evaluates, a
// sweep that runs here every trial's (and the split its evals read); `info`, `sweep --dry-run`
// and `--emit` do not (a config may be looked at, or a sweep planned, where its data is not).
void check_data_paths_exist(const nlohmann::json& config, const std::vector<std::string>& splits = {"train", "valid"});

}  // namespace xformer::train
