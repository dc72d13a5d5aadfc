// xformer train --config FILE [--set KEY=VALUE]... [--run-dir DIR] [--resume] [--force]
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <filesystem>

#include "verbs.h"
#include "xformer/core/error.h"
#include "xformer/core/logging.h"
#include "xformer/train/run_dir.h"
#include "xformer/train/trainer.h"

namespace fs = std::filesystem;

namespace xformer::app {

namespace {
struct TrainArgs {
  std::string config, run_dir;
  std::vector<std::string> sets;
  bool resume = false, force = false;
};

int train(const TrainArgs& a) {
  std::string run_dir = a.run_dir;
  if (run_dir.empty()) {
    if (a.config.empty()) throw ConfigError("usage error: train needs --config or --run-dir");
    run_dir = (fs::path("runs") / fs::path(a.config).stem()).string();
  }
  // --resume without --config continues with the run's own config (plus any --set).
  std::string config_file = a.config;
  if (config_file.empty()) {
    if (!a.resume) throw ConfigError("usage error: train needs --config (or --resume --run-dir DIR)");
    config_file = (fs::path(run_dir) / "config.json").string();
  }
  json config = load_resolved_config(config_file, a.sets);
  train::prepare_run_dir(run_dir, a.resume, a.force);
  log_to_file((fs::path(run_dir) / "train.log").string());
  spdlog::info("xformer {} | LibTorch {} | run {}", XFORMER_VERSION, TORCH_VERSION, run_dir);
  train::write_run_config(run_dir, config);

  RunContext ctx;
  ctx.run_dir = run_dir;
  ctx.device = setup_runtime(config);
  ctx.for_training = true;
  auto task = make_task(config, ctx);
  int64_t params = 0;
  for (const auto& p : task->model()->parameters()) params += p.numel();
  spdlog::info("task {} | model {} | {:.2f}M parameters | device {}",
               config["task"]["name"].get<std::string>(), config["model"]["arch"].get<std::string>(),
               params / 1e6, ctx.device.str());
  train::Trainer trainer(config, *task, {run_dir, a.resume});
  return trainer.run();
}
}  // namespace

void add_train(CLI::App& app, Action& run) {
  auto args = std::make_shared<TrainArgs>();
  auto* cmd = app.add_subcommand("train", "Train a model from a JSON config");
  cmd->add_option("-c,--config", args->config, "Config file (JSON)");
  add_set_option(cmd, args->sets);
  cmd->add_option("-r,--run-dir", args->run_dir, "Run directory (default runs/<config name>)");
  cmd->add_flag("--resume", args->resume, "Continue the run from checkpoints/last.pt");
  cmd->add_flag("--force", args->force, "Empty a non-empty run directory first");
  cmd->callback([args, &run] { run = [args] { return train(*args); }; });
}

}  // namespace xformer::app
