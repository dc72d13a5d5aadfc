// xformer train --config FILE [--set KEY=VALUE]... [--run-dir DIR] [--resume] [--force] [--nproc N]
//
// One process trains alone; started as one rank of several (torchrun, srun, or --nproc, which
// starts them), it joins the others first. Rank 0 prepares the run directory and builds the
// task (which may train a tokenizer into it) before the other ranks build theirs.
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <exception>
#include <filesystem>
#include <optional>
#include <vector>

#include "verbs.h"
#include "xformer/core/error.h"
#include "xformer/core/logging.h"
#include "xformer/core/registry.h"
#include "xformer/core/remove_tree.h"
#include "xformer/core/runtime.h"
#include "xformer/train/distributed.h"
#include "xformer/train/launcher.h"
#include "xformer/train/run_dir.h"
#include "xformer/train/config_checks.h"
#include "xformer/train/trainer.h"

namespace fs = std::filesystem;

namespace xformer::app {

namespace {
struct TrainArgs {
  std::string config, run_dir;
  std::vector<std::string> sets;
  bool resume = false, force = false;
  int nproc = 0;
};

// The arguments that start one rank of this same command (everything but --nproc).
std::vector<std::string> rank_arguments(const TrainArgs& a) {
  std::vector<std::string> args = {"train"};
  if (!a.config.empty()) args.insert(args.end(), {"--config", a.config});
  for (const auto& s : a.sets) args.insert(args.end(), {"--set", s});
  if (!a.run_dir.empty()) args.insert(args.end(), {"--run-dir", a.run_dir});
  if (a.resume) args.push_back("--resume");
  if (a.force) args.push_back("--force");
  if (spdlog::get_level() <= spdlog::level::debug) args.insert(args.begin(), "--verbose");
  return args;
}

// A new run that fails before training starts (a task or model check, the data) leaves no run
// directory behind, so that the corrected command can start it again; the trainer writes
// config.json when training starts, which marks the run as begun. Resumed runs are left as
// they are (their config.json is rewritten only once the resume has succeeded).
class UnstartedRunCleanup {
 public:
  UnstartedRunCleanup(std::string dir, bool existed) : dir_(std::move(dir)), existed_(existed) {}
  UnstartedRunCleanup(const UnstartedRunCleanup&) = delete;
  UnstartedRunCleanup& operator=(const UnstartedRunCleanup&) = delete;
  ~UnstartedRunCleanup() {  // runs while an exception unwinds: must not throw (no iterator ++, no allocation escapes)
    try {
      std::error_code ec;
      if (std::uncaught_exceptions() == 0 || fs::exists(fs::path(dir_) / "config.json", ec)) return;
      if (!existed_) {
        remove_tree_noexcept(dir_);
        return;
      }
      for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec))
        if (it->path().filename() != ".lock") remove_tree_noexcept(it->path().string());
    } catch (...) {  // what cannot be removed stays; the error in flight is the one to report
    }
  }

 private:
  std::string dir_;
  bool existed_;
};

int train(const TrainArgs& a) {
  if (a.resume && a.force)
    throw ConfigError("usage error: --resume continues a run and --force starts it over: pass one of them");
  std::string run_dir = a.run_dir;
  if (run_dir.empty()) {
    if (a.config.empty()) throw ConfigError("usage error: train needs --config or --run-dir");
    run_dir = train::default_run_dir(a.config);
  }
  // --resume without --config continues with the run's own config (plus any --set).
  std::string config_file = a.config;
  if (config_file.empty()) {
    if (!a.resume) throw ConfigError("usage error: train needs --config (or --resume --run-dir DIR)");
    config_file = (fs::path(run_dir) / "config.json").string();
  }
  json config = load_resolved_config(config_file, a.sets);
  if (a.resume && fs::exists(fs::path(run_dir) / "config.json")) train::check_config_fits_checkpoint(run_dir, config, "--resume");
  train::check_training_config(config);
  train::check_data_paths_exist(config);
  // Config mistakes are found once, here, before any rank starts.
  if (a.nproc > 0) return train::run_local_ranks(a.nproc, rank_arguments(a));
  const auto dist = train::distributed_env_from_environment();
  const bool main_rank = dist.rank == 0;
  // The local ranks share the cores (configure_threads reads it; srun does not set it).
  if (dist.active()) setenv("LOCAL_WORLD_SIZE", std::to_string(dist.local_world_size).c_str(), 1);
  RunContext ctx;
  ctx.run_dir = run_dir;
  std::string threads_line;  // logged once train.log is open
  ctx.device = setup_runtime(config, &threads_line);  // the device and precision are checked before the run directory
  if (dist.active()) ctx.device = device_for_local_rank(ctx.device, dist.local_rank);
  resolve_precision(config.at("train").at("precision"), ctx.device);

  train::RunDirLock run_lock;  // held until training ends
  std::optional<UnstartedRunCleanup> cleanup;  // armed once the directory is known to be ours
  if (main_rank) {
    std::error_code ec;
    const bool existed = fs::exists(run_dir, ec);
    run_lock = train::prepare_run_dir(run_dir, a.resume, a.force);
    if (!a.resume) cleanup.emplace(run_dir, existed);
    log_to_file((fs::path(run_dir) / "train.log").string());
    spdlog::info("xformer {} | LibTorch {} | run {}", XFORMER_VERSION, TORCH_VERSION, run_dir);
    spdlog::info("{}", threads_line);
  } else {
    spdlog::set_level(spdlog::level::warn);  // rank 0 speaks for the job
  }

  ctx.for_training = true;
  std::unique_ptr<train::Communicator> comm;
  if (dist.active()) {
    const auto& t = config.at("train");
    comm = std::make_unique<train::Communicator>(dist, ctx.device,
                                                 std::chrono::seconds(t.at("dist_timeout").get<int64_t>()));
    spdlog::info("rank {} of {} ({} backend, TCPStore {}:{})", dist.rank, dist.world_size, comm->backend(),
                 dist.master_addr, dist.master_port);
    if (!main_rank) comm->barrier();  // wait for rank 0's task (tokenizer, ...)
  }
  auto task = make_task(config, ctx);
  if (comm && main_rank) comm->barrier();
  int64_t params = 0;
  for (const auto& p : task->model()->parameters()) params += p.numel();
  spdlog::info("task {} | model {} | {:.2f}M parameters | device {}",
               config["task"]["name"].get<std::string>(), config["model"]["arch"].get<std::string>(),
               params / 1e6, ctx.device.str());
  train::Trainer trainer(config, *task, {run_dir, a.resume, comm.get()});
  return trainer.run();
}
}  // namespace

void add_train(CLI::App& app, Action& run) {
  auto args = std::make_shared<TrainArgs>();
  auto* cmd = app.add_subcommand("train", "Train a model from a JSON config");
  cmd->add_option("-c,--config", args->config, "Config file (JSON)")->check(kNotEmpty);
  add_set_option(cmd, args->sets);
  cmd->add_option("-r,--run-dir", args->run_dir, "Run directory (default runs/<config folder>/<config name>)")->check(kNotEmpty);
  cmd->add_flag("--resume", args->resume, "Continue the run from checkpoints/last.pt");
  cmd->add_flag("--force", args->force, "Empty a non-empty run directory first");
  cmd->add_option("--nproc", args->nproc,
                  "Train data-parallel with N processes on this machine (see docs/scaling.md)")
      ->check(CLI::Range(1, 1024));
  cmd->callback([args, &run] { run = [args] { return train(*args); }; });
}

}  // namespace xformer::app
