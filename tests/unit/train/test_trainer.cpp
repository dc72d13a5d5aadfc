// The trainer on a fake task: NaN/Inf losses are skipped and counted, too many in a row stop
// the run with a clear error, gradient accumulation equals one big batch, best/patience work,
// the moving average of the weights is what is evaluated and survives resume exactly.
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

#include "test_support.h"
#include "xformer/core/error.h"
#include "xformer/core/registry.h"
#include "xformer/core/remove_tree.h"
#include "xformer/tasks/task.h"
#include "xformer/train/adam.h"
#include "xformer/train/checkpoint.h"
#include "xformer/train/run_dir.h"
#include "xformer/train/trainer.h"
#include "xformer/train/weight_average.h"

using namespace xformer;
namespace fs = std::filesystem;
using xformer::testing::TempDir;
using xformer::testing::thrown_error;

namespace {

// Linear regression y = w.x on fixed data; batch i of an epoch is rows [4i, 4i+4).
// Losses listed in `poison` (by call number) are replaced by NaN.
class FakeTask : public Task {
 public:
  explicit FakeTask(std::set<int> poison = {}) : poison_(std::move(poison)) {
    torch::manual_seed(0);
    model_ = torch::nn::Linear(torch::nn::LinearOptions(3, 1).bias(false));
    x_ = torch::randn({16, 3});
    y_ = x_.matmul(torch::tensor({1.0f, -2.0f, 0.5f}));
  }
  std::shared_ptr<torch::nn::Module> model() override { return model_.ptr(); }
  void begin_epoch(int64_t) override { position_ = 0; }
  std::optional<Batch> next_batch() override {
    if (position_ >= 4) return std::nullopt;
    Batch b;
    b.tensors["x"] = x_.narrow(0, 4 * position_, 4);
    b.tensors["y"] = y_.narrow(0, 4 * position_, 4);
    b.n_items = b.n_tokens = 4;
    ++position_;
    return b;
  }
  json state() const override { return {{"position", position_}}; }
  void load_state(const json& s) override { position_ = s.at("position"); }
  LossOut loss(const Batch& b) override {
    LossOut out;
    out.loss = (model_(b.tensors.at("x")).squeeze(1) - b.tensors.at("y")).pow(2).sum();
    if (poison_.count(calls_++)) out.loss = out.loss * std::numeric_limits<float>::quiet_NaN();
    out.sample_size = 4;
    return out;
  }
  Metrics evaluate(Split, const std::string&) override {
    torch::NoGradGuard g;
    return {{"loss", (model_(x_).squeeze(1) - y_).pow(2).mean().item<double>()}, {"constant", 1.0}};
  }
  void sample(const SampleOptions&) override {}

  torch::nn::Linear model_{nullptr};
  torch::Tensor x_, y_;
  int64_t position_ = 0;
  int calls_ = 0;
  std::set<int> poison_;
};

json fake_config(const std::string& overrides_json) {
  RawConfig raw;
  raw.value = json::parse(R"({"train": {"max_steps": 8, "log_every": 1, "eval_every": 4,
      "save_every": 4, "threads": 1}, "optim": {"lr": 0.05, "warmup_steps": 0,
      "schedule": "constant"}})");
  auto extra = json::parse(overrides_json);
  raw.value.merge_patch(extra);
  return resolve(raw);
}

std::vector<json> records(const std::string& run, const std::string& split) {
  std::vector<json> out;
  std::ifstream in(run + "/metrics.jsonl");
  for (std::string l; std::getline(in, l);)
    if (auto j = json::parse(l); j["split"] == split) out.push_back(j);
  return out;
}

std::vector<double> train_losses(const std::string& run) {
  std::vector<double> out;
  for (const auto& j : records(run, "train")) out.push_back(j["loss"]);
  return out;
}

}  // namespace

