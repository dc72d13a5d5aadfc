#include "xformer/train/trainer.h"

#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "xformer/core/atomic_file.h"
#include "xformer/core/error.h"
#include "xformer/core/progress.h"
#include "xformer/core/runtime.h"
#include "xformer/nn/recompute.h"
#include "xformer/report/tensorboard.h"
#include "xformer/train/adam.h"
#include "xformer/train/checkpoint.h"
#include "xformer/train/run_dir.h"
#include "xformer/train/schedule.h"

namespace fs = std::filesystem;

namespace xformer::train {

namespace {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const json& o,
                                                        const std::vector<torch::Tensor>& params) {
  const auto betas = o.at("betas").get<std::vector<double>>();
  if (betas.size() != 2) throw ConfigError("config error: optim.betas must hold two numbers");
  AdamConfig c;
  c.lr = o.at("lr"), c.eps = o.at("eps"), c.weight_decay = o.at("weight_decay");
  c.beta1 = betas[0], c.beta2 = betas[1];
  c.decoupled_weight_decay = o.at("name") == "adamw";
  return std::make_unique<Adam>(params, c);
}

std::string format_metrics(const Metrics& m) {
  std::ostringstream s;
  s << std::setprecision(4);
  for (const auto& [k, v] : m) s << (s.tellp() > 0 ? " | " : "") << k << " " << v;
  return s.str();
}

}  // namespace

// Statistics gathered between two log lines.
struct Trainer::UpdateStats {
  double loss = 0, sample_size = 0, tokens = 0, items = 0, gnorm = 0;
  int64_t updates = 0;
  std::map<std::string, double> sums;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
};

Trainer::Trainer(const json& config, Task& task, TrainerOptions options)
    : config_(config), task_(task), options_(std::move(options)), model_(task.model()) {
  params_ = model_->parameters();
  optimizer_ = make_optimizer(config_.at("optim"), params_);
  if (!params_.empty()) device_ = params_[0].device();
  precision_ = resolve_precision(config_.at("train").at("precision"), device_);
  scaler_ = LossScaler(precision_ == Precision::Float16);
  const int64_t update_freq = config_.at("train").at("update_freq");
  if (update_freq % world_size() != 0)
    throw ConfigError("config error: train.update_freq (" + std::to_string(update_freq) +
                      ") must be a multiple of the number of ranks (" + std::to_string(world_size()) +
                      "): an update is update_freq batches shared out among the ranks, so that the "
                      "effective batch does not depend on how many run (e.g. --set train.update_freq=" +
                      std::to_string(world_size()) + ")");
  // (`train` checks the architecture before it creates the run; this is what counts.)
  if (config_.at("train").at("recompute_activations").get<bool>() && nn::set_recompute(*model_, true) == 0)
    throw ConfigError("config error: 'train.recompute_activations' is true, but the model has no layers "
                      "that recompute");
  // Only rank 0 evaluates and saves, so only it keeps the average (every rank has the same weights).
  if (const double decay = config_.at("train").at("ema_decay"); decay > 0 && main_rank())
    average_ = std::make_unique<WeightAverage>(*model_, decay);
  if (options_.comm)
    reducer_ = std::make_unique<GradReducer>(
        *options_.comm, params_,
        static_cast<int64_t>(config_.at("train").at("dist_bucket_mb").get<double>() * (1 << 20)));
}

void Trainer::seed_rank_stream() {
  if (!options_.comm || options_.comm->rank() == 0) return;
  const uint64_t seed = config_.at("train").at("seed").get<uint64_t>();
  torch::manual_seed(seed * 1000003ULL + static_cast<uint64_t>(options_.comm->rank()));
}

json Trainer::meta() const {
  json m;
  m["step"] = step_;
  m["epoch"] = epoch_;
  m["task_state"] = task_.state();
  m["nonfinite_in_row"] = nonfinite_in_row_;
  m["nonfinite_total"] = nonfinite_total_;
  m["evals_since_best"] = evals_since_best_;
  m["evaluated_step"] = evaluated_step_;
  m["loss_scaler"] = scaler_.state();
  m["best"] = best_ ? json(*best_) : json(nullptr);
  m["config"] = config_;
  m["xformer"] = XFORMER_VERSION;
  return m;
}

