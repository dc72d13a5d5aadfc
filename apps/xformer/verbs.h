// The verbs of the xformer binary. Each add_* declares its options on a CLI11 subcommand and
// sets `run` to the function that executes it (returning the exit code).
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "xformer/core/config.h"
#include "xformer/core/precision.h"
#include "xformer/tasks/task.h"

namespace xformer::app {

using Action = std::function<int()>;

void add_train(CLI::App& app, Action& run);
void add_eval(CLI::App& app, Action& run);
void add_sample(CLI::App& app, Action& run);
void add_info(CLI::App& app, Action& run);
void add_sweep(CLI::App& app, Action& run);

// Shared by the verbs -----------------------------------------------------------------------

// Refuses an empty value for a path option (--run-dir "" would otherwise mean "not given").
extern const CLI::Validator kNotEmpty;

// Declares the repeatable -s/--set KEY=VALUE option.
void add_set_option(CLI::App* cmd, std::vector<std::string>& sets);

// Reads FILE (with "extends"), applies KEY=VALUE overrides, validates: the resolved config.
json load_resolved_config(const std::string& file, const std::vector<std::string>& sets);

// Applies the runtime part of a config (threads) and returns the device it asks for. The line
// saying how the threads were set is logged, or left in `threads_line` for a later log.
torch::Device setup_runtime(const json& config, std::string* threads_line = nullptr);

// Builds the config's task (which builds its model) for a run directory.
std::unique_ptr<Task> make_task(const json& config, const RunContext& ctx);

// Which weights eval/sample load: --checkpoint last|best|average:N|PATH, and --no-ema (the
// trained weights rather than their moving average, in runs with train.ema_decay).
struct CheckpointChoice {
  std::string which = "best";
  bool no_ema = false;
};
void add_checkpoint_options(CLI::App* cmd, CheckpointChoice& choice);

// Loads a run's config, with `sets` (KEY=VALUE) applied for this command only, and its checkpoint
// into a freshly built task (eval/sample). A change to the model or data the checkpoint was made
// for is a ConfigError.
struct LoadedRun {
  json config;
  std::unique_ptr<Task> task;
  std::vector<std::string> ensemble;  // the --ensemble runs whose models decode with this one's
  std::vector<json> ensemble_meta;    // their checkpoints' meta, as checkpoint_meta
  torch::Device device = torch::kCPU;
  Precision precision = Precision::Float32;  // eval and sample autocast as training did
  json checkpoint_meta;
  std::string checkpoint_path;
};
// `ensemble` (eval/sample --ensemble RUN...) names other runs of the same task whose models join
// the run's (Task::add_ensemble_member), each loaded with the same checkpoint choice; refused
// before anything is loaded unless the task combines runs and the choice is last, best or average:N.
LoadedRun load_run(const std::string& run_dir, const CheckpointChoice& checkpoint, const std::vector<std::string>& sets,
                   const std::vector<std::string>& ensemble = {});

// Declares the repeatable --ensemble RUN option of eval and sample.
void add_ensemble_option(CLI::App* cmd, std::vector<std::string>& runs);

}  // namespace xformer::app