TEST_CASE("train --force empties a run directory and refuses a folder holding anything else", "[train]") {
  TempDir tmp("run_dir_force");
  const fs::path run = tmp.path() / "run";
  train::prepare_run_dir(run.string(), false, false);
  fs::create_directories(run / "tensorboard");
  fs::create_directories(run / "samples" / "detections");
  const std::vector<std::string> ours = {
      "config.json",          "train.log",          "metrics.jsonl",     "tokenizer.model",
      "classes.json",         "config.json.tmp.host.123", "checkpoints/last.pt", "checkpoints/best.pt",
      "checkpoints/step_00000020.pt", "checkpoints/step_00000040.pt.tmp.host.9", "samples/test.hyp",
      "samples/valid_step20.hyp", "samples/test.average2.set.hyp", "samples/sample_1.mid", "samples/sample_1_t0.90_1.png",
      "samples/grid.png",     "samples/detections/000001.png", "samples/detections/detections.json",
      "tensorboard/events.out.tfevents.1.host.2"};
  for (const auto& f : ours) std::ofstream(run / f) << "x";
  train::prepare_run_dir(run.string(), false, true);
  std::set<std::string> left;
  for (const auto& e : fs::recursive_directory_iterator(run)) left.insert(fs::relative(e.path(), run).string());
  CHECK(left == std::set<std::string>{".lock", "checkpoints", "samples"});

  // A folder that is not a run (here: a project with its own config.json) loses nothing, not
  // even a lock file is written into it.
  const fs::path project = tmp.path() / "project";
  fs::create_directories(project / "src");
  std::ofstream(project / "config.json") << "{}";
  {
    const auto e = thrown_error([&] { train::prepare_run_dir(project.string(), false, true); });
    CHECK(e.exit_code() == 2);
    CHECK(std::string(e.what()).find("'src', which xformer did not write") != std::string::npos);
  }
  CHECK(fs::exists(project / "config.json"));
  CHECK(fs::exists(project / "src"));
  CHECK(!fs::exists(project / ".lock"));
  // Only files named like an interrupted write of a run file count as one: not a folder.
  remove_tree(project.string());
  fs::create_directories(project / "checkpoints.tmp.x");
  CHECK_THROWS(train::prepare_run_dir(project.string(), false, true));
  CHECK(fs::exists(project / "checkpoints.tmp.x"));
  // A tensorboard/ folder is ours only if it holds nothing but event files.
  remove_tree(project.string());
  fs::create_directories(project / "tensorboard" / "other_experiment");
  CHECK_THROWS(train::prepare_run_dir(project.string(), false, true));
  CHECK(fs::exists(project / "tensorboard" / "other_experiment"));
  // Inside a run's own folders, too, only the files xformer writes there count as its own.
  for (const char* foreign : {"checkpoints/other_model.ckpt", "checkpoints/step_12.pt", "samples/my_recording.wav",
                              "samples/detections/notes.txt", "samples/notes"}) {
    CAPTURE(foreign);
    remove_tree(run.string());
    train::prepare_run_dir(run.string(), false, false);
    fs::create_directories((run / foreign).parent_path());
    std::ofstream(run / "config.json") << "{}";
    std::ofstream(run / foreign) << "mine";
    const auto e = thrown_error([&] { train::prepare_run_dir(run.string(), false, true); });
    CHECK(e.exit_code() == 2);
    const std::string folder = fs::path(foreign).begin()->string();
    CHECK(std::string(e.what()).find("'" + folder + "' with files in it that xformer did not write") != std::string::npos);
    CHECK(fs::exists(run / foreign));
    CHECK(fs::exists(run / "config.json"));
  }
}

TEST_CASE("a non-empty folder given as a new run directory is refused as it is, without a lock file", "[train]") {
  TempDir tmp("run_dir_non_empty");
  const fs::path folder = tmp.path() / "photos";
  fs::create_directories(folder);
  std::ofstream(folder / "holiday.jpg") << "x";
  const auto e = thrown_error([&] { train::prepare_run_dir(folder.string(), false, false); });
  CHECK(e.exit_code() == 2);
  CHECK(std::string(e.what()).find("is not empty") != std::string::npos);
  std::set<std::string> left;
  for (const auto& entry : fs::directory_iterator(folder)) left.insert(entry.path().filename().string());
  CHECK(left == std::set<std::string>{"holiday.jpg"});
}

TEST_CASE("default_run_dir: configs of one name in different folders get different runs", "[train]") {
  CHECK(train::default_run_dir("configs/music/demo.json") == "runs/music/demo");
  CHECK(train::default_run_dir("configs/translation/demo.json") == "runs/translation/demo");
  CHECK(train::default_run_dir("/home/me/exp/big.json") == "runs/exp/big");
  CHECK(train::default_run_dir("mine.json") == "runs/mine");
  CHECK(train::default_run_dir("./mine.json") == "runs/mine");
  CHECK(train::default_run_dir("../mine.json") == "runs/mine");  // never outside runs/
  CHECK(train::default_run_dir("a/b/../mine.json") == "runs/a/mine");
}

