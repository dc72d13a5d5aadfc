// Tests of sweep files: expansion of grid and random axes into trials (order, ranges, seeded
// samples and their bounds), trial names, validation of keys and values, the results table
// (sorting, CSV quoting) and the pieces of the runner that need no child process.
#include "test_support.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "xformer/core/config.h"
#include "xformer/core/error.h"
#include "xformer/sweep/results_table.h"
#include "xformer/sweep/sweep_spec.h"
#include "xformer/sweep/sweep_state.h"
#include "xformer/sweep/trial_runner.h"

namespace fs = std::filesystem;
using namespace xformer::sweep;
using xformer::testing::source_path;
using xformer::testing::TempDir;

namespace {

SweepSpec parse(const std::string& text, const std::string& file = "sweeps/s.json") {
  return parse_sweep(ordered_json::parse(text), file);
}

// The message of the ConfigError that parsing `text` must throw.
std::string parse_error(const std::string& text) {
  try {
    parse(text);
  } catch (const xformer::Error& e) {
    CHECK(e.exit_code() == xformer::kExitUsage);
    return e.what();
  }
  FAIL("expected a ConfigError for " << text);
  return "";
}

std::vector<std::string> names(const SweepSpec& s) {
  std::vector<std::string> out;
  for (const auto& t : s.trials) out.push_back(t.name);
  return out;
}

}  // namespace

TEST_CASE("a grid is the cartesian product in file order, the last axis fastest", "[sweep]") {
  auto s = parse(R"({"base": "../configs/translation/tiny.json",
                     "grid": {"optim.warmup_steps": [10, 20], "optim.lr": [0.001, 0.003, 0.01]}})");
  CHECK(s.base == "configs/translation/tiny.json");  // relative to the sweep file
  CHECK(s.output == "runs/sweeps/s");
  CHECK(s.axes == std::vector<std::string>{"optim.warmup_steps", "optim.lr"});
  REQUIRE(s.trials.size() == 6);
  CHECK(names(s) == std::vector<std::string>{
                        "warmup_steps=10,lr=0.001", "warmup_steps=10,lr=0.003", "warmup_steps=10,lr=0.01",
                        "warmup_steps=20,lr=0.001", "warmup_steps=20,lr=0.003", "warmup_steps=20,lr=0.01"});
  for (int i = 0; i < 6; ++i) CHECK(s.trials[i].index == i);
  CHECK(trial_overrides(s, s.trials[4]) == std::vector<std::string>{"optim.warmup_steps=20", "optim.lr=0.003"});
}

TEST_CASE("a grid axis of several keys sets them together", "[sweep]") {
  // Halving the batch doubles the steps: 2 linked points x 2 learning rates = 4 trials, not 8.
  auto s = parse(R"({"base": "b.json",
                     "grid": {"task.max_tokens,train.max_steps": [[1500, 1000], [3000, 500]],
                              "optim.lr": [0.002, 0.004]}})");
  CHECK(s.axes == std::vector<std::string>{"task.max_tokens", "train.max_steps", "optim.lr"});
  CHECK(names(s) == std::vector<std::string>{"max_tokens=1500,max_steps=1000,lr=0.002",
                                             "max_tokens=1500,max_steps=1000,lr=0.004",
                                             "max_tokens=3000,max_steps=500,lr=0.002",
                                             "max_tokens=3000,max_steps=500,lr=0.004"});
  CHECK(trial_overrides(s, s.trials[2]) ==
        std::vector<std::string>{"task.max_tokens=3000", "train.max_steps=500", "optim.lr=0.002"});
  CHECK(parse(R"({"base": "b.json", "grid": {"optim.lr, optim.warmup_steps": [[0.1, 5]]}})").axes ==
        std::vector<std::string>{"optim.lr", "optim.warmup_steps"});  // spaces after commas are fine
  // With random axes after them, the random keys follow the linked ones.
  auto r = parse(R"({"base": "b.json", "grid": {"model.d_model,model.ffn_dim": [[128, 512]]},
                     "random": {"count": 2, "axes": {"optim.lr": {"log_uniform": [1e-4, 1e-2]}}}})");
  REQUIRE(r.trials.size() == 2);
  REQUIRE(r.trials[1].settings.size() == 3);
  CHECK(r.trials[1].settings[2].first == "optim.lr");

  CHECK(parse_error(R"({"base": "b.json", "grid": {"a.x,a.y": [[1, 2], [3]]}})")
            .find("each value must be a list of 2 values (one per key), got [3]") != std::string::npos);
  CHECK(parse_error(R"({"base": "b.json", "grid": {"a.x,a.y": {"range": [1, 3, 1]}}})")
            .find("must be a list of 2 values") != std::string::npos);
  CHECK(parse_error(R"({"base": "b.json", "grid": {"a.x,a.y": [[1, 2]], "a.y": [3]}})")
            .find("'a.y' is in more than one grid axis") != std::string::npos);
  CHECK(parse_error(R"({"base": "b.json", "grid": {"a.x,": [[1, 2]]}})").find("not a dotted config key") !=
        std::string::npos);
  CHECK(parse_error(R"({"base": "b.json", "random": {"count": 1, "axes": {"a.x,a.y": [1]}}})")
            .find("only grid axes set several keys together") != std::string::npos);
}

