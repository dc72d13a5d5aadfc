// Running the xformer binary from tests: a command line in the source tree, its exit code and
// its combined output; and reading a run's metrics.jsonl.
#pragma once
#include <nlohmann/json.hpp>

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

// Lines of RUN/metrics.jsonl whose "split" equals `split`.
std::vector<nlohmann::json> read_metrics(const std::string& run_dir, const std::string& split);

// The arguments every test run of the tiny config shares: quick, quiet, hermetic.
std::string tiny_args(const std::string& run_dir, const std::string& spm_cache);

}  // namespace xformer::testing