TEST_CASE("resume refuses a changed task or model and forgets metrics logged after the checkpoint", "[train]") {
  TempDir tmp("run_dir_resume");
  const auto config = nlohmann::json::parse(
      R"({"task": {"name": "t", "train": "a", "max_tokens": 100}, "model": {"d_model": 64, "dropout": 0.1},
          "optim": {}, "train": {"max_steps": 10}})");
  train::write_run_config(tmp.str(), config);
  auto changed = config;
  changed["train"]["max_steps"] = 20;  // training, batching and regularisation keys may change
  changed["task"]["max_tokens"] = 50;
  changed["model"]["dropout"] = 0.3;
  changed["model"]["new_key"] = 1;  // keys the run's config lacks (a later version's) are not compared
  CHECK_NOTHROW(train::check_config_fits_checkpoint(tmp.str(), changed, "--resume"));
  changed["model"]["d_model"] = 32;
  {
    const auto e = thrown_error([&] { train::check_config_fits_checkpoint(tmp.str(), changed, "--resume"); });
    CHECK(e.exit_code() == 2);
    CHECK(std::string(e.what()).find("model.d_model is 64 in '") != std::string::npos);
    CHECK(std::string(e.what()).find("but 32 now") != std::string::npos);
    CHECK(std::string(e.what()).find("another --run-dir") != std::string::npos);
  }
  {
    const auto e = thrown_error([&] { train::check_config_fits_checkpoint(tmp.str(), changed, "--set"); });
    CHECK(std::string(e.what()).find("config error: --set: model.d_model is 64") != std::string::npos);
  }
  changed = config;
  changed["task"].erase("train");
  {
    const auto e = thrown_error([&] { train::check_config_fits_checkpoint(tmp.str(), changed, "--resume"); });
    CHECK(std::string(e.what()).find("task.train is \"a\" in '") != std::string::npos);
    CHECK(std::string(e.what()).find("but unset now") != std::string::npos);
  }

  // A run config missing a group (edited by hand) is refused, not filled with defaults.
  auto partial = config;
  partial.erase("task");
  train::write_run_config(tmp.str("edited"), partial);
  {
    const auto e = thrown_error([&] { train::read_run_config(tmp.str("edited")); });
    CHECK(std::string(e.what()).find("config.json' has no 'task' group") != std::string::npos);
  }

  for (int step : {10, 20, 20, 30}) train::append_metrics(tmp.str(), {{"step", step}, {"split", "train"}});
  train::drop_metrics_after(tmp.str(), 20);
  std::vector<int> steps;
  std::ifstream in(tmp.path() / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) steps.push_back(nlohmann::json::parse(line)["step"]);
  CHECK(steps == std::vector<int>{10, 20, 20});
}

TEST_CASE("a checkpoint that does not fit the model is refused, naming the tensor", "[train]") {
  TempDir tmp("checkpoint_shapes");
  const std::string path = tmp.str("model.pt");
  torch::nn::Linear saved(4, 3);
  train::save_checkpoint(path, *saved, nullptr, nlohmann::json::object());
  torch::nn::Linear same(4, 3), wider(4, 5);
  train::load_checkpoint(path, *same);
  CHECK(torch::equal(same->weight, saved->weight));
  {
    const auto e = thrown_error([&] { train::load_checkpoint(path, *wider); });
    CHECK(std::string(e.what()).find("'weight' is [3, 4] in the checkpoint but [5, 4] in the model") !=
          std::string::npos);
  }
  // A checkpoint with more tensors than the model (more layers, say) is refused too.
  torch::nn::Sequential deeper(torch::nn::Linear(4, 4), torch::nn::Linear(4, 4));
  train::save_checkpoint(path, *deeper, nullptr, nlohmann::json::object());
  torch::nn::Sequential shallower(torch::nn::Linear(4, 4));
  {
    const auto e = thrown_error([&] { train::load_checkpoint(path, *shallower); });
    CHECK(std::string(e.what()).find("it holds '1.weight', which the model built from the config does not have") !=
          std::string::npos);
  }
  torch::nn::Sequential same_depth(torch::nn::Linear(4, 4), torch::nn::Linear(4, 4));
  train::load_checkpoint(path, *same_depth);
  CHECK(torch::equal(same_depth[1]->as<torch::nn::Linear>()->weight, deeper[1]->as<torch::nn::Linear>()->weight));
}

TEST_CASE("a checkpoint whose weights were damaged on disk is refused, not loaded as another model", "[train]") {
  TempDir tmp("checkpoint_digest");
  const std::string path = tmp.str("model.pt");
  torch::nn::Linear saved(16, 16);
  {
    torch::NoGradGuard no_grad;
    saved->weight.fill_(1.5f);  // 0x3FC00000: a pattern to find in the file
  }
  train::save_checkpoint(path, *saved, nullptr, nlohmann::json::object());
  torch::nn::Linear intact(16, 16);
  train::load_checkpoint(path, *intact);
  CHECK(torch::equal(intact->weight, saved->weight));
  // One weight's bytes changed in place (1.5 -> 2.5): the archive still reads.
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  in.close();
  const float one_and_half = 1.5f, two_and_half = 2.5f;
  const std::string pattern(reinterpret_cast<const char*>(&one_and_half), 4);
  const auto at = bytes.find(pattern + pattern + pattern + pattern);
  REQUIRE(at != std::string::npos);
  bytes.replace(at + 4, 4, std::string(reinterpret_cast<const char*>(&two_and_half), 4));
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  torch::nn::Linear damaged(16, 16);
  const auto e = thrown_error([&] { train::load_checkpoint(path, *damaged); });
  CHECK(std::string(e.what()).find("is corrupt: the digest of its model weights does not match the one written into it") !=
        std::string::npos);

  // The optimizer's state too: Adam's first moments after one step on a constant gradient are one
  // value repeated, a pattern to find and change.
  torch::nn::Linear model(16, 16);
  train::Adam adam(model->parameters(), train::AdamConfig{});
  for (auto& p : model->parameters()) p.mutable_grad() = torch::ones_like(p);
  adam.step();
  train::save_checkpoint(path, *model, &adam, nlohmann::json::object());
  {
    torch::nn::Linear again(16, 16);
    train::Adam restored(again->parameters(), train::AdamConfig{});
    train::LoadOptions load;
    load.optimizer = &restored;
    train::load_checkpoint(path, *again, load);  // intact: loads
  }
  const float moment = adam.state_tensors().at(2).second.flatten()[0].item<float>();  // exp_avg.0
  std::ifstream in2(path, std::ios::binary);
  std::string state((std::istreambuf_iterator<char>(in2)), {});
  in2.close();
  const std::string m4(reinterpret_cast<const char*>(&moment), 4);
  const auto where = state.find(m4 + m4 + m4 + m4);
  REQUIRE(where != std::string::npos);
  const float other = moment * 3;
  state.replace(where + 4, 4, std::string(reinterpret_cast<const char*>(&other), 4));
  std::ofstream(path, std::ios::binary | std::ios::trunc) << state;
  torch::nn::Linear again(16, 16);
  train::Adam restored(again->parameters(), train::AdamConfig{});
  train::LoadOptions load;
  load.optimizer = &restored;
  const auto e2 = thrown_error([&] { train::load_checkpoint(path, *again, load); });
  CHECK(std::string(e2.what()).find("is corrupt: the digest of its optimizer state does not match") != std::string::npos);
}

