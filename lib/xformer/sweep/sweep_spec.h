// Experiment sweeps: a sweep file (JSON) names a base config and the config keys to vary, and
// expands into a list of trials, each a set of `--set KEY=VALUE` overrides with a run-directory
// name derived from its settings. See docs/scaling.md for the file format.
//
// Expansion order (stable, so a trial's index and name never depend on anything but the file):
//   grid    the cartesian product of the grid axes, in the order they are written in the file,
//           the last axis varying fastest;
//   random  `count` samples drawn once from a seeded generator (portable: the same samples on
//           every platform), crossed with the grid: trial = (grid point, sample), sample fastest.
// Sampled floats are rounded to 4 significant digits, so the value in the name is the value used.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace xformer::sweep {

using ordered_json = nlohmann::ordered_json;

// One axis setting of a trial: dotted config key and its value.
using Setting = std::pair<std::string, nlohmann::json>;

struct Trial {
  int index = 0;                  // position in the expansion (what --trial and Slurm use)
  std::string name;               // run directory name, e.g. "lr=0.003,warmup_steps=10"
  std::vector<Setting> settings;  // the axis values, in axis order
  std::string config_digest;      // of its resolved config (set by validate_trials)
};

struct EvalSpec {
  bool enabled = false;
  std::string split = "test";
  std::string checkpoint = "best";
};

struct SlurmSpec {
  std::string partition, account, time, mem, gpus;  // "" = not written
  int cpus_per_task = 4;
  int max_parallel = 0;             // array throttle (%N); 0 = none
  std::vector<std::string> setup;   // shell lines run before the trial (module load, ...)
};

struct SweepSpec {
  std::string file;                // the sweep file as given
  std::string name;                // the sweep file's stem
  std::string base;                // base config, relative to the working directory (or absolute)
  std::string output;              // sweep directory
  std::vector<Setting> set;        // fixed overrides of every trial
  std::vector<std::string> axes;   // grid axes, then random axes
  std::vector<Trial> trials;
  EvalSpec eval;
  std::string metric, mode;        // "" = the base config's train.best_metric / best_mode
  int retries = 1;                 // extra attempts of a failed trial
  SlurmSpec slurm;
};

// Reads and expands a sweep file (ConfigError naming the file and key on any mistake). Does not
// look at the base config: validate_trials does.
SweepSpec load_sweep(const std::string& path);

// The same from parsed JSON; `file` is used for error messages and to resolve "base".
SweepSpec parse_sweep(const ordered_json& doc, const std::string& file);

// Resolves every trial's config (base + set + settings) against the schema, so that a typo in a
// key or a value of the wrong type fails before anything runs (ConfigError naming the sweep
// file and the trial). Fills in metric/mode from the base config when the sweep leaves them out
// and checks the metric is plausible. With `data_here` (a sweep about to run on this machine)
// each trial's task.train, task.valid and evaluated split must exist too, so that a missing test
// set fails before the trials train rather than at each one's evaluation. Returns the first
// trial's resolved config.
nlohmann::json validate_trials(SweepSpec& spec, bool data_here = false);

// The --set assignments of a trial: the fixed ones, then its settings ("key=<JSON value>").
std::vector<std::string> trial_overrides(const SweepSpec& spec, const Trial& trial);

// How a value appears in a trial name: numbers in their shortest form, strings as they are,
// lists joined with '-'.
std::string value_label(const nlohmann::json& value);

// Characters outside [A-Za-z0-9._=,+-] become '_'.
std::string sanitize_name(const std::string& name);

// A deterministic 64-bit generator (splitmix64) with portable uniform draws.
class SweepRng {
 public:
  explicit SweepRng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  double uniform();  // [0, 1)

 private:
  uint64_t state_;
};

}  // namespace xformer::sweep