TEST_CASE("ranges: integer and float steps, stop included, log_range", "[sweep]") {
  auto s = parse(R"({"base": "b.json", "grid": {"optim.warmup_steps": {"range": [10, 50, 20]}}})");
  REQUIRE(s.trials.size() == 3);
  CHECK(s.trials[0].settings[0].second == 10);
  CHECK(s.trials[2].settings[0].second == 50);
  CHECK(s.trials[2].settings[0].second.is_number_integer());

  s = parse(R"({"base": "b.json", "grid": {"model.dropout": {"range": [0.0, 0.3, 0.1]}}})");
  REQUIRE(s.trials.size() == 4);
  CHECK(names(s).back() == "dropout=0.3");  // not 0.30000000000000004
  CHECK(s.trials[1].settings[0].second.get<double>() == 0.1);

  s = parse(R"({"base": "b.json", "grid": {"optim.lr": {"log_range": [0.0001, 0.01, 3]}}})");
  REQUIRE(s.trials.size() == 3);
  CHECK(s.trials[0].settings[0].second.get<double>() == Approx(1e-4));
  CHECK(s.trials[1].settings[0].second.get<double>() == Approx(1e-3));
  CHECK(s.trials[2].settings[0].second.get<double>() == Approx(1e-2));

  CHECK(parse_error(R"({"base": "b.json", "grid": {"optim.lr": {"range": [1, 0, 1]}}})").find("start <= stop") !=
        std::string::npos);
  CHECK(parse_error(R"({"base": "b.json", "grid": {"optim.lr": {"log_range": [0, 1, 3]}}})").find("positive") !=
        std::string::npos);
}

TEST_CASE("random values rounded for their names stay within bounds", "[sweep]") {
  // Draws in [0.99, 0.99999] rounded to 4 digits would reach 1.0 (not a valid dropout).
  auto spec = parse(R"({"base": "b.json", "random": {"count": 500, "seed": 3, "axes": {
      "model.dropout": {"uniform": [0.99, 0.99999]}}}})");
  for (const auto& t : spec.trials) {
    const double d = t.settings[0].second.get<double>();
    CHECK((d >= 0.99 && d <= 0.99999));
  }
}

TEST_CASE("random search is reproducible with a seed and stays within bounds", "[sweep]") {
  const std::string text = R"({"base": "b.json", "random": {"count": 200, "seed": 7, "axes": {
      "optim.lr": {"log_uniform": [1e-4, 1e-2]}, "model.dropout": {"uniform": [0, 0.3]},
      "model.heads": {"choice": [2, 4]}, "optim.warmup_steps": {"int_uniform": [5, 8]}}}})";
  auto a = parse(text), b = parse(text);
  REQUIRE(a.trials.size() == 200);
  CHECK(names(a) == names(b));
  auto c = parse(R"({"base": "b.json", "random": {"count": 200, "seed": 8, "axes": {
      "optim.lr": {"log_uniform": [1e-4, 1e-2]}, "model.dropout": {"uniform": [0, 0.3]},
      "model.heads": {"choice": [2, 4]}, "optim.warmup_steps": {"int_uniform": [5, 8]}}}})");
  CHECK(names(a) != names(c));

  int low_decade = 0;
  std::set<int64_t> heads, warmups;
  for (const auto& t : a.trials) {
    REQUIRE(t.settings.size() == 4);
    const double lr = t.settings[0].second.get<double>();
    CHECK(lr >= 1e-4 * 0.9999);
    CHECK(lr <= 1e-2 * 1.0001);
    low_decade += lr < 1e-3;
    const double dropout = t.settings[1].second.get<double>();
    CHECK(dropout >= 0.0);
    CHECK(dropout <= 0.3);
    heads.insert(t.settings[2].second.get<int64_t>());
    warmups.insert(t.settings[3].second.get<int64_t>());
    CHECK(t.settings[3].second.is_number_integer());
  }
  // Log-uniform: each decade gets about half the samples (a plain uniform would give ~9%).
  CHECK(low_decade > 70);
  CHECK(low_decade < 130);
  CHECK(heads == std::set<int64_t>{2, 4});
  CHECK(warmups == std::set<int64_t>{5, 6, 7, 8});
  // Sampled floats are rounded to 4 significant digits: the name shows the value used.
  const std::string lr_text = a.trials[0].settings[0].second.dump();
  char rounded[32];
  std::snprintf(rounded, sizeof rounded, "%.4g", a.trials[0].settings[0].second.get<double>());
  CHECK(std::stod(rounded) == a.trials[0].settings[0].second.get<double>());
  CHECK(a.trials[0].name.find("lr=" + lr_text) == 0);
}