TEST_CASE("checkpoint average:N loads the mean weights of the last N step checkpoints", "[train]") {
  TempDir tmp("checkpoint_average");
  fs::create_directories(tmp.path() / "checkpoints");
  torch::nn::Sequential model(torch::nn::Linear(3, 2), torch::nn::BatchNorm1d(2));
  auto fill = [&model](double v) {  // every tensor, the integer batch counter too, to v
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.fill_(v);
    for (auto& b : model->buffers()) b.fill_(v);
  };
  for (int step : {1, 2, 10}) {  // step 10 sorts after 2 by number, as the zero padding ensures
    fill(step);
    train::save_checkpoint(tmp.str("checkpoints/" + train::step_checkpoint_name(step)), *model, nullptr, {{"step", step}});
  }
  train::replace_with_link(tmp.str("checkpoints/step_00000010.pt"), tmp.str("checkpoints/last.pt"));
  std::ofstream(tmp.str("checkpoints/step_notes.pt")) << "not a step checkpoint";

  const auto paths = train::resolve_checkpoints(tmp.str(), "average:2");
  REQUIRE(paths.size() == 2);
  CHECK(fs::path(paths[0]).filename() == "step_00000002.pt");
  CHECK(fs::path(paths[1]).filename() == "step_00000010.pt");
  fill(0);
  const auto meta = train::load_model_weights(paths, *model);
  CHECK(meta["step"] == 10);
  CHECK(meta["averaged_steps"] == nlohmann::json::array({2, 10}));
  for (const auto& p : model->parameters()) CHECK(torch::allclose(p, torch::full_like(p, 6.0)));
  auto* norm = model[1]->as<torch::nn::BatchNorm1d>();
  CHECK(torch::allclose(norm->running_mean, torch::full({2}, 6.0)));
  CHECK(norm->num_batches_tracked.item<int64_t>() == 10);  // integers come from the newest
  // One checkpoint is loaded as it is.
  CHECK(train::resolve_checkpoints(tmp.str(), "last") == std::vector<std::string>{tmp.str("checkpoints/last.pt")});
  CHECK(train::resolve_checkpoints(tmp.str(), "average:1").size() == 1);

  for (const char* bad : {"average:0", "average:", "average:two", "average:-1"}) {
    const auto e = thrown_error([&] { train::resolve_checkpoints(tmp.str(), bad); });
    CHECK(e.exit_code() == 2);
    CHECK(std::string(e.what()).find("expected average:N with N >= 1") != std::string::npos);
  }
  const auto e = thrown_error([&] { train::resolve_checkpoints(tmp.str(), "average:4"); });
  CHECK(std::string(e.what()).find("holds 3 step checkpoints (train.keep_last") != std::string::npos);
}

TEST_CASE("trainer lowers the loss and keeps last/best checkpoints", "[train]") {
  TempDir tmp("trainer_basic");
  train::prepare_run_dir(tmp.str(), false, false);
  FakeTask task;
  auto config = fake_config(R"({"train": {"max_steps": 40, "eval_every": 20, "save_every": 20}})");
  const double before = task.evaluate(Split::Valid, "")["loss"];
  train::Trainer trainer(config, task, {tmp.str(), false});
  CHECK(trainer.run() == 0);
  CHECK(task.evaluate(Split::Valid, "")["loss"] < 0.5 * before);
  CHECK(std::filesystem::exists(tmp.path() / "checkpoints" / "best.pt"));
  CHECK(std::filesystem::exists(tmp.path() / "checkpoints" / "step_00000040.pt"));
}