void Trainer::average_running_stats() {
  if (!options_.comm) return;
  std::vector<torch::Tensor> stats;
  for (const auto& b : model_->named_buffers()) {
    const auto& name = b.key();
    const auto ends_with = [&](const std::string& tail) {
      return name.size() >= tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
    };
    if (ends_with("running_mean") || ends_with("running_var")) stats.push_back(b.value());
  }
  if (!stats.empty()) options_.comm->average(stats);
}

void Trainer::save() {
  average_running_stats();
  write_checkpoint();
}

void Trainer::write_checkpoint() {
  std::vector<RngState> rng_states = {current_rng_state(device_)};  // every rank's, gathered on every rank
  if (options_.comm) {
    const auto cpu = options_.comm->all_gather(rng_states[0].cpu);
    std::vector<torch::Tensor> device;
    if (rng_states[0].device.defined()) device = options_.comm->all_gather(rng_states[0].device);
    rng_states.assign(cpu.size(), {});
    for (size_t r = 0; r < cpu.size(); ++r) rng_states[r] = {cpu[r], device.empty() ? torch::Tensor() : device[r]};
  }
  if (!main_rank()) return;
  const fs::path dir = fs::path(options_.run_dir) / "checkpoints";
  const std::string path = (dir / step_checkpoint_name(step_)).string();
  save_checkpoint(path, *model_, optimizer_.get(), meta(), rng_states, average_.get());
  replace_with_link(path, (dir / "last.pt").string());
  // Prune old step files beyond keep_last (last.pt/best.pt are links and keep their data).
  const auto steps = step_checkpoints(dir.string());
  const int64_t keep = config_["train"]["keep_last"];
  for (size_t i = 0; i + keep < steps.size(); ++i) fs::remove(steps[i]);
  // Temporary files of a save that was killed before its rename (the run is locked: no other
  // process writes here, and this one's are renamed by now).
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (!temporary_target(it->path().filename().string()).empty()) fs::remove(it->path(), ec);
}

void Trainer::restore() {
  const std::string path = (fs::path(options_.run_dir) / "checkpoints" / "last.pt").string();
  const int rank = options_.comm ? options_.comm->rank() : 0;
  LoadOptions load;
  load.optimizer = optimizer_.get();
  load.restore_rng = true;
  load.rank = rank;
  load.device = device_;
  load.average = average_.get();
  auto m = load_checkpoint(path, *model_, load);
  check_checkpoint_fits_config(path, m, config_);
  if (average_ && !m.at("ema_restored").get<bool>())
    spdlog::info("{} holds no moving average of the weights with decay {} (train.ema_decay): averaging "
                 "starts over from its weights", path, average_->decay());
  if (m.contains("rng_device_unusable"))
    spdlog::warn("{}: the GPU's random state saved there does not fit this LibTorch ({}); dropout on the GPU "
                 "continues from its seed", path, m["rng_device_unusable"].get<std::string>());
  if (!m.value("rng_restored", true)) {
    spdlog::warn("rank {}: {} holds no random state for this rank (written by fewer ranks); "
                 "dropout continues from a fresh seed", rank, path);
    seed_rank_stream();
  }
  step_ = m.at("step");
  epoch_ = m.at("epoch");
  nonfinite_in_row_ = m.at("nonfinite_in_row");
  nonfinite_total_ = m.at("nonfinite_total");
  evals_since_best_ = m.at("evals_since_best");
  evaluated_step_ = m.value("evaluated_step", int64_t{-1});  // older checkpoints: unknown
  if (!m.at("best").is_null()) best_ = m.at("best").get<double>();
  scaler_.load_state(m.value("loss_scaler", json()));
  task_.load_state(m.at("task_state"));
  spdlog::info("resumed from {} at step {} (epoch {})", path, step_, epoch_);
}