TEST_CASE("grid and random axes combine: each grid point with every random sample", "[sweep]") {
  auto s = parse(R"({"base": "b.json", "grid": {"model.heads": [2, 4]},
                     "random": {"count": 3, "seed": 1, "axes": {"optim.lr": {"log_uniform": [1e-4, 1e-2]}}}})");
  REQUIRE(s.trials.size() == 6);
  CHECK(s.axes == std::vector<std::string>{"model.heads", "optim.lr"});
  for (int i = 0; i < 3; ++i) {
    CHECK(s.trials[i].settings[0].second == 2);
    CHECK(s.trials[i + 3].settings[0].second == 4);
    CHECK(s.trials[i].settings[1].second == s.trials[i + 3].settings[1].second);  // same samples
  }
}

TEST_CASE("trial names are unique, deterministic and safe as file names", "[sweep]") {
  auto s = parse(R"({"base": "b.json", "grid": {"task.name": ["a/b c", "a?b_c"], "model.dropout": [0.1],
                                                 "optim.name": ["adam"]}})");
  REQUIRE(s.trials.size() == 2);
  // Both sanitise to the same text; the second gets a suffix. Keys that share a last component
  // ("name") keep their full path.
  CHECK(s.trials[0].name == "task.name=a_b_c,dropout=0.1,optim.name=adam");
  CHECK(s.trials[1].name == "task.name=a_b_c,dropout=0.1,optim.name=adam,dup=2");
  CHECK(parse(R"({"base": "b.json", "set": {"train.max_steps": 3}})").trials.at(0).name == "base");
  // A value that itself looks like a suffix gets the next free one.
  CHECK(names(parse(R"({"base": "b.json", "grid": {"task.test": ["x", "x", "x,dup=2"]}})")) ==
        std::vector<std::string>{"test=x", "test=x,dup=2", "test=x,dup=2,dup=2"});
  CHECK(value_label(nlohmann::json::array({1, 2})) == "1-2");
  CHECK(sanitize_name("..") == "_");
  // Very long names are shortened with a hash, still unique.
  std::string many = R"({"base": "b.json", "grid": {)";
  for (int i = 0; i < 12; ++i) many += (i ? "," : "") + std::string("\"model.a_rather_long_key_") + std::to_string(i) + "\": [1, 2]";
  many += "}}";
  auto long_names = parse(many);
  std::set<std::string> unique;
  for (const auto& t : long_names.trials) {
    CHECK(t.name.size() <= 120);
    unique.insert(t.name);
  }
  CHECK(unique.size() == long_names.trials.size());
}