TEST_CASE("train.keep_last K keeps the newest K step checkpoints; 0 keeps only last.pt and best.pt", "[train]") {
  for (const int keep : {2, 0}) {
    TempDir tmp("trainer_keep_last");
    train::prepare_run_dir(tmp.str(), false, false);
    FakeTask task;
    auto config = fake_config(R"({"train": {"max_steps": 40, "eval_every": 10, "save_every": 10, "keep_last": )" +
                              std::to_string(keep) + "}}");
    train::Trainer trainer(config, task, {tmp.str(), false});
    REQUIRE(trainer.run() == 0);
    std::vector<std::string> steps;
    for (const auto& p : train::step_checkpoints(tmp.str("checkpoints"))) steps.push_back(fs::path(p).filename().string());
    if (keep == 2) CHECK(steps == std::vector<std::string>{"step_00000030.pt", "step_00000040.pt"});
    else CHECK(steps.empty());
    // last.pt keeps its data when its step file is pruned, and resumes.
    CHECK(train::load_model_weights({tmp.str("checkpoints/last.pt")}, *task.model())["step"] == 40);
    CHECK(fs::exists(tmp.path() / "checkpoints" / "best.pt"));
    // A save killed before its rename left a temporary file: the next save removes it.
    std::ofstream(tmp.str("checkpoints/step_00000050.pt.tmp.otherhost.4242")) << "partial";
    FakeTask again;
    auto longer = fake_config(R"({"train": {"max_steps": 50, "eval_every": 10, "save_every": 10, "keep_last": )" +
                              std::to_string(keep) + "}}");
    train::Trainer resumed(longer, again, {tmp.str(), true});
    CHECK(resumed.run() == 0);
    CHECK(train_losses(tmp.str()).size() == 50);
    CHECK(!fs::exists(tmp.str("checkpoints/step_00000050.pt.tmp.otherhost.4242")));
    // A resume with nothing to do leaves the run's config.json as it was.
    FakeTask third;
    train::Trainer idle(fake_config(R"({"train": {"max_steps": 30}})"), third, {tmp.str(), true});
    CHECK(idle.run() == 0);
    CHECK(train::read_run_config(tmp.str())["train"]["max_steps"] == 50);
  }
}

TEST_CASE("train.recompute_activations on a model without Transformer layers is a config error", "[train][recompute]") {
  TempDir tmp("trainer_recompute");
  train::prepare_run_dir(tmp.str(), false, false);
  FakeTask task;  // a linear model
  const auto e = thrown_error([&] {
    train::Trainer trainer(fake_config(R"({"train": {"recompute_activations": true}})"), task, {tmp.str(), false});
  });
  CHECK(e.exit_code() == 2);
  CHECK(std::string(e.what()) ==
        "config error: 'train.recompute_activations' is true, but the model has no layers that recompute");
}

TEST_CASE("a NaN loss skips the update and is counted", "[train]") {
  TempDir tmp("trainer_nan");
  train::prepare_run_dir(tmp.str(), false, false);
  FakeTask task({2});  // the third batch's loss is NaN
  auto config = fake_config("{}");
  auto before = task.model_->weight.clone();
  train::Trainer trainer(config, task, {tmp.str(), false});
  CHECK(trainer.run() == 0);
  auto losses = train_losses(tmp.str());
  CHECK(losses.size() == 8);  // the skipped batch did not count as a step
  for (double l : losses) CHECK(std::isfinite(l));
  CHECK(!torch::isnan(task.model_->weight).any().item<bool>());
  CHECK(!torch::equal(before, task.model_->weight));
  const auto meta = train::read_checkpoint_meta((tmp.path() / "checkpoints" / "last.pt").string());
  CHECK(meta["nonfinite_total"] == 1);
  CHECK(meta["nonfinite_in_row"] == 0);  // the updates after it were good
}

TEST_CASE("a skipped update neither evaluates nor saves its step again", "[train]") {
  // The first update and the one after step 4's evaluation are skipped: evaluations stay at
  // steps 4 and 8, once each, and no checkpoint of step 0 appears.
  TempDir tmp("trainer_nan_cadence");
  train::prepare_run_dir(tmp.str(), false, false);
  FakeTask task({0, 5});
  auto config = fake_config(R"({"train": {"best_metric": "loss", "patience": 1}})");
  train::Trainer trainer(config, task, {tmp.str(), false});
  CHECK(trainer.run() == 0);
  std::vector<int64_t> steps;
  for (const auto& r : records(tmp.str(), "valid")) steps.push_back(r["step"]);
  CHECK(steps == std::vector<int64_t>{4, 8});
  CHECK(train_losses(tmp.str()).size() == 8);
  CHECK(!fs::exists(tmp.path() / "checkpoints" / "step_00000000.pt"));
}

TEST_CASE("too many NaN losses in a row stop the run with a clear error", "[train]") {
  TempDir tmp("trainer_nan_stop");
  train::prepare_run_dir(tmp.str(), false, false);
  FakeTask task({1, 2, 3});
  auto config = fake_config(R"({"train": {"max_nonfinite": 3}})");
  train::Trainer trainer(config, task, {tmp.str(), false});
  try {
    trainer.run();
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("3 updates in a row had a NaN/Inf loss") != std::string::npos);
    CHECK(e.exit_code() == 1);
  }
}

