// The registry of tasks and model architectures, filled once at start-up by
// register_builtins() (an explicit list: self-registering statics get dropped by the linker
// when they live in a static library). Every verb looks tasks up here by name.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "xformer/core/config.h"

namespace xformer {

class Task;
struct RunContext;

struct TaskEntry {
  std::string name;
  std::string description;
  std::function<void(Schema&)> declare_keys;  // task.* keys
  std::function<std::unique_ptr<Task>(const json& config, const RunContext& ctx)> create;
  // The names its evaluation can report for this (resolved) config: train.best_metric must be
  // one of them, which is checked before a run starts rather than at its first evaluation.
  std::function<std::vector<std::string>(const json& config)> metrics;
  // The options of `xformer sample` it takes ("--input", "--beam", ...): the verb refuses the
  // others (all but --run, --checkpoint, --no-ema and --set) before the run is loaded.
  std::vector<std::string> sample_options;
  // eval and sample can combine the models of several runs (--ensemble; Task::add_ensemble_member).
  bool ensembles = false;
};

struct ArchEntry {
  std::string name;
  std::string description;
  std::vector<std::string> tasks;  // the tasks whose models it builds
  bool serves(const std::string& task) const;
  std::string task_list() const;  // "a, b"
  std::function<void(Schema&)> declare_keys;  // model.* keys
  // Built from the Transformer layers, which can recompute their activations in backward
  // (train.recompute_activations).
  bool recomputable = false;
};

class Registry {
 public:
  static Registry& get();
  void add_task(TaskEntry entry);
  void add_arch(ArchEntry entry);
  const TaskEntry& task(const std::string& name) const;  // ConfigError with a hint if unknown
  const ArchEntry& arch(const std::string& name) const;
  const std::vector<TaskEntry>& tasks() const { return tasks_; }
  const std::vector<ArchEntry>& archs() const { return archs_; }

 private:
  std::vector<TaskEntry> tasks_;
  std::vector<ArchEntry> archs_;
};

// Registers every built-in task and architecture (idempotent).
void register_builtins();

// The trainer's own keys: task.name, model.arch, optim.*, train.*.
void declare_trainer_keys(Schema& schema);

// Schema for a raw config: trainer keys + its task's keys + its architecture's keys.
Schema schema_for(const RawConfig& raw);

// load + overrides + validation in one call, as every verb does it.
json resolve(const RawConfig& raw);

// Training only (eval and sample must still open a run whose metric was mistyped): ConfigError
// unless train.best_metric is one the task's evaluation reports for this resolved config.
void check_best_metric(const json& config);

// Training only: ConfigError when train.recompute_activations is on for an architecture
// without layers that recompute.
void check_recompute_activations(const json& config);

}  // namespace xformer