bool Trainer::update(UpdateStats& stats) {
  const auto& t = config_.at("train");
  const int64_t update_freq = t.at("update_freq"), max_epochs = t.at("max_epochs");
  // Zeroing, not freeing, the gradients: reusing their memory measured faster than
  // fresh allocations (page faults) each step. (LibTorch 2.x frees them by default.)
#if TORCH_VERSION_MAJOR >= 2
  optimizer_->zero_grad(/*set_to_none=*/false);
#else
  optimizer_->zero_grad();
#endif
  // The loss and the task's statistics stay on the device until the update's end, then come to
  // the host in one copy: each copy waits for the device to finish its queue.
  torch::Tensor loss_acc;
  std::map<std::string, torch::Tensor> sums_acc;
  auto accumulate = [](torch::Tensor& acc, const torch::Tensor& v) {
    auto x = v.detach().to(torch::kDouble);
    acc = acc.defined() ? acc + x : x;
  };
  double sample_size = 0, tokens = 0, items = 0;
  model_->train();
  const int world = world_size(), rank = options_.comm ? options_.comm->rank() : 0;
  // With one batch per update (and one rank) the divisor of the gradients is that batch's sample
  // size, known before backward, which applies it for free; otherwise the gradients are rescaled
  // once the whole update is summed. The fp16 loss scale rides along either way.
  const bool divide_in_backward = update_freq == 1 && world == 1;
  for (int64_t i = 0; i < update_freq; ++i) {
    // The update's i-th batch of the global order: this rank's to compute, or another's to skip.
    const bool mine = i % world == rank;
    std::optional<Batch> batch;
    auto pull = [&] {
      if (!mine) return task_.skip_batch();
      batch = task_.next_batch();
      return batch.has_value();
    };
    if (!pull()) {
      if (max_epochs > 0 && epoch_ >= max_epochs) {
        if (i == 0) return false;  // every rank walks the same order, so all stop here
        break;  // use what this update accumulated
      }
      task_.begin_epoch(++epoch_);
      if (!pull()) throw DataError("the training split yields no batches");
    }
    if (!mine) continue;
    LossOut out;
    {
      AutocastScope autocast(precision_, device_);  // forward only; backward follows its types
      out = task_.loss(*batch);
    }
    // Gradients of summed losses -> gradients of the mean over the update (see above).
    const double grad_scale = scaler_.scale() / (divide_in_backward ? std::max(out.sample_size, 1.0) : 1.0);
    // This rank's last batch of the update: its gradients go to the other ranks during backward.
    if (reducer_ && i + world >= update_freq) reducer_->arm();
    out.loss.backward(torch::full_like(out.loss, grad_scale));
    accumulate(loss_acc, out.loss);
    sample_size += out.sample_size;
    for (const auto& [k, v] : out.sums) accumulate(sums_acc[k], v);
    tokens += batch->n_tokens;
    items += batch->n_items;
    if (sum_keys_.empty())
      for (const auto& kv : out.sums) sum_keys_.push_back(kv.first);
  }
  interrupted_ = interrupt_requested();
  torch::NoGradGuard no_grad;
  double loss_sum = 0;
  std::map<std::string, double> sums;
  if (loss_acc.defined()) {  // undefined on a rank with no batch in this update
    std::vector<torch::Tensor> parts = {loss_acc};
    for (const auto& [k, v] : sums_acc) parts.push_back(v);
    auto host = torch::stack(parts).to(torch::kCPU);
    const double* value = host.data_ptr<double>();
    loss_sum = value[0];
    for (const auto& [k, v] : sums_acc) sums[k] = *++value;
  }
  if (auto* comm = options_.comm) {
    // The gradient buckets that backward did not start, then one all-reduce for the statistics
    // (and the stop flag, so that every rank stops at the same update): the same collectives in
    // the same order on every rank. Every rank then takes the same decisions.
    reducer_->launch_rest();
    if (!sum_keys_agreed_) {
      // The statistics' names once, from rank 0 (which computes every update's first batch,
      // while another rank may have had none yet): all ranks then reduce vectors of one size.
      std::string names;
      for (const auto& k : sum_keys_) names += k + "\n";
      names = comm->broadcast_text(names);
      sum_keys_.clear();
      for (size_t at = 0, end; (end = names.find('\n', at)) != std::string::npos; at = end + 1)
        sum_keys_.push_back(names.substr(at, end - at));
      sum_keys_agreed_ = true;
    }
    std::vector<double> v = {loss_sum, sample_size, tokens, items, interrupted_ ? 1.0 : 0.0};
    for (const auto& k : sum_keys_) v.push_back(sums[k]);
    v = comm->all_reduce_values(v);
    loss_sum = v[0], sample_size = v[1], tokens = v[2], items = v[3], interrupted_ = v[4] > 0;
    for (size_t k = 0; k < sum_keys_.size(); ++k) sums[sum_keys_[k]] = v[5 + k];
    reducer_->finish();
    if (step_ == 1)  // the buckets as rebuilt after the first update
      spdlog::info("gradients: {} buckets of up to {} MB; the first was sent after {} of {} gradients",
                   reducer_->buckets(), config_.at("train").at("dist_bucket_mb").get<double>(),
                   reducer_->first_send_after(), reducer_->parameters());
  }
  if (!std::isfinite(loss_sum)) {
    skip_nonfinite("loss", loss_sum);
    return true;
  }
  // Multi-tensor ops over all gradients: a few kernel launches on a GPU, not one per parameter.
  std::vector<torch::Tensor> grads;
  for (auto& p : params_)
    if (p.grad().defined()) grads.push_back(p.grad());
  const double unscale = (divide_in_backward ? 1.0 : 1.0 / std::max(sample_size, 1.0)) / scaler_.scale();
  if (unscale != 1.0 && !grads.empty()) at::_foreach_mul_(grads, unscale);
  const double gnorm = grads.empty() ? 0.0 : torch::stack(at::_foreach_norm(grads)).norm().item<double>();
  if (!std::isfinite(gnorm)) {
    // fp16 overflow: expected now and then, the scale adapts. At the smallest scale (1) the
    // gradients are not too large for fp16 but broken: counted as any other NaN/Inf.
    if (scaler_.enabled() && scaler_.scale() > 1.0) {
      scaler_.update(false);
      spdlog::warn("step {}: fp16 gradients overflowed, update skipped; loss scale now {}",
                   step_ + 1, scaler_.scale());
    } else {
      skip_nonfinite("gradient norm", gnorm);
    }
    return true;
  }
  scaler_.update(true);
  nonfinite_in_row_ = 0;
  const double clip = config_["optim"]["clip_norm"];
  if (clip > 0 && gnorm > clip) at::_foreach_mul_(grads, clip / (gnorm + 1e-6));
  const double lr = learning_rate(config_, step_ + 1);
  for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr);
  optimizer_->step();
  ++step_;
  if (average_) average_->update();

  stats.loss += loss_sum, stats.sample_size += sample_size, stats.tokens += tokens;
  stats.items += items, stats.gnorm += gnorm, ++stats.updates;
  for (const auto& [k, v] : sums) stats.sums[k] += v;
  return true;
}