TEST_CASE("update_freq 2 over batches of 4 equals batches of 8", "[train]") {
  // Sum-then-divide normalisation makes the accumulated gradient the mean over all 8 rows.
  TempDir a_dir("trainer_accum_a"), b_dir("trainer_accum_b");
  train::prepare_run_dir(a_dir.str(), false, false);
  train::prepare_run_dir(b_dir.str(), false, false);
  FakeTask a, b;
  train::Trainer ta(fake_config(R"({"train": {"max_steps": 4, "update_freq": 2}})"), a, {a_dir.str(), false});
  ta.run();
  // Reference: by hand, 4 Adam steps on the mean loss over 8 rows at a time.
  FakeTask ref;
  torch::optim::Adam opt(ref.model_->parameters(), torch::optim::AdamOptions(0.05).betas({0.9, 0.98}).eps(1e-9));
  for (int step = 0; step < 4; ++step) {
    const int64_t half = step % 2;  // epoch of 4 batches = 2 updates of 8 rows
    auto x = ref.x_.narrow(0, 8 * half, 8), y = ref.y_.narrow(0, 8 * half, 8);
    opt.zero_grad();
    (ref.model_(x).squeeze(1) - y).pow(2).mean().backward();
    opt.step();
  }
  CHECK(xformer::testing::max_abs_diff(a.model_->weight, ref.model_->weight) < 1e-6);
  (void)b;
}

namespace {
// FakeTask whose validation also reports "score", taking the scripted values in turn.
class ScriptedScoreTask : public FakeTask {
 public:
  explicit ScriptedScoreTask(std::vector<double> scores) : scores_(std::move(scores)) {}
  Metrics evaluate(Split split, const std::string& tag) override {
    Metrics m = FakeTask::evaluate(split, tag);
    if (split == Split::Valid) m["score"] = scores_.at(std::min(evaluations_++, scores_.size() - 1));
    return m;
  }

 private:
  std::vector<double> scores_;
  size_t evaluations_ = 0;
};

// The weights a checkpoint file holds.
torch::Tensor checkpoint_weight(const fs::path& path) {
  FakeTask holder;
  train::load_checkpoint(path.string(), *holder.model());
  return holder.model_->weight.detach().clone();
}
}  // namespace

TEST_CASE("best.pt is the checkpoint of the best evaluation, lowest or highest by best_mode", "[train]") {
  // Validations at steps 2, 4, 6, 8 score 3, 1, 4, 2: the lowest at step 4, the highest at 6.
  for (const auto& [mode, best_step] : {std::pair<std::string, int>{"min", 4}, {"max", 6}}) {
    CAPTURE(mode);
    TempDir tmp("trainer_best_" + mode);
    train::prepare_run_dir(tmp.str(), false, false);
    ScriptedScoreTask task({3, 1, 4, 2});
    auto config = fake_config(R"({"train": {"max_steps": 8, "eval_every": 2, "save_every": 2, "keep_last": 10,
                                            "best_metric": "score", "best_mode": ")" + mode + R"("}})");
    train::Trainer trainer(config, task, {tmp.str(), false});
    REQUIRE(trainer.run() == 0);
    const fs::path dir = tmp.path() / "checkpoints";
    char step_file[32];
    std::snprintf(step_file, sizeof step_file, "step_%08d.pt", best_step);
    CHECK(train::read_checkpoint_meta((dir / "best.pt").string())["step"] == best_step);
    CHECK(torch::equal(checkpoint_weight(dir / "best.pt"), checkpoint_weight(dir / step_file)));
    CHECK_FALSE(torch::equal(checkpoint_weight(dir / "best.pt"), checkpoint_weight(dir / "last.pt")));
  }
}

namespace {
// Trains `task` under fake_config(overrides) in a fresh run directory; returns the directory.
std::unique_ptr<TempDir> trained(const std::string& name, const std::string& overrides, FakeTask& task) {
  auto dir = std::make_unique<TempDir>(name);
  train::prepare_run_dir(dir->str(), false, false);
  train::Trainer trainer(fake_config(overrides), task, {dir->str(), false});
  REQUIRE(trainer.run() == 0);
  return dir;
}
}  // namespace

TEST_CASE("optim.clip_norm scales the gradients to that norm before Adam; gnorm is the norm before", "[train]") {
  FakeTask task;
  const auto run = trained("trainer_clip", R"({"optim": {"clip_norm": 0.1}, "train": {"max_steps": 3, "eval_every": 0, "save_every": 0}})", task);
  const auto logged = records(run->str(), "train");
  REQUIRE(logged.size() == 3);

  // The same three updates by hand: mean squared-error gradients of batches 0, 1, 2, their norm,
  // scaled to 0.1 when larger, then LibTorch's Adam with the config's betas and eps.
  FakeTask reference;
  auto& w = reference.model_->weight;
  torch::optim::Adam adam({w}, torch::optim::AdamOptions(0.05).betas({0.9, 0.98}).eps(1e-9));
  int clipped = 0;
  for (int step = 0; step < 3; ++step) {
    adam.zero_grad();
    const auto x = reference.x_.narrow(0, 4 * step, 4), y = reference.y_.narrow(0, 4 * step, 4);
    ((reference.model_(x).squeeze(1) - y).pow(2).sum() / 4).backward();
    const double norm = w.grad().norm().item<double>();
    CHECK(logged[step]["gnorm"].get<double>() == Approx(norm).epsilon(1e-5));
    if (norm > 0.1) {
      w.mutable_grad().mul_(0.1 / (norm + 1e-6));
      ++clipped;
    }
    adam.step();
  }
  CHECK(clipped == 3);  // the test clips every update
  CHECK(torch::allclose(task.model_->weight, w, 1e-5, 1e-6));
  // Without clipping the weights end elsewhere: the option does something.
  FakeTask unclipped;
  trained("trainer_noclip", R"({"train": {"max_steps": 3, "eval_every": 0, "save_every": 0}})", unclipped);
  CHECK_FALSE(torch::allclose(unclipped.model_->weight, w, 1e-5, 1e-6));
}