TEST_CASE("sweep file mistakes are config errors naming the key", "[sweep]") {
  CHECK(parse_error(R"({"base": "b.json", "gird": {}})").find("unknown key 'gird'") != std::string::npos);
  CHECK(parse_error(R"({"base": "b.json", "gird": {}})").find("did you mean 'grid'") != std::string::npos);
  CHECK(parse_error(R"({"base": "b.json", "random": {"count": 2, "axes": {"optim.lr": [1]}, "sead": 1}})")
            .find("unknown key 'random.sead'") != std::string::npos);
  CHECK(parse_error(R"({"grid": {"optim.lr": [1]}})").find("'base'") != std::string::npos);
  CHECK(parse_error(R"({"base": "b.json", "grid": {"optim.lr": []}})").find("'grid.optim.lr' is an empty list") !=
        std::string::npos);
  CHECK(parse_error(R"({"base": "b.json", "grid": {"optim.lr": {"log_uniform": [1e-4, 1e-2]}}})")
            .find("random.axes") != std::string::npos);
  CHECK(parse_error(R"({"base": "b.json", "grid": {"optim.lr": 0.1}})").find("'grid.optim.lr' must be") !=
        std::string::npos);
  CHECK(parse_error(R"({"base": "b.json", "random": {"count": 0, "axes": {"optim.lr": [1]}}})")
            .find("random.count") != std::string::npos);
  CHECK(parse_error(R"({"base": "b.json", "random": {"count": 1, "axes": {"optim.lr": {"log_uniform": [0, 1]}}}})")
            .find("positive") != std::string::npos);
  CHECK(parse_error(R"({"base": "b.json", "set": {"optim.lr": 1}, "grid": {"optim.lr": [1]}})")
            .find("both in 'set' and an axis") != std::string::npos);
  CHECK(parse_error(R"({"base": "b.json", "mode": "best"})").find("'mode' must be") != std::string::npos);
  CHECK(parse_error(R"({"base": "b.json", "eval": {"split": "train"}})").find("'eval.split'") != std::string::npos);
  CHECK(parse_error(R"({"base": "b.json", "eval": {"checkpoint": "average:x"}})")
            .find("'eval.checkpoint': usage error: --checkpoint average:x: expected average:N") != std::string::npos);
  // A path would evaluate one file in every trial: each trial's own checkpoint is meant.
  CHECK(parse_error(R"({"base": "b.json", "eval": {"checkpoint": "runs/x/checkpoints/best.pt"}})")
            .find("'eval.checkpoint' must be \"best\", \"last\" or \"average:N\" (each trial's own)") != std::string::npos);
  CHECK(parse_error(R"({"base": "b.json", "slurm": {"cpus_per_tsk": 4}})").find("did you mean 'slurm.cpus_per_task'") !=
        std::string::npos);
  CHECK(parse_error(R"([1, 2])").find("JSON object") != std::string::npos);
}

TEST_CASE("every trial's config is validated up front", "[sweep]") {
  TempDir tmp("sweep_validate");
  const std::string base = source_path("configs/translation/tiny.json");
  auto write = [&](const std::string& text) {
    const std::string path = tmp.str("s.json");
    std::ofstream(path) << text;
    return path;
  };
  auto s = load_sweep(write(R"({"base": ")" + base + R"(", "grid": {"optim.lr": [0.001, 0.003]}})"));
  const auto first = validate_trials(s);
  CHECK(s.metric == "loss");  // the tiny config's train.best_metric
  CHECK(s.mode == "min");
  CHECK(first["optim"]["lr"] == 0.001);

  auto error_of = [&](const std::string& text) {
    auto spec = load_sweep(write(text));
    try {
      validate_trials(spec);
    } catch (const xformer::Error& e) {
      CHECK(e.exit_code() == xformer::kExitUsage);
      return std::string(e.what());
    }
    FAIL("expected a ConfigError");
    return std::string();
  };
  std::string msg = error_of(R"({"base": ")" + base + R"(", "grid": {"optim.lrr": [0.001]}})");
  CHECK(msg.find("unknown key 'optim.lrr'") != std::string::npos);
  CHECK(msg.find("did you mean 'optim.lr'") != std::string::npos);
  CHECK(msg.find("trial 0") != std::string::npos);
  // Only the second trial's value is wrong: still caught before anything runs.
  msg = error_of(R"({"base": ")" + base + R"(", "grid": {"model.norm": ["pre", "middle"]}})");
  CHECK(msg.find("trial 1 (norm=middle)") != std::string::npos);
  msg = error_of(R"({"base": "missing.json"})");
  CHECK(msg.find("missing.json") != std::string::npos);
  // Averaging more checkpoints than a trial keeps would fail after training: refused now.
  msg = error_of(R"({"base": ")" + base + R"(", "grid": {"train.keep_last": [3, 1]}, "eval": {"checkpoint": "average:2"}})");
  CHECK(msg.find("trial 1 (keep_last=1): eval.checkpoint average:2 averages 2 step checkpoints but "
                 "train.keep_last keeps 1") != std::string::npos);
  msg = error_of(R"({"base": ")" + base + R"(", "metric": "bleu"})");
  CHECK(msg.find("'mode' is not given") != std::string::npos);
  // A metric the task never reports would leave the table unsorted.
  msg = error_of(R"({"base": ")" + base + R"(", "metric": "blue", "mode": "max"})");
  CHECK(msg.find("'metric' is 'blue', which the translation evaluation does not report") != std::string::npos);
  CHECK(msg.find("did you mean 'bleu'?") != std::string::npos);
  // Every trial's config is fingerprinted: a change to the base is seen when the sweep runs again.
  auto fingerprinted = load_sweep(write(R"({"base": ")" + base + R"(", "grid": {"optim.lr": [0.001, 0.003]}})"));
  validate_trials(fingerprinted);
  CHECK(!fingerprinted.trials[0].config_digest.empty());
  CHECK(fingerprinted.trials[0].config_digest != fingerprinted.trials[1].config_digest);
  // So would a decaying schedule that ends before its warmup does.
  msg = error_of(R"({"base": ")" + base + R"(", "set": {"optim.schedule": "cosine", "optim.warmup_steps": 100},
                    "grid": {"train.max_steps": [200, 50]}})");
  CHECK(msg.find("trial 1 (max_steps=50): config error: optim.schedule 'cosine'") != std::string::npos);
}

