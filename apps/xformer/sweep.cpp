// xformer sweep --config SWEEP.json [--jobs N] [--threads T] [--dry-run] [--emit slurm] [--trial I]
// xformer sweep --summarize DIR
// Expands a sweep file into trials and runs each as `xformer train` (+ `xformer eval`) in its
// own run directory; see lib/xformer/sweep/ and docs/scaling.md.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <iostream>

#include "verbs.h"
#include "xformer/core/error.h"
#include "xformer/core/runtime.h"
#include "xformer/core/subprocess.h"
#include "xformer/sweep/results_table.h"
#include "xformer/sweep/sweep_state.h"
#include "xformer/sweep/trial_runner.h"

namespace xformer::app {

namespace {
struct SweepArgs {
  std::string config, summarize, emit;
  int jobs = 1, threads = 0, trial = -1;
  bool dry_run = false;
};

int sweep(const SweepArgs& a) {
  if (!a.summarize.empty()) {
    std::cout << sweep::write_results(a.summarize) << std::flush;
    return kExitOk;
  }
  if (a.config.empty()) throw ConfigError("usage error: sweep needs --config SWEEP.json (or --summarize DIR)");
  if (a.jobs < 1) throw ConfigError("usage error: --jobs must be >= 1, got " + std::to_string(a.jobs));
  if (a.threads < 0) throw ConfigError("usage error: --threads must be >= 0, got " + std::to_string(a.threads));
  if (!a.emit.empty() && a.emit != "slurm")
    throw ConfigError("usage error: --emit supports 'slurm', got '" + a.emit + "'");
  if (!a.emit.empty() && (a.dry_run || a.trial >= 0))
    throw ConfigError(std::string("usage error: --emit writes a job script for every trial; it takes no ") +
                      (a.dry_run ? "--dry-run" : "--trial"));

  sweep::SweepSpec spec = sweep::load_sweep(a.config);
  // Every trial's config, before anything runs; its data too, unless it runs elsewhere or not at all.
  const json first = sweep::validate_trials(spec, /*data_here=*/a.emit.empty() && !a.dry_run);
  const int n = static_cast<int>(spec.trials.size());
  if (a.trial >= n)
    throw ConfigError("usage error: --trial " + std::to_string(a.trial) + " is out of range: the sweep has " +
                      std::to_string(n) + " trial(s), 0.." + std::to_string(n - 1));
  const std::string binary = self_executable();

  if (!a.emit.empty()) {
    const std::string path = sweep::emit_slurm(spec, binary);
    sweep::write_plan(spec);
    std::cout << path << std::endl;
    spdlog::info("wrote a Slurm job array of {} trial(s); submit it with: sbatch {}", n, path);
    return kExitOk;
  }

  sweep::RunOptions opt;
  opt.binary = binary;
  opt.only_trial = a.trial;
  opt.jobs = a.trial >= 0 ? 1 : std::min(a.jobs, std::max(1, n));
  if (a.threads > 0 && sweep::sweep_sets_threads(spec, first))
    throw ConfigError("usage error: --threads " + std::to_string(a.threads) + ": the sweep sets train.threads or "
                      "train.blas_threads itself (drop one or the other)");
  if (a.threads > 0)
    opt.threads = a.threads;
  else if (!sweep::sweep_sets_threads(spec, first))
    opt.threads = std::max(1, available_cores() / opt.jobs);

  if (a.dry_run) {
    std::cout << "sweep " << spec.name << ": " << n << " trial(s) in " << spec.output << ", metric " << spec.metric
              << " (" << spec.mode << "), " << opt.jobs << " at a time\n";
    for (const auto& t : spec.trials) {
      if (a.trial >= 0 && t.index != a.trial) continue;
      const json st = sweep::read_status(spec.output, t.name);
      std::cout << "trial " << t.index << " " << t.name << " [" << st.value("status", "pending") << "]\n";
      const std::string run_dir = sweep::run_path(spec.output, t.name);
      std::cout << "  " << sweep::command_line(sweep::train_command(spec, t, opt, sweep::start_flag(run_dir))) << "\n";
      if (spec.eval.enabled) std::cout << "  " << sweep::command_line(sweep::eval_command(spec, t, opt)) << "\n";
    }
    std::cout << std::flush;
    return kExitOk;
  }
  return sweep::run_sweep(spec, opt);
}
}  // namespace

void add_sweep(CLI::App& app, Action& run) {
  auto args = std::make_shared<SweepArgs>();
  auto* cmd = app.add_subcommand("sweep", "Run a sweep of trials over config keys (grid or random search)");
  auto* config = cmd->add_option("-c,--config", args->config, "Sweep file (JSON, see docs/scaling.md)")->check(kNotEmpty);
  auto* jobs = cmd->add_option("-j,--jobs", args->jobs, "Trials to run at once")->capture_default_str();
  auto* threads = cmd->add_option("--threads", args->threads,
                                  "OpenBLAS threads per trial (default: the available cores / jobs, unless the sweep "
                                  "sets train.threads or train.blas_threads)");
  auto* dry_run = cmd->add_flag("--dry-run", args->dry_run, "Print the trials and their commands; run nothing");
  auto* emit = cmd->add_option("--emit", args->emit, "Write a job script instead of running: slurm");
  auto* trial = cmd->add_option("--trial", args->trial, "Run only trial I (what each Slurm array task does)")
                    ->check(CLI::NonNegativeNumber);
  cmd->add_option("--summarize", args->summarize, "Write and print the results table of a sweep directory")
      ->check(kNotEmpty)
      ->excludes(config)
      ->excludes(jobs)
      ->excludes(threads)
      ->excludes(dry_run)
      ->excludes(emit)
      ->excludes(trial);
  emit->excludes(jobs)->excludes(threads);  // the job script runs one trial per array task
  cmd->callback([args, &run] { run = [args] { return sweep(*args); }; });
}

}  // namespace xformer::app