void Trainer::skip_nonfinite(const std::string& what, double value) {
  ++nonfinite_in_row_, ++nonfinite_total_;
  spdlog::warn("step {}: {} is {}, update skipped ({} in a row, {} in total)", step_ + 1, what,
               value, nonfinite_in_row_, nonfinite_total_);
  if (nonfinite_in_row_ >= config_["train"]["max_nonfinite"].get<int64_t>())
    throw Error("stopping: " + std::to_string(nonfinite_in_row_) + " updates in a row had a NaN/Inf " +
                what + " (lower optim.lr, or set optim.clip_norm)");
}

bool Trainer::evaluate_valid() {
  const auto& t = config_.at("train");
  model_->eval();
  Metrics m;
  {
    torch::NoGradGuard no_grad;
    AutocastScope autocast(precision_, device_);
    AveragedWeightsScope averaged(average_.get());  // with train.ema_decay, the average is evaluated
    m = task_.evaluate(Split::Valid, (fs::path(options_.run_dir) / "samples" /
                                      ("valid_step" + std::to_string(step_))).string());
  }
  json record = {{"step", step_}, {"split", "valid"}};
  for (const auto& [k, v] : m) record[k] = v;
  record_metrics(record);

  const std::string metric = t.at("best_metric");
  auto it = m.find(metric);
  if (it == m.end()) {
    std::string known;
    for (const auto& [k, v] : m) known += (known.empty() ? "" : ", ") + k;
    throw ConfigError("config error: train.best_metric '" + metric +
                      "' is not reported by this task's evaluation (it reports: " + known + ")");
  }
  const bool higher = t.at("best_mode") == "max";
  const bool improved = !best_ || (higher ? it->second > *best_ : it->second < *best_);
  spdlog::info("valid | step {} | {}{}", step_, format_metrics(m), improved ? " | new best" : "");
  // Updated before the checkpoint is written, so that a resumed run compares with the true best.
  if (improved) {
    best_ = it->second;
    evals_since_best_ = 0;
  } else {
    const int64_t patience = t.at("patience");
    if (patience > 0 && ++evals_since_best_ >= patience) {
      spdlog::info("early stop: no better {} in {} evaluations", metric, patience);
      stop_early_ = true;
    }
  }
  return improved;
}