TEST_CASE("the example sweeps in scripts/sweeps load and validate", "[sweep]") {
  int files = 0;
  for (const auto& e : fs::directory_iterator(source_path("scripts/sweeps"))) {
    if (e.path().extension() != ".json") continue;
    INFO(e.path().string());
    auto spec = load_sweep(e.path().string());
    CHECK_NOTHROW(validate_trials(spec));
    CHECK(!spec.trials.empty());
    ++files;
  }
  CHECK(files >= 4);
}

TEST_CASE("commands are argument vectors; start flags follow the run directory", "[sweep]") {
  TempDir tmp("sweep_cmd");
  auto s = parse(R"({"base": "b.json", "output": ")" + tmp.str("out") +
                 R"(", "set": {"task": {"spm_cache": "/tmp/x y"}}, "grid": {"optim.lr": [0.5]},
                     "eval": {"split": "valid"}})");
  RunOptions opt;
  opt.binary = "/bin/xformer";
  opt.threads = 3;
  const auto argv = train_command(s, s.trials[0], opt, "--force");
  const std::vector<std::string> expected = {"/bin/xformer", "train", "--config", "sweeps/b.json", "--run-dir",
                                             tmp.str("out") + "/lr=0.5", "--set", "task.spm_cache=/tmp/x y",
                                             "--set", "optim.lr=0.5", "--set", "train.blas_threads=3", "--force"};
  CHECK(argv == expected);
  CHECK(eval_command(s, s.trials[0], opt) ==
        std::vector<std::string>{"/bin/xformer", "eval", "--run", tmp.str("out") + "/lr=0.5", "--split", "valid",
                                 "--checkpoint", "best"});
  // A string that reads as JSON stays quoted, so that --set keeps it a string.
  auto quoted = parse(R"({"base": "b.json", "set": {"task.name": "true", "model.norm": "pre"}})");
  CHECK(trial_overrides(quoted, quoted.trials[0]) == std::vector<std::string>{"task.name=\"true\"", "model.norm=pre"});
  // So does one that starts like a list or an object (--set refuses such text when it is not JSON).
  auto pattern = parse(R"({"base": "b.json", "set": {"task.train": "[0-9]*.bin"}})");
  const auto set = trial_overrides(pattern, pattern.trials[0]);
  CHECK(set == std::vector<std::string>{"task.train=\"[0-9]*.bin\""});
  xformer::RawConfig raw;
  raw.value = nlohmann::json::object();
  xformer::apply_override(raw, set[0]);
  CHECK(raw.value["task"]["train"] == "[0-9]*.bin");
  CHECK(shell_quote("a b'c") == "'a b'\\''c'");
  CHECK(shell_quote("optim.lr=0.5") == "optim.lr=0.5");

  const std::string run = tmp.str("run");
  CHECK(start_flag(run).empty());
  fs::create_directories(run);
  CHECK(start_flag(run).empty());
  std::ofstream(run + "/train.log") << "x";
  CHECK(start_flag(run) == "--force");
  fs::create_directories(run + "/checkpoints");
  std::ofstream(run + "/checkpoints/last.pt") << "x";
  CHECK(start_flag(run) == "--resume");
}