TEST_CASE("early stopping after patience evaluations without improvement", "[train]") {
  TempDir tmp("trainer_patience");
  train::prepare_run_dir(tmp.str(), false, false);
  FakeTask task;
  // "constant" never improves after the first evaluation: stop after 2 more.
  auto config = fake_config(R"({"train": {"max_steps": 100, "eval_every": 2, "best_metric": "constant", "patience": 2}})");
  train::Trainer trainer(config, task, {tmp.str(), false});
  CHECK(trainer.run() == 0);
  CHECK(train_losses(tmp.str()).size() == 6);  // evals at 2 (best), 4, 6 (patience reached)

  // The checkpoint records the counter as of its evaluation: resuming a run that stopped early
  // does nothing, unless the patience grows.
  FakeTask again;
  train::Trainer resumed(config, again, {tmp.str(), true});
  CHECK(resumed.run() == 0);
  CHECK(train_losses(tmp.str()).size() == 6);
  config["train"]["patience"] = 3;
  FakeTask more;
  train::Trainer patient(config, more, {tmp.str(), true});
  CHECK(patient.run() == 0);
  CHECK(train_losses(tmp.str()).size() == 8);  // one more evaluation at 8, then stop
}

TEST_CASE("an unknown best_metric is a config error, after the checkpoint is saved", "[train]") {
  TempDir tmp("trainer_metric");
  train::prepare_run_dir(tmp.str(), false, false);
  FakeTask task;
  // Only the final evaluation, at step 6: the updates before it must not be lost.
  auto config = fake_config(R"({"train": {"best_metric": "bleu", "max_steps": 6, "eval_every": 0, "save_every": 0}})");
  train::Trainer trainer(config, task, {tmp.str(), false});
  try {
    trainer.run();
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.exit_code() == 2);
    CHECK(std::string(e.what()).find("'bleu' is not reported") != std::string::npos);
  }
  CHECK(std::filesystem::exists(tmp.path() / "checkpoints" / "step_00000006.pt"));
  CHECK(!std::filesystem::exists(tmp.path() / "checkpoints" / "best.pt"));
}

TEST_CASE("the weight average is the bias-corrected exponential mean of the weights", "[train][ema]") {
  torch::nn::Linear model(2, 1);
  auto fill = [&model](double v) {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.fill_(v);
  };
  auto all_equal = [](const std::vector<torch::Tensor>& ts, double v) {
    bool ok = true;
    for (const auto& t : ts) ok = ok && torch::allclose(t, torch::full_like(t, v), 1e-6, 1e-7);
    return ok;
  };
  train::WeightAverage average(*model, 0.5);
  fill(1);
  average.update();
  CHECK(all_equal(average.average(), 1.0));  // the first update's weights, not mixed with the start
  fill(3);
  average.update();
  fill(-2);
  average.update();
  // By hand, d = 0.5, t = 3: (0.125 * 1 + 0.25 * 3 + 0.5 * -2) / (1 - 0.125) = -1/7.
  CHECK(average.updates() == 3);
  CHECK(all_equal(average.average(), -1.0 / 7));
  average.swap();
  CHECK(all_equal(model->parameters(), -1.0 / 7));
  CHECK(all_equal(average.average(), -2.0));
  average.swap();
  CHECK(all_equal(model->parameters(), -2.0));
  CHECK(all_equal(average.average(), -1.0 / 7));

  // Saved and loaded exactly; a model of another shape is refused, naming the file.
  TempDir tmp("weight_average");
  torch::serialize::OutputArchive out;
  average.save(out);
  out.save_to(tmp.str("average.pt"));
  torch::serialize::InputArchive in;
  in.load_from(tmp.str("average.pt"));
  train::WeightAverage loaded(*model, 0.5);
  loaded.load(in, average.state(), "average.pt");
  CHECK(loaded.updates() == 3);
  for (size_t i = 0; i < 2; ++i) CHECK(torch::equal(loaded.average()[i], average.average()[i]));
  torch::nn::Linear wider(3, 1);
  train::WeightAverage other(*wider, 0.5);
  const auto e = thrown_error([&] { other.load(in, average.state(), "average.pt"); });
  CHECK(std::string(e.what()).find("checkpoint 'average.pt' does not fit this model: averaged parameter 0 is [1, 2]") !=
        std::string::npos);

  fill(4);
  average.restart();  // averaging starts over from the current weights
  CHECK(average.updates() == 1);
  CHECK(all_equal(average.average(), 4.0));
}