void Trainer::evaluate_and_track() {
  average_running_stats();
  // Rank 0 evaluates while the others wait in the all-reduce that tells them whether to stop.
  // A config mistake that only the evaluation reveals (best_metric) stops the job after the
  // checkpoint: the training before it is not lost.
  bool improved = false, config_error = false;
  std::exception_ptr error;
  if (main_rank()) {
    try {
      improved = evaluate_valid();
    } catch (const Error& e) {
      if (e.exit_code() != kExitUsage) throw;
      error = std::current_exception();
      config_error = true;
    }
  }
  if (options_.comm) {
    const auto v = options_.comm->all_reduce_values({stop_early_ ? 1.0 : 0.0, config_error ? 1.0 : 0.0});
    stop_early_ = v[0] > 0, config_error = v[1] > 0;
  }
  if (!config_error) evaluated_step_ = step_;
  write_checkpoint();  // the statistics were averaged above
  if (error) std::rethrow_exception(error);
  if (config_error) throw ConfigError("config error: rank 0's evaluation stopped the job (see its log)");
  if (improved) {
    const fs::path dir = fs::path(options_.run_dir) / "checkpoints";
    replace_with_link((dir / "last.pt").string(), (dir / "best.pt").string());
  }
}

void Trainer::record_metrics(const json& record) {
  append_metrics(options_.run_dir, record);
  if (events_) events_->add_metrics(record);
}

void Trainer::log_train(const UpdateStats& stats) {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - stats.start).count();
  const double ss = std::max(stats.sample_size, 1.0);
  json record = {{"step", step_},
                 {"split", "train"},
                 {"epoch", epoch_},
                 {"loss", stats.loss / ss},
                 {"lr", learning_rate(config_, step_)},
                 {"gnorm", stats.gnorm / stats.updates},
                 {"tokens_per_s", stats.tokens / secs},
                 {"items_per_s", stats.items / secs},
                 {"nonfinite_total", nonfinite_total_}};
  if (scaler_.enabled()) record["loss_scale"] = scaler_.scale();
  for (const auto& [k, v] : stats.sums) record[k] = v / ss;
  if (stats.sums.count("nll")) record["ppl"] = std::exp(stats.sums.at("nll") / ss);
  record_metrics(record);
  std::string line = fmt::format("train | epoch {} | step {} | loss {:.4f}", epoch_, step_,
                                 record["loss"].get<double>());
  if (record.contains("ppl")) line += fmt::format(" | ppl {:.2f}", record["ppl"].get<double>());
  spdlog::info("{} | lr {:.3g} | gnorm {:.3f} | {:.0f} tok/s", line, record["lr"].get<double>(),
               record["gnorm"].get<double>(), record["tokens_per_s"].get<double>());
}

