// xformer eval --run DIR [--split valid|test] [--checkpoint last|best|average:N|PATH] [--set KEY=VALUE]...
#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>

#include "verbs.h"
#include "xformer/core/logging.h"
#include "xformer/train/run_dir.h"

namespace fs = std::filesystem;

namespace xformer::app {

namespace {
struct EvalArgs {
  std::string run_dir, split = "test", checkpoint = "best";
  std::vector<std::string> sets;  // decoding or data keys changed for this evaluation
};

int evaluate(const EvalArgs& a) {
  const Split split = parse_split(a.split);
  log_to_file((fs::path(a.run_dir) / "train.log").string());
  auto run = load_run(a.run_dir, a.checkpoint, a.sets);
  Metrics m;
  {
    torch::NoGradGuard no_grad;
    AutocastScope autocast(run.precision, run.device);
    m = run.task->evaluate(split, (fs::path(a.run_dir) / "samples" / a.split).string());
  }
  json record = {{"step", run.checkpoint_meta.value("step", 0)},
                 {"split", a.split},
                 {"checkpoint", run.checkpoint_path}};
  if (run.checkpoint_meta.contains("averaged_steps")) record["averaged_steps"] = run.checkpoint_meta["averaged_steps"];
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
  cmd->add_option("--run", args->run_dir, "Run directory")->required();
  cmd->add_option("--split", args->split, "valid or test")->capture_default_str();
  cmd->add_option("--checkpoint", args->checkpoint, "last, best, average:N (mean weights of the last N step checkpoints) or a checkpoint path")
      ->capture_default_str();
  add_set_option(cmd, args->sets);
  cmd->callback([args, &run] { run = [args] { return evaluate(*args); }; });
}

}  // namespace xformer::app
