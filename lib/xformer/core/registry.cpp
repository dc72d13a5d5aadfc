#include "xformer/core/registry.h"

#include <algorithm>

#include "xformer/core/error.h"

namespace xformer {

Registry& Registry::get() {
  static Registry registry;
  return registry;
}

void Registry::add_task(TaskEntry entry) {
  for (const auto& t : tasks_)
    if (t.name == entry.name) return;
  tasks_.push_back(std::move(entry));
}

bool ArchEntry::serves(const std::string& task) const {
  return std::find(tasks.begin(), tasks.end(), task) != tasks.end();
}

std::string ArchEntry::task_list() const {
  std::string out;
  for (const auto& t : tasks) out += (out.empty() ? "" : ", ") + t;
  return out;
}

void Registry::add_arch(ArchEntry entry) {
  for (const auto& a : archs_)
    if (a.name == entry.name) return;
  archs_.push_back(std::move(entry));
}

namespace {
template <typename Entry>
const Entry& find_entry(const std::vector<Entry>& entries, const std::string& name,
                        const std::string& what) {
  std::vector<std::string> names;
  for (const auto& e : entries) {
    if (e.name == name) return e;
    names.push_back(e.name);
  }
  std::string hint = closest_match(name, names);
  std::string all;
  for (const auto& n : names) all += (all.empty() ? "" : ", ") + n;
  throw ConfigError("config error: unknown " + what + " '" + name + "'" +
                    (hint.empty() ? "" : " (did you mean '" + hint + "'?)") + "; known: " + all);
}
}  // namespace

const TaskEntry& Registry::task(const std::string& name) const {
  return find_entry(tasks_, name, "task.name");
}

const ArchEntry& Registry::arch(const std::string& name) const {
  return find_entry(archs_, name, "model.arch");
}

void declare_trainer_keys(Schema& s) {
  s.add("task.name", KeyType::String, "translation", "Task plugin to run (see `xformer info`).");
  s.add("model.arch", KeyType::String, "transformer", "Model architecture (see `xformer info`).");

  s.add("optim.name", KeyType::String, "adam", "Optimizer.", {"adam", "adamw"});
  s.add("optim.lr", KeyType::Float, 5e-4, "Peak learning rate (reached at the end of warmup).").at_least(0);
  s.add("optim.betas", KeyType::FloatList, json::array({0.9, 0.98}), "Adam beta1, beta2.").at_least(0).below(1).length(2);
  s.add("optim.eps", KeyType::Float, 1e-9, "Adam epsilon (the update divides by sqrt(v) + eps).").at_least(1e-30);
  s.add("optim.weight_decay", KeyType::Float, 0.0,
        "Weight decay (L2 for adam, decoupled for adamw).").at_least(0);
  s.add("optim.clip_norm", KeyType::Float, 0.0, "Clip gradients to this global L2 norm; 0 = off.")
      .at_least(0);
  s.add("optim.schedule", KeyType::String, "inverse_sqrt", "Learning-rate schedule.",
        {"inverse_sqrt", "cosine", "linear", "constant"});
  s.add("optim.warmup_steps", KeyType::Int, 4000, "Linear warmup from warmup_init_lr to lr.").at_least(0);
  s.add("optim.warmup_init_lr", KeyType::Float, 0.0, "Learning rate at step 0 of the warmup.").at_least(0);
  s.add("optim.min_lr", KeyType::Float, 0.0, "Final learning rate of the cosine and linear schedules.").at_least(0);

  s.add("train.max_steps", KeyType::Int, 0, "Stop after this many updates; 0 = no limit.").at_least(0);
  s.add("train.max_epochs", KeyType::Int, 0, "Stop after this many epochs; 0 = no limit.").at_least(0);
  s.add("train.seed", KeyType::Int, 1, "Seed of every random choice (init, dropout, shuffling).");
  s.add("train.update_freq", KeyType::Int, 1,
        "Accumulate gradients over this many batches per update.").at_least(1);
  s.add("train.log_every", KeyType::Int, 50, "Log training statistics every N updates.").at_least(1);
  s.add("train.tensorboard", KeyType::Bool, true,
        "Also write the training and validation metrics as TensorBoard events to RUN/tensorboard/ "
        "(`tensorboard --logdir runs`).");
  s.add("train.eval_every", KeyType::Int, 1000, "Evaluate on the valid split every N updates.").at_least(0);
  s.add("train.save_every", KeyType::Int, 1000, "Write a checkpoint every N updates.").at_least(0);
  s.add("train.ema_decay", KeyType::Float, 0.0,
        "Keep an exponential moving average of the parameters with this decay (about the last "
        "1/(1-d) updates; bias-corrected) and evaluate it instead of them (batch-norm statistics "
        "stay the trained model's); eval and sample use it too, unless --no-ema. 0 = off.").at_least(0).below(1);
  s.add("train.recompute_activations", KeyType::Bool, false,
        "Store only each Transformer layer's input for backward and run the layer again there: "
        "memory for the activations inside one layer instead of inside every layer, for about one "
        "more forward pass (attention models only; docs/performance.md).");
  s.add("train.keep_last", KeyType::Int, 3,
        "Keep the last K step checkpoints besides last.pt and best.pt (0: only those two).").at_least(0);
  s.add("train.best_metric", KeyType::String, "loss", "Valid metric that selects checkpoints/best: one that the task reports (checked before training). "
        "The default, loss, is translation's and music's; the image tasks report none by that name, so their "
        "configs name one (e.g. accuracy with best_mode max, bits_per_dim, map).");
  s.add("train.best_mode", KeyType::String, "min", "Whether a lower or higher best_metric is better.",
        {"min", "max"});
  s.add("train.patience", KeyType::Int, 0,
        "Stop after this many evaluations without a new best; 0 = never.").at_least(0);
  s.add("train.max_nonfinite", KeyType::Int, 5,
        "Stop when this many updates in a row have a NaN/Inf loss (each one is skipped).").at_least(1);
  s.add("train.device", KeyType::String, "auto", "Where to train.", {"auto", "cpu", "cuda"});
  s.add("train.precision", KeyType::String, "auto",
        "Mixed precision on CUDA: auto = bf16 there, fp32 on the CPU; fp16 adds dynamic loss "
        "scaling. Weights and optimizer state stay fp32.",
        {"auto", "fp32", "bf16", "fp16"});
  s.add("train.tf32", KeyType::Bool, true, "Let fp32 matrix products on CUDA use TF32.");
  s.add("train.threads", KeyType::Int, 0,
        "LibTorch intra-op threads; 0 = 1 (see docs/performance.md).").at_least(0).below(1025);
  s.add("train.blas_threads", KeyType::Int, 0,
        "OpenBLAS threads; 0 = one per core (shared out among the local ranks; see "
        "docs/performance.md).").at_least(0).below(1025);
  s.add("train.dist_timeout", KeyType::Int, 1800,
        "Multi-process training: seconds a rank waits in a collective (or at start-up) before it "
        "fails, naming itself; covers rank 0's validation runs (see docs/scaling.md).").at_least(1);
  s.add("train.dist_bucket_mb", KeyType::Float, 25.0,
        "Multi-process training: gradients are all-reduced in buckets of about this many MB, each "
        "started as soon as backward has produced it.").at_least(0.001);
}

Schema schema_for(const RawConfig& raw) {
  Schema schema;
  declare_trainer_keys(schema);
  auto name_of = [&](const char* group, const char* key, const char* fallback) {
    const json& v = raw.value;
    if (v.contains(group) && v[group].is_object() && v[group].contains(key)) {
      if (!v[group][key].is_string())
        throw ConfigError(std::string("config error: '") + group + "." + key + "' must be a string");
      return v[group][key].get<std::string>();
    }
    return std::string(fallback);
  };
  const auto& task = Registry::get().task(name_of("task", "name", "translation"));
  const auto& arch = Registry::get().arch(name_of("model", "arch", "transformer"));
  if (!arch.serves(task.name))
    throw ConfigError("config error: model.arch '" + arch.name + "' is for task '" + arch.task_list() +
                      "', not '" + task.name + "'");
  task.declare_keys(schema);
  arch.declare_keys(schema);
  return schema;
}

json resolve(const RawConfig& raw) { return resolve_config(raw, schema_for(raw)); }

void check_best_metric(const json& config) {
  const auto& entry = Registry::get().task(config["task"]["name"]);
  const std::string best = config["train"]["best_metric"];
  if (entry.metrics) {
    const auto names = entry.metrics(config);
    if (std::find(names.begin(), names.end(), best) == names.end()) {
      std::string list, hint = closest_match(best, names);
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      throw ConfigError("config error: 'train.best_metric' is '" + best + "', which the " + entry.name +
                        " evaluation does not report (it reports " + list + ")" +
                        (hint.empty() ? "" : "; did you mean '" + hint + "'?"));
    }
  }
}

void check_recompute_activations(const json& config) {
  if (!config["train"]["recompute_activations"].get<bool>()) return;
  const auto& arch = Registry::get().arch(config["model"]["arch"]);
  if (arch.recomputable) return;
  std::string list;
  for (const auto& a : Registry::get().archs())
    if (a.recomputable) list += (list.empty() ? "" : ", ") + a.name;
  throw ConfigError("config error: 'train.recompute_activations' is true, but model '" + arch.name +
                    "' has no layers that recompute (those of " + list + " do)");
}

}  // namespace xformer