int Trainer::run() {
  const auto& t = config_.at("train");
  const int64_t max_steps = t.at("max_steps"), log_every = t.at("log_every");
  const int64_t eval_every = t.at("eval_every"), save_every = t.at("save_every");
  if (options_.resume) {
    restore();
    if (main_rank()) drop_metrics_after(options_.run_dir, step_);
    if (max_steps > 0 && step_ >= max_steps) {
      spdlog::info("nothing to do: step {} >= train.max_steps {}", step_, max_steps);
      return kExitOk;
    }
    // A run that stopped early stays stopped, unless resumed with a larger train.patience.
    const int64_t patience = t.at("patience");
    if (patience > 0 && evals_since_best_ >= patience) {
      spdlog::info("nothing to do: the run stopped early ({} evaluations without a better {}, "
                   "train.patience {})", evals_since_best_, t.at("best_metric").get<std::string>(), patience);
      return kExitOk;
    }
  } else {
    task_.begin_epoch(epoch_);
    seed_rank_stream();
  }
  // Training starts: config.json records how. A resume that fails or has nothing to do leaves
  // it as it was; for a new run it marks the run as started (a new run that fails before this,
  // e.g. on its data, leaves no run directory: apps/xformer/train.cpp).
  if (main_rank()) write_run_config(options_.run_dir, config_);
  install_interrupt_handler();
  if (main_rank() && t.at("tensorboard").get<bool>()) {
    events_ = std::make_unique<report::ScalarEventWriter>((fs::path(options_.run_dir) / "tensorboard").string());
    // A resumed run's file replaces what earlier files hold with metrics.jsonl's training and
    // validation lines up to the checkpoint (the record of the run, cut at step_ on resume): so
    // the curves are whole however earlier files ended (interrupted, written without events).
    if (options_.resume) {
      events_->restart_at(1);
      std::ifstream in(fs::path(options_.run_dir) / "metrics.jsonl");
      for (std::string line; std::getline(in, line);) {
        const auto r = json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (r.is_object() && r.contains("step") && r["step"].is_number_integer() && r["step"].get<int64_t>() <= step_ &&
            (r.value("split", json()) == "train" || r.value("split", json()) == "valid") && !r.contains("checkpoint"))
          events_->add_metrics(r);  // the trainer's own lines (eval's carry "checkpoint")
      }
    }
  }
  // The same start on every rank: initialisation is seeded alike, and this makes it certain.
  if (options_.comm) options_.comm->broadcast_from_rank0(params_);
  ProgressBar bar(max_steps, main_rank());
  UpdateStats stats;
  // A resumed run whose last step was validated (one that ended by train.max_epochs, say) is
  // not validated again unless it trains further.
  bool evaluated_now = evaluated_step_ == step_;
  while ((max_steps <= 0 || step_ < max_steps) && !stop_early_) {
    const int64_t before = step_;
    if (!update(stats)) break;
    // Logging, evaluation and checkpoints follow the steps taken: a skipped update (NaN/Inf,
    // an fp16 overflow) leaves step_ where it was, which has had its turn already.
    if (step_ != before) {
      evaluated_now = false;
      if (stats.updates > 0 && (step_ % log_every == 0 || step_ == max_steps)) {
        bar.clear();
        if (main_rank()) log_train(stats);
        stats = UpdateStats();
      }
      bar.update(step_, "loss " + std::to_string(stats.updates ? stats.loss / std::max(stats.sample_size, 1.0) : 0.0).substr(0, 6));
      if (eval_every > 0 && step_ % eval_every == 0) {
        bar.clear();
        evaluate_and_track();
        evaluated_now = true;
      } else if (save_every > 0 && step_ % save_every == 0) {
        save();
      }
    }
    // One process polls its own signal flag; ranks act on the flag they agreed on in update().
    if (options_.comm ? interrupted_ : interrupt_requested()) {
      bar.clear();
      save();
      spdlog::warn("interrupted: checkpoint saved at step {}; continue with --resume", step_);
      return kExitInterrupted;
    }
  }
  bar.clear();
  if (!evaluated_now && step_ > 0) evaluate_and_track();
  spdlog::info("done: {} updates, {} epochs; best valid {} = {}", step_, epoch_,
               t.at("best_metric").get<std::string>(), best_ ? *best_ : NAN);
  return kExitOk;
}

}  // namespace xformer::train
