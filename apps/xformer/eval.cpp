// xformer eval --run DIR [--split valid|test|train] [--checkpoint last|best|average:N|PATH] [--no-ema]
//              [--ensemble RUN]... [--set KEY=VALUE]...
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "verbs.h"
#include "xformer/core/logging.h"
#include "xformer/train/config_checks.h"
#include "xformer/train/run_dir.h"

namespace fs = std::filesystem;

namespace xformer::app {

namespace {
struct EvalArgs {
  std::string run_dir, split = "test";
  CheckpointChoice checkpoint;
  std::vector<std::string> sets;  // decoding or data keys changed for this evaluation
  std::vector<std::string> ensemble;  // other runs whose models evaluate with this one's
};

// Whether --no-ema left a moving average out: of the run's checkpoint, or of a member's in an
// ensemble (which may keep one where the run does not).
bool left_average_out(const LoadedRun& run) {
  auto left_out = [](const json& meta) { return meta.contains("ema") && !meta.value("ema_loaded", false); };
  return left_out(run.checkpoint_meta) ||
         std::any_of(run.ensemble_meta.begin(), run.ensemble_meta.end(), left_out);
}

// Where the task writes what it decoded (samples/NAME.hyp, ...): the split's name, marked when
// checkpoints are averaged, the moving average is left out, runs are ensembled or the config
// changed, so one-off evaluations never overwrite the run's own outputs (all --set evaluations
// share one slot, and so do all ensembles of one size).
std::string output_name(const EvalArgs& a, const LoadedRun& run) {
  std::string name = a.split;
  if (run.checkpoint_meta.contains("averaged_steps"))
    name += ".average" + std::to_string(run.checkpoint_meta["averaged_steps"].size());
  if (left_average_out(run)) name += ".no_ema";
  if (!run.ensemble.empty()) name += ".ensemble" + std::to_string(run.ensemble.size() + 1);
  if (!a.sets.empty()) name += ".set";
  return name;
}

int evaluate(const EvalArgs& a) {
  const Split split = parse_split(a.split);
  train::read_run_config(a.run_dir);  // a run directory, before anything is written into it
  log_to_file((fs::path(a.run_dir) / "train.log").string());
  auto run = load_run(a.run_dir, a.checkpoint, a.sets, a.ensemble);
  train::check_data_paths_exist(run.config, {a.split});
  Metrics m;
  {
    torch::NoGradGuard no_grad;
    AutocastScope autocast(run.precision, run.device);
    m = run.task->evaluate(split, (fs::path(a.run_dir) / "samples" / output_name(a, run)).string());
  }
  json record = {{"step", run.checkpoint_meta.value("step", 0)},
                 {"split", a.split},
                 {"checkpoint", run.checkpoint_path}};
  if (run.checkpoint_meta.contains("averaged_steps")) record["averaged_steps"] = run.checkpoint_meta["averaged_steps"];
  // Runs that keep a moving average of the weights: whether it was evaluated (--no-ema: false).
  const bool any_average = run.checkpoint_meta.contains("ema") ||
                           std::any_of(run.ensemble_meta.begin(), run.ensemble_meta.end(),
                                       [](const json& meta) { return meta.contains("ema"); });
  if (any_average) record["ema"] = !left_average_out(run);
  if (!run.ensemble.empty()) record["ensemble"] = run.ensemble;  // the other runs whose models took part
  if (!a.sets.empty()) record["set"] = a.sets;  // tells this line from the run's own evaluations
  for (const auto& [k, v] : m) record[k] = v;
  train::append_metrics(a.run_dir, record);
  std::cout << record.dump() << std::endl;
  return 0;
}
}  // namespace

void add_eval(CLI::App& app, Action& run) {
  auto args = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval", "Evaluate a trained run on a split");
  cmd->add_option("--run", args->run_dir, "Run directory")->required()->check(kNotEmpty);
  cmd->add_option("--split", args->split, "valid, test or train")->capture_default_str();
  add_checkpoint_options(cmd, args->checkpoint);
  add_ensemble_option(cmd, args->ensemble);
  add_set_option(cmd, args->sets);
  cmd->callback([args, &run] { run = [args] { return evaluate(*args); }; });
}

}  // namespace xformer::app
