// Running the xformer binary from tests: a command line in the source tree, its exit code and
// its combined output; and reading a run's metrics.jsonl.
#pragma once
#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

namespace xformer::testing {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout + stderr
};

// Runs `xformer ARGS` through the shell, in the source directory (configs name paths relative
// to it). Returns the exit code and output.
CommandResult run_xformer(const std::string& args);

// Runs an arbitrary shell command in the source directory.
CommandResult run_shell(const std::string& command);

// The whole content of a file ("" when it cannot be read).
std::string read_text(const std::string& path);

// Lines of RUN/metrics.jsonl whose "split" equals `split`.
std::vector<nlohmann::json> read_metrics(const std::string& run_dir, const std::string& split);

// Every metric in the run's last validation line is one its task declares (TaskEntry::metrics),
// so that train.best_metric accepts each of them before the run starts.
void check_metrics_declared(const std::string& run_dir);

// The arguments every test run of the tiny config shares: quick, quiet, hermetic.
std::string tiny_args(const std::string& run_dir, const std::string& spm_cache);

// Resume must be exact: trains `steps` updates in one run (DIR/full) and in two (DIR/split:
// `first` updates, then `train [resume_prefix] --resume`), and checks that every logged training
// loss is equal. `train_args(run_dir)` gives the arguments after `train` (config, --run-dir,
// overrides with train.log_every=1) except train.max_steps.
void check_exact_resume(const std::string& dir, const std::function<std::string(const std::string&)>& train_args,
                        int first, int steps, const std::string& resume_prefix = "");

}  // namespace xformer::testing