TEST_CASE("the results table sorts by the metric and quotes CSV", "[sweep]") {
  TempDir tmp("sweep_table");
  auto s = parse(R"({"base": "b.json", "output": ")" + tmp.str() + R"(", "grid": {"optim.lr": [1, 2, 3, 4]},
                     "metric": "bleu", "mode": "max", "eval": true})");
  write_plan(s);
  // lr=1: done, bleu 5 then 7; lr=2: done, bleu 9; lr=3: failed; lr=4: never started.
  auto metrics = [&](const std::string& name, const std::string& lines) {
    fs::create_directories(run_path(s.output, name));
    std::ofstream(run_path(s.output, name) + "/metrics.jsonl") << lines;
  };
  metrics("lr=1", R"({"step": 10, "split": "train", "loss": 3.0})" "\n"
                  R"({"step": 10, "split": "valid", "loss": 2.5, "bleu": 5.0})" "\n"
                  R"({"step": 20, "split": "valid", "loss": 2.0, "bleu": 7.0})" "\n"
                  R"({"step": 20, "split": "test", "checkpoint": "c", "bleu": 6.5})" "\n"
                  // A later one-off evaluation with --set (another test file, say) is not the trial's.
                  R"({"step": 20, "split": "test", "checkpoint": "c", "bleu": 1.0, "set": ["task.beam=1"]})" "\n"
                  // Nor one of the trained weights (--no-ema) of a run that averages them.
                  R"({"step": 20, "split": "test", "checkpoint": "c", "bleu": 2.0, "ema": false})" "\n"
                  // Nor one of an ensemble with other runs' models.
                  R"({"step": 20, "split": "test", "checkpoint": "c", "bleu": 8.0, "ensemble": ["x"]})" "\n");
  metrics("lr=2", R"({"step": 20, "split": "valid", "loss": 1.5, "bleu": 9.0})" "\n");
  write_status(s.output, "lr=1", {{"status", "done"}, {"overrides", trial_overrides(s, s.trials[0])}});
  write_status(s.output, "lr=2", {{"status", "done"}, {"overrides", trial_overrides(s, s.trials[1])}});
  write_status(s.output, "lr=3", {{"status", "failed"}, {"attempts", 2}, {"exit_codes", {1, 1}},
                                  {"overrides", trial_overrides(s, s.trials[2])}});
  write_status(s.output, "lr=4", {{"status", 5}, {"attempts", "two"}});  // damaged: counts as never started
  const auto table = build_results(s.output);
  REQUIRE(table.rows.size() == 4);
  const auto& h = table.header;
  auto col = [&](const std::string& name) { return std::find(h.begin(), h.end(), name) - h.begin(); };
  REQUIRE(col("valid_bleu") < static_cast<long>(h.size()));
  REQUIRE(col("test_bleu") < static_cast<long>(h.size()));
  CHECK(table.rows[0][col("trial")] == "lr=2");
  CHECK(table.rows[0][col("rank")] == "1");
  CHECK(table.rows[1][col("trial")] == "lr=1");
  CHECK(table.rows[1][col("valid_bleu")] == "7");
  CHECK(table.rows[1][col("valid_step")] == "20");
  CHECK(table.rows[1][col("test_bleu")] == "6.5");
  CHECK(table.rows[1][col("optim.lr")] == "1");
  CHECK(table.rows[2][col("trial")] == "lr=4");
  CHECK(table.rows[2][col("status")] == "pending");
  CHECK(table.rows[3][col("trial")] == "lr=3");
  CHECK(table.rows[3][col("status")] == "failed");
  REQUIRE(table.notes.size() == 1);
  CHECK(table.notes[0].find("failed: lr=3 after 2 attempt(s)") != std::string::npos);

  const std::string md = write_results(s.output);
  CHECK(md.find("| 1 | lr=2 | done |") != std::string::npos);
  CHECK(fs::exists(tmp.str("results.csv")));
  CHECK(csv_quote("a,b") == "\"a,b\"");
  CHECK(csv_quote("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(csv_quote("plain") == "plain");
  CHECK(to_csv(table).find("rank,trial,status,optim.lr,step,valid_step,valid_bleu,valid_loss,test_bleu\n") == 0);
}
