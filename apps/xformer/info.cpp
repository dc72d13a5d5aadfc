// xformer info [--config FILE [--set KEY=VALUE]... [--model-stats]] [--config-doc]
#include <spdlog/fmt/fmt.h>
#include <torch/version.h>

#include <iostream>
#include <thread>

#include "verbs.h"
#include "xformer/train/config_checks.h"
#include "xformer/core/registry.h"
#include "xformer/core/error.h"
#include "xformer/core/runtime.h"

namespace xformer::app {

namespace {
struct InfoArgs {
  std::string config;
  std::vector<std::string> sets;
  bool config_doc = false;
  bool model_stats = false;
};

// Builds the config's task and model (no training) and prints parameters and FLOPs.
int print_model_stats(const json& config) {
  RunContext ctx;
  ctx.for_training = false;
  std::unique_ptr<Task> task;
  try {
    task = make_task(config, ctx);
  } catch (const Error& e) {
    throw Error("--model-stats: cannot build the " + config.at("task").at("name").get<std::string>() +
                    " model from its config alone: " + e.what(),
                e.exit_code());
  }
  const auto stats = task->model_stats();
  std::cout << "model " << config.at("model").at("arch").get<std::string>() << " (task "
            << config.at("task").at("name").get<std::string>() << ")\n"
            << fmt::format("parameters: {:.0f} ({:.2f}M)\n", stats.at("parameters"), stats.at("parameters") / 1e6);
  if (stats.count("flops"))
    std::cout << fmt::format("FLOPs per item: {:.4g} ({:.2f} G) at {:.0f}x{:.0f}\n", stats.at("flops"),
                             stats.at("flops") / 1e9, stats.at("height"), stats.at("width"));
  return 0;
}

// Markdown table of every key: the trainer's, then each task's and architecture's.
void print_config_doc() {
  auto table = [](const Schema& s, const std::string& prefix) {
    std::cout << "| key | type | default | meaning |\n|---|---|---|---|\n";
    for (const auto& k : s.keys()) {
      if (k.path.rfind(prefix, 0) != 0) continue;
      std::string doc = k.doc;
      if (!k.choices.empty()) {
        std::string c;
        for (const auto& x : k.choices) c += (c.empty() ? "" : ", ") + x;
        doc += " One of: " + c + ".";
      }
      if (k.minimum.is_number()) doc += " At least " + k.minimum.dump() + ".";
      if (k.bound.is_number()) doc += " Below " + k.bound.dump() + ".";
      if (k.length > 0) doc += " " + std::to_string(k.length) + " elements.";
      std::cout << "| `" << k.path << "` | " << key_type_name(k.type) << " | `"
                << k.default_value.dump() << "` | " << doc << " |\n";
    }
    std::cout << "\n";
  };
  Schema trainer;
  declare_trainer_keys(trainer);
  std::cout << "## Trainer keys (every task)\n\n";
  table(trainer, "");
  for (const auto& t : Registry::get().tasks()) {
    Schema s;
    t.declare_keys(s);
    std::cout << "## Task `" << t.name << "`: " << t.description << "\n\n";
    table(s, "task.");
  }
  for (const auto& a : Registry::get().archs()) {
    Schema s;
    a.declare_keys(s);
    std::cout << "## Architecture `" << a.name << "`: " << a.description << "\n\n";
    table(s, "model.");
  }
}

int info(const InfoArgs& a) {
  if (a.config_doc) {
    if (!a.config.empty() || !a.sets.empty() || a.model_stats)
      throw ConfigError("usage error: --config-doc takes no other option");
    print_config_doc();
    return 0;
  }
  if ((a.model_stats || !a.sets.empty()) && a.config.empty())
    throw ConfigError(std::string("usage error: ") + (a.model_stats ? "--model-stats" : "--set") + " needs --config FILE");
  if (!a.config.empty()) {
    const auto config = load_resolved_config(a.config, a.sets);
    train::check_training_config(config);  // what train would refuse before it starts
    if (a.model_stats) return print_model_stats(config);
    std::cout << config.dump(2) << std::endl;
    return 0;
  }
  std::cout << "xformer " << XFORMER_VERSION << "\n"
            << "LibTorch " << TORCH_VERSION << "\n"
            << "CUDA available: " << (torch::cuda::is_available() ? "yes" : "no");
  if (torch::cuda::is_available()) std::cout << " (" << torch::cuda::device_count() << " devices)";
  std::cout << "\nCPU cores: " << std::thread::hardware_concurrency()
            << ", LibTorch threads: " << torch::get_num_threads()
            << ", OpenBLAS kernels: " << (blas_core_name().empty() ? "n/a" : blas_core_name())
            << "\n\nTasks:\n";
  for (const auto& t : Registry::get().tasks()) std::cout << "  " << t.name << "  " << t.description << "\n";
  std::cout << "Architectures:\n";
  for (const auto& m : Registry::get().archs())
    std::cout << "  " << m.name << "  " << m.description << " (task " << m.task_list() << ")\n";
  return 0;
}
}  // namespace

void add_info(CLI::App& app, Action& run) {
  auto args = std::make_shared<InfoArgs>();
  auto* cmd = app.add_subcommand("info", "Versions, device, tasks; or a resolved config");
  cmd->add_option("-c,--config", args->config, "Print this config resolved, defaults filled in")->check(kNotEmpty);
  add_set_option(cmd, args->sets);
  cmd->add_flag("--config-doc", args->config_doc, "Print every config key with default and meaning");
  cmd->add_flag("--model-stats", args->model_stats,
                "With --config: the model's parameters and FLOPs per item (images: at their size)");
  cmd->callback([args, &run] { run = [args] { return info(*args); }; });
}

}  // namespace xformer::app