TEST_CASE("train.ema_decay: evaluation uses the moving average, eval loads it, resume keeps it exact", "[train][ema]") {
  const std::string settings = R"({"train": {"ema_decay": 0.6, "max_steps": 8, "save_every": 1, "keep_last": 10, "eval_every": 4}})";
  // The trained weights after each update, from the step checkpoints (--no-ema's view).
  auto trained_weights = [](const std::string& run, int step) {
    FakeTask t;
    const auto meta = train::load_model_weights({run + "/checkpoints/" + train::step_checkpoint_name(step)}, *t.model(),
                                                /*averaged_weights=*/false);
    CHECK(!meta.contains("ema_loaded"));
    return t.model_->weight.detach().clone().to(torch::kDouble);
  };
  // The bias-corrected average of the trained weights after updates first..last.
  auto expected_average = [&](const std::string& run, int first, int last, double d) {
    torch::Tensor a;
    for (int k = first, t = 1; k <= last; ++k, ++t) {
      const auto w = trained_weights(run, k);
      a = t == 1 ? w : a + (w - a) * ((1 - d) / (1 - std::pow(d, t)));
    }
    return a;
  };
  auto loaded_average = [](const std::string& run) {
    FakeTask t;
    const auto meta = train::load_model_weights({run + "/checkpoints/last.pt"}, *t.model());
    CHECK(meta.value("ema_loaded", false));
    return t.model_->weight.detach().clone();
  };

  TempDir full("trainer_ema_full");
  train::prepare_run_dir(full.str(), false, false);
  {
    FakeTask task;
    train::Trainer trainer(fake_config(settings), task, {full.str(), false});
    REQUIRE(trainer.run() == 0);
    // The trainer's own model ends with the trained weights, not the average.
    CHECK(torch::equal(task.model_->weight.to(torch::kDouble), trained_weights(full.str(), 8)));
  }
  const auto average = loaded_average(full.str());
  CHECK(xformer::testing::max_abs_diff(average.to(torch::kDouble), expected_average(full.str(), 1, 8, 0.6)) < 1e-6);
  CHECK(!torch::allclose(average.to(torch::kDouble), trained_weights(full.str(), 8)));
  // The valid loss logged at step 8 is the average's.
  {
    FakeTask t;
    t.model_->weight.set_data(average);
    const auto valid = records(full.str(), "valid");
    REQUIRE(valid.size() == 2);
    CHECK(valid.back()["loss"].get<double>() == Approx(t.evaluate(Split::Valid, "")["loss"]).epsilon(1e-9));
  }

  // Trains `run` up to `steps` updates with that decay, resuming when asked.
  auto train_to = [&](const TempDir& run, int steps, double decay, bool resume) {
    auto config = fake_config(settings);
    config["train"]["max_steps"] = steps;
    config["train"]["ema_decay"] = decay;
    FakeTask task;
    REQUIRE(train::Trainer(config, task, {run.str(), resume}).run() == 0);
  };

  // 4 updates, then 4 more after a resume: the same average and the same evaluations.
  TempDir split("trainer_ema_split");
  train::prepare_run_dir(split.str(), false, false);
  train_to(split, 4, 0.6, false);
  train_to(split, 8, 0.6, true);
  CHECK(torch::equal(loaded_average(split.str()), average));
  CHECK(records(split.str(), "valid") == records(full.str(), "valid"));

  // Averaging turned on at resume starts from the resumed weights...
  TempDir later("trainer_ema_later");
  train::prepare_run_dir(later.str(), false, false);
  train_to(later, 4, 0.0, false);
  train_to(later, 8, 0.6, true);
  CHECK(xformer::testing::max_abs_diff(loaded_average(later.str()).to(torch::kDouble),
                                       expected_average(later.str(), 4, 8, 0.6)) < 1e-6);
  // ... and so does an average whose decay changed at resume.
  train_to(later, 12, 0.3, true);
  CHECK(xformer::testing::max_abs_diff(loaded_average(later.str()).to(torch::kDouble),
                                       expected_average(later.str(), 8, 12, 0.3)) < 1e-6);

  // average:N over checkpoints with and without an average is refused, unless the trained
  // weights are asked for (--no-ema).
  const std::vector<std::string> mixed = {later.str("checkpoints/" + train::step_checkpoint_name(4)),
                                          later.str("checkpoints/" + train::step_checkpoint_name(5))};
  FakeTask t;
  const auto e = thrown_error([&] { train::load_model_weights(mixed, *t.model()); });
  CHECK(e.exit_code() == 2);
  CHECK(std::string(e.what()).find("step_00000005.pt holds a moving average of the weights (train.ema_decay) but "
                                   "step_00000004.pt does not; add --no-ema") != std::string::npos);
  CHECK_NOTHROW(train::load_model_weights(mixed, *t.model(), /*averaged_weights=*/false));
}
