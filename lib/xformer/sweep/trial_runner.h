// Running a sweep's trials: each trial is `xformer train` (then, if the sweep asks, `xformer
// eval`) started as a child process from an argument vector (fork + execv, never a shell), with
// its output appended to OUTPUT/logs/NAME.log. Up to `jobs` trials run at once, each with its
// share of the CPU cores. Trials already done (with the same overrides) are skipped; a trial
// with a checkpoint continues with --resume; a failed trial is retried `retries` times and then
// reported, while the others go on. SIGINT/SIGTERM are passed on to the running trials once
// (they save a checkpoint and exit 130) and the sweep exits 130.
#pragma once
#include <string>
#include <vector>

#include "xformer/sweep/sweep_spec.h"

namespace xformer::sweep {

struct RunOptions {
  std::string binary;       // the xformer binary the trials run
  int jobs = 1;             // trials at once
  int threads = 0;          // OpenBLAS threads per trial (train.blas_threads); 0 = leave the config alone
  int only_trial = -1;      // run just this trial (Slurm array task); -1 = all
};

// The --set that gives a trial `threads` cores, or none when the sweep sets threads itself.
bool sweep_sets_threads(const SweepSpec& spec, const nlohmann::json& resolved_first);

// The train command of a trial; `start` is "", "--resume" or "--force".
std::vector<std::string> train_command(const SweepSpec& spec, const Trial& trial, const RunOptions& opt,
                                       const std::string& start);
// The eval command of a trial (empty when the sweep has no eval).
std::vector<std::string> eval_command(const SweepSpec& spec, const Trial& trial, const RunOptions& opt);

// How a run directory is (re)started: "--resume" with a checkpoint, "--force" when it holds
// something else, "" when it is empty or absent.
std::string start_flag(const std::string& run_dir);

// An argument vector as a shell-quoted line, for people (dry runs, logs, the Slurm script).
std::string shell_quote(const std::string& arg);
std::string command_line(const std::vector<std::string>& argv);

// Runs the trials (all, or opt.only_trial), writes the plan, the status files and the results
// table; prints progress and the table. Returns the exit code: 0 when every trial is done, 1 when
// one finally failed, 130 when interrupted.
int run_sweep(const SweepSpec& spec, const RunOptions& opt);

// Writes OUTPUT/sweep.slurm (a job array with one task per trial, each running
// `xformer sweep --config SWEEP --trial $SLURM_ARRAY_TASK_ID`) and returns its path.
std::string emit_slurm(const SweepSpec& spec, const std::string& binary);

}  // namespace xformer::sweep
