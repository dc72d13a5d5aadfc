#include <spdlog/spdlog.h>

#include <filesystem>

#include "verbs.h"
#include "xformer/core/error.h"
#include "xformer/core/precision.h"
#include "xformer/core/registry.h"
#include "xformer/core/runtime.h"
#include "xformer/train/checkpoint.h"
#include "xformer/train/checkpoint_choice.h"
#include "xformer/train/run_dir.h"

namespace fs = std::filesystem;

namespace xformer::app {

void add_set_option(CLI::App* cmd, std::vector<std::string>& sets) {
  cmd->add_option("-s,--set", sets, "Override a config key: KEY=VALUE (repeatable)");
}

json load_resolved_config(const std::string& file, const std::vector<std::string>& sets) {
  RawConfig raw = load_config_file(file);
  for (const auto& s : sets) apply_override(raw, s);
  return resolve(raw);
}

const CLI::Validator kNotEmpty([](std::string& value) { return value.empty() ? std::string("is empty") : std::string(); },
                               "", "NOT EMPTY");

torch::Device setup_runtime(const json& config, std::string* threads_line) {
  const auto& t = config.at("train");
  const std::string threads = configure_threads(t.at("threads"), t.at("blas_threads"));
  if (threads_line) *threads_line = threads;
  else spdlog::info("{}", threads);
  allow_tf32(t.at("tf32"));
  return resolve_device(t.at("device"));
}

std::unique_ptr<Task> make_task(const json& config, const RunContext& ctx) {
  return Registry::get().task(config.at("task").at("name")).create(config, ctx);
}

void add_checkpoint_options(CLI::App* cmd, CheckpointChoice& choice) {
  cmd->add_option("--checkpoint", choice.which,
                  "last, best, average:N (mean weights of the last N step checkpoints) or a checkpoint path")
      ->capture_default_str();
  cmd->add_flag("--no-ema", choice.no_ema,
                "Use the trained weights, not their moving average (runs with train.ema_decay)");
}

namespace {
// fn(), its errors naming the ensemble member they are about (exit codes kept; LibTorch's, e.g.
// from a checkpoint it cannot read, are data errors).
template <typename Fn>
auto about_member(const std::string& member, Fn fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error& e) {
    throw Error("--ensemble " + member + ": " + e.what(), e.exit_code());
  } catch (const std::exception& e) {
    throw DataError("--ensemble " + member + ": " + e.what());
  }
}

// The ensemble, checked from the runs' configs before any model is loaded: the task combines
// runs, every run is of that task, and the checkpoint choice can apply to every run (last, best
// or average:N, not one file).
void check_ensemble(const std::string& run_dir, const std::vector<std::string>& ensemble, const CheckpointChoice& checkpoint) {
  const std::string task = train::read_run_config(run_dir)["task"].value("name", "");
  std::vector<std::string> combining;
  for (const auto& entry : Registry::get().tasks())
    if (entry.ensembles) combining.push_back(entry.name);
  if (!Registry::get().task(task).ensembles)
    throw ConfigError(fmt::format("usage error: --ensemble is not for {} runs; it combines runs of: {}", task,
                                  fmt::join(combining, ", ")));
  if (checkpoint.which != "last" && checkpoint.which != "best" && !train::averaged_checkpoint_count(checkpoint.which))
    throw ConfigError("usage error: --ensemble loads the same --checkpoint of every run: last, best or average:N, not '" +
                      checkpoint.which + "'");
  for (const auto& member : ensemble) {
    const std::string member_task =
        about_member(member, [&] { return train::read_run_config(member)["task"].value("name", ""); });
    if (member_task != task)
      throw ConfigError("usage error: --ensemble " + member + " is " +
                        (member_task.empty() ? "a run without task.name" : "a " + member_task + " run") + "; " +
                        run_dir + " is a " + task + " run");
  }
}

// A run's saved config with `sets` (KEY=VALUE) applied and resolved; changes to what its
// checkpoint was made for are refused (ConfigError).
json resolved_run_config(const std::string& run_dir, const std::vector<std::string>& sets) {
  RawConfig raw;
  raw.value = train::read_run_config(run_dir);
  raw.file = run_dir + "/config.json";
  for (const auto& s : sets) apply_override(raw, s);
  json config = resolve(raw);
  if (!sets.empty()) {
    train::check_config_fits_checkpoint(run_dir, config, "--set");
    spdlog::info("--set, for this command only: {}", fmt::format("{}", fmt::join(sets, " ")));
  }
  return config;
}

// The task that `config` (a run's) describes, built on `device` for eval/sample, with the chosen
// checkpoint's weights loaded; `run`'s checkpoint fields filled in.
void load_task(const std::string& run_dir, const json& config, const torch::Device& device,
               const CheckpointChoice& checkpoint, LoadedRun& run) {
  RunContext ctx;
  ctx.run_dir = run_dir;
  ctx.device = device;
  ctx.for_training = false;
  const auto paths = train::resolve_checkpoints(run_dir, checkpoint.which);
  run.checkpoint_path = paths.size() == 1 ? paths[0]
                                          : "average of " + std::to_string(paths.size()) + ": " + paths.front() +
                                                " .. " + fs::path(paths.back()).filename().string();
  run.task = make_task(config, ctx);
  run.checkpoint_meta = train::load_model_weights(paths, *run.task->model(), !checkpoint.no_ema);
  train::check_checkpoint_fits_config(paths.back(), run.checkpoint_meta, config);
  run.task->model()->eval();
  spdlog::info("loaded {} (step {}{})", run.checkpoint_path, run.checkpoint_meta.value("step", 0),
               run.checkpoint_meta.value("ema_loaded", false) ? ", moving average of the weights" : "");
}
}  // namespace

void add_ensemble_option(CLI::App* cmd, std::vector<std::string>& runs) {
  cmd->add_option("--ensemble", runs,
                  "Another run of the same task whose model decodes with --run's, averaging their next-token "
                  "probabilities (repeatable; each loads the same --checkpoint; translation)");
}

LoadedRun load_run(const std::string& run_dir, const CheckpointChoice& checkpoint, const std::vector<std::string>& sets,
                   const std::vector<std::string>& ensemble) {
  if (!ensemble.empty()) check_ensemble(run_dir, ensemble, checkpoint);
  LoadedRun run;
  run.config = resolved_run_config(run_dir, sets);
  run.device = setup_runtime(run.config);
  run.precision = resolve_precision(run.config.at("train").at("precision"), run.device);
  load_task(run_dir, run.config, run.device, checkpoint, run);
  // Ensemble members bring only their models: built from their own configs, on this run's device
  // and under its runtime settings (threads, TF32, precision).
  for (const auto& member : ensemble) {
    LoadedRun loaded;
    about_member(member, [&] { load_task(member, resolved_run_config(member, {}), run.device, checkpoint, loaded); });
    run.task->add_ensemble_member(std::move(loaded.task), member);
    run.ensemble.push_back(member);
    run.ensemble_meta.push_back(loaded.checkpoint_meta);
  }
  if (!ensemble.empty()) spdlog::info("ensemble of {} models: {} and {}", ensemble.size() + 1, run_dir, fmt::join(ensemble, ", "));
  return run;
}

}  // namespace xformer::app
