// End-to-end tests of `xformer sweep` on the tiny translation config: trials in parallel, the
// results table, resuming a finished sweep, a failing trial, dry runs, the Slurm script and the
// usage errors.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "cli/cli_helpers.h"
#include "test_support.h"
#include "xformer/core/runtime.h"
#include "xformer/sweep/trial_runner.h"

namespace fs = std::filesystem;
using namespace xformer::testing;

namespace {

// A sweep file over the tiny config: 10 quick steps, one validation at the end, shared tokenizer
// cache. `extra` holds more top-level keys (",\"grid\": {...}").
std::string write_sweep(const TempDir& tmp, const std::string& extra, const std::string& file = "sweep.json") {
  const std::string path = tmp.str(file);
  std::ofstream(path) << R"({"base": ")" << source_path("configs/translation/tiny.json") << R"(",
    "output": ")" << tmp.str("out") << R"(",
    "set": {"task.spm_cache": ")" << tmp.str("spm") << R"(", "task.eval_bleu_sentences": 8,
            "train": {"max_steps": 10, "log_every": 5, "eval_every": 0, "save_every": 10}})"
                      << extra << "}";
  return path;
}

std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  std::vector<std::vector<std::string>> rows(1);
  std::string cell;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') cell += text[++i];
      else if (c == '"') quoted = false;
      else cell += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      rows.back().push_back(cell);
      cell.clear();
    } else if (c == '\n') {
      rows.back().push_back(cell);
      cell.clear();
      rows.emplace_back();
    } else {
      cell += c;
    }
  }
  if (rows.back().empty()) rows.pop_back();
  return rows;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("a sweep runs 4 trials 2 at a time, writes a sorted table and skips done trials on a re-run",
          "[cli][sweep]") {
  TempDir tmp("cli_sweep");
  const std::string sweep = write_sweep(tmp, R"(,
    "grid": {"optim.lr": [0.0003, 0.01], "optim.warmup_steps": [2, 5]},
    "eval": {"split": "test", "checkpoint": "last"})");
  auto r = run_xformer("sweep --config '" + sweep + "' --jobs 2");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("4 trial(s) to run, 0 skipped") != std::string::npos);

  const std::string out = tmp.str("out");
  const std::vector<std::string> names = {"lr=0.0003,warmup_steps=2", "lr=0.0003,warmup_steps=5",
                                          "lr=0.01,warmup_steps=2", "lr=0.01,warmup_steps=5"};
  // Each trial trained in its own run directory with its settings, then was evaluated.
  const int threads = std::max(1, xformer::available_cores() / 2);
  for (const auto& name : names) {
    const std::string run = out + "/" + name;
    INFO(name);
    REQUIRE(fs::exists(run + "/checkpoints/last.pt"));
    const auto config = nlohmann::json::parse(read_text(run + "/config.json"));
    CHECK(config["optim"]["lr"].get<double>() == (name.find("lr=0.01") == 0 ? 0.01 : 0.0003));
    CHECK(config["optim"]["warmup_steps"] == (name.find("warmup_steps=5") != std::string::npos ? 5 : 2));
    CHECK(config["train"]["max_steps"] == 10);
    CHECK(config["train"]["blas_threads"] == threads);  // the cores split over the jobs
    CHECK(read_metrics(run, "test").size() == 1);
  }

  // The table: 4 rows, sorted by the best validation loss (the tiny config's metric, lower first).
  auto csv = read_csv(out + "/results.csv");
  REQUIRE(csv.size() == 5);
  const auto& h = csv[0];
  auto col = [&](const std::string& c) {
    auto it = std::find(h.begin(), h.end(), c);
    REQUIRE(it != h.end());
    return it - h.begin();
  };
  double previous = -1;
  std::set<std::string> seen;
  for (size_t i = 1; i < csv.size(); ++i) {
    const auto& row = csv[i];
    REQUIRE(row.size() == h.size());
    INFO(row[col("trial")]);
    CHECK(row[col("rank")] == std::to_string(i));
    CHECK(row[col("status")] == "done");
    CHECK(row[col("step")] == "10");
    seen.insert(row[col("trial")]);
    CHECK(row[col("trial")] == "lr=" + row[col("optim.lr")] + ",warmup_steps=" + row[col("optim.warmup_steps")]);
    const double loss = std::stod(row[col("valid_loss")]);
    // The best (here the only) validation line of the trial's own metrics.
    const auto valid = read_metrics(out + "/" + row[col("trial")], "valid");
    REQUIRE(valid.size() == 1);
    CHECK(loss == Approx(valid[0]["loss"].get<double>()).epsilon(1e-6));
    CHECK(loss >= previous);
    previous = loss;
    CHECK(!row[col("test_bleu")].empty());
  }
  CHECK(seen == std::set<std::string>(names.begin(), names.end()));
  const std::string md = read_text(out + "/results.md");
  CHECK(count(md, "| done |") == 4);
  CHECK(r.output.find(md) != std::string::npos);  // printed at the end

  // A re-run trains nothing: the same metrics, four trials skipped.
  const std::string metrics_before = read_text(out + "/" + names[0] + "/metrics.jsonl");
  const std::string log_before = read_text(out + "/logs/" + names[0] + ".log");
  CHECK(count(log_before, "=== ") == 2);  // one train, one eval
  r = run_xformer("sweep --config '" + sweep + "' --jobs 2");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("0 trial(s) to run, 4 skipped") != std::string::npos);
  CHECK(count(r.output, "already done, skipped") == 4);
  CHECK(read_text(out + "/" + names[0] + "/metrics.jsonl") == metrics_before);
  CHECK(read_text(out + "/logs/" + names[0] + ".log") == log_before);

  // --summarize rewrites and prints the same table; --dry-run lists the trials as done.
  fs::remove(out + "/results.md");
  r = run_xformer("sweep --summarize '" + out + "'");
  CHECK(r.exit_code == 0);
  CHECK(read_text(out + "/results.md") == md);
  CHECK(r.output.find(md) != std::string::npos);
  r = run_xformer("sweep --config '" + sweep + "' --dry-run");
  CHECK(r.exit_code == 0);
  CHECK(count(r.output, "[done]") == 4);

  // An evaluation changed since (another checkpoint) is not "already done": the trial's
  // finished training resumes with nothing to do, and the new evaluation runs.
  write_sweep(tmp, R"(,
    "grid": {"optim.lr": [0.0003, 0.01], "optim.warmup_steps": [2, 5]},
    "eval": {"split": "test", "checkpoint": "best"})");
  r = run_xformer("sweep --config '" + sweep + "' --trial 0");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("1 trial(s) to run, 0 skipped") != std::string::npos);
  CHECK(read_metrics(out + "/" + names[0], "test").size() == 2);
  CHECK(read_metrics(out + "/" + names[0], "train").size() == read_metrics(out + "/" + names[1], "train").size());

  // An evaluation of the valid split has columns of its own, apart from the best validation line's.
  write_sweep(tmp, R"(,
    "grid": {"optim.lr": [0.0003, 0.01], "optim.warmup_steps": [2, 5]},
    "eval": {"split": "valid", "checkpoint": "best"})");
  REQUIRE(run_xformer("sweep --config '" + sweep + "' --trial 0").exit_code == 0);
  REQUIRE(run_xformer("sweep --summarize '" + out + "'").exit_code == 0);
  {
    const auto header = read_csv(out + "/results.csv").at(0);
    CHECK(std::set<std::string>(header.begin(), header.end()).size() == header.size());
    CHECK(std::count(header.begin(), header.end(), "valid_loss") == 1);
    CHECK(std::count(header.begin(), header.end(), "eval_valid_loss") == 1);
  }

  // A damaged plan is named, not a library error.
  std::ofstream(out + "/sweep.json") << R"({"trials": 5})";
  r = run_xformer("sweep --summarize '" + out + "'");
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("sweep plan '" + out + "/sweep.json' is damaged") != std::string::npos);
}

TEST_CASE("a failing trial is retried, reported, and does not stop the others", "[cli][sweep]") {
  TempDir tmp("cli_sweep_fail");
  // A vocabulary larger than the fixture can fill: the config is valid, the tokenizer's training fails.
  const std::string sweep = write_sweep(tmp, R"(, "grid": {"task.vocab_size": [100000, 400]})");
  auto r = run_xformer("sweep --config '" + sweep + "' --jobs 2");
  INFO(r.output);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("trial 0 vocab_size=100000: train failed with exit code 1; retrying") != std::string::npos);
  CHECK(r.output.find("trial 0 vocab_size=100000: train failed with exit code 1 after 2 attempt(s)") != std::string::npos);
  CHECK(r.output.find("1 done, 1 failed") != std::string::npos);

  const std::string out = tmp.str("out");
  const auto status = nlohmann::json::parse(read_text(out + "/trials/vocab_size=100000.json"));
  CHECK(status["status"] == "failed");
  CHECK(status["attempts"] == 2);
  CHECK(status["exit_codes"] == nlohmann::json::array({1, 1}));
  const std::string log = read_text(out + "/logs/vocab_size=100000.log");
  CHECK(count(log, "=== ") == 2);
  CHECK(log.find("Vocabulary size too high (100000)") != std::string::npos);
  CHECK(log.find("of task.vocab_size 100000") != std::string::npos);
  for (const auto& e : fs::recursive_directory_iterator(tmp.str("spm")))  // no leftovers of the failure
    CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
  CHECK(fs::exists(out + "/vocab_size=400/checkpoints/last.pt"));

  auto csv = read_csv(out + "/results.csv");
  REQUIRE(csv.size() == 3);
  CHECK(csv[1][1] == "vocab_size=400");
  CHECK(csv[1][2] == "done");
  CHECK(csv[2][1] == "vocab_size=100000");
  CHECK(csv[2][2] == "failed");
  const std::string md = read_text(out + "/results.md");
  CHECK(md.find("failed: vocab_size=100000 after 2 attempt(s) (exit codes 1, 1); log: " + out + "/logs/vocab_size=100000.log") !=
        std::string::npos);
}

TEST_CASE("a trial failing with a usage error is not retried", "[cli][sweep]") {
  TempDir tmp("cli_sweep_usage");
  // keep_last 2 passes the up-front check of average:2, but 10 steps saved every 10 leave one.
  const std::string sweep = write_sweep(tmp, R"(, "eval": {"checkpoint": "average:2"})");
  auto r = run_xformer("sweep --config '" + sweep + "'");
  INFO(r.output);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("trial 0 base: eval failed with a usage or config error (exit 2): not retried") !=
        std::string::npos);
  CHECK(r.output.find("trial 0 base: eval failed with exit code 2 after 1 attempt(s)") != std::string::npos);
  CHECK(read_text(tmp.str("out/logs/base.log")).find("holds 1 step checkpoints") != std::string::npos);
}

TEST_CASE("an edited base config is noticed: its done trials run again", "[cli][sweep]") {
  TempDir tmp("cli_sweep_base");
  const std::string base = tmp.str("base.json");
  std::filesystem::copy_file(source_path("configs/translation/tiny.json"), base);
  const std::string sweep = tmp.str("sweep.json");
  std::ofstream(sweep) << R"({"base": ")" << base << R"(", "output": ")" << tmp.str("out") << R"(",
    "set": {"task.spm_cache": ")" << tmp.str("spm") << R"(", "train.max_steps": 2, "train.eval_every": 0}})";
  auto r = run_xformer("sweep --config '" + sweep + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  REQUIRE(run_xformer("sweep --config '" + sweep + "'").output.find("0 trial(s) to run, 1 skipped") != std::string::npos);
  // Another model in the base: the trial runs again, and its run refuses the change (train
  // --resume), rather than the old results standing for the new config.
  std::string text = read_text(base);
  text.replace(text.find("\"ffn_dim\": 128"), 14, "\"ffn_dim\": 96");
  std::ofstream(base) << text;
  r = run_xformer("sweep --config '" + sweep + "'");
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("1 trial(s) to run, 0 skipped") != std::string::npos);
  CHECK(read_text(tmp.str("out/logs/base.log")).find("model.ffn_dim is 128") != std::string::npos);
}

TEST_CASE("sweep --dry-run and --emit slurm run nothing; an array task runs its one trial", "[cli][sweep]") {
  TempDir tmp("cli_sweep_slurm");
  const std::string sweep = write_sweep(tmp, R"(, "grid": {"optim.lr": {"range": [0.001, 0.003, 0.001]}},
    "slurm": {"cpus_per_task": 2, "time": "00:10:00", "max_parallel": 2})");
  const std::string out = tmp.str("out");

  auto r = run_xformer("sweep --config '" + sweep + "' --dry-run --jobs 3");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(count(r.output, "[pending]") == 3);
  CHECK(r.output.find(" train --config " + source_path("configs/translation/tiny.json") + " --run-dir " + out +
                      "/lr=0.002 ") != std::string::npos);
  CHECK(r.output.find("--set optim.lr=0.003") != std::string::npos);
  CHECK(!fs::exists(out));

  r = run_xformer("sweep --config '" + sweep + "' --emit slurm");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const std::string script_path = out + "/sweep.slurm";
  CHECK(r.output.find(script_path) != std::string::npos);
  const std::string script = read_text(script_path);
  INFO(script);
  CHECK(script.rfind("#!/bin/bash\n", 0) == 0);
  CHECK(script.find("#SBATCH --array=0-2%2\n") != std::string::npos);
  CHECK(script.find("#SBATCH --cpus-per-task=2\n") != std::string::npos);
  CHECK(script.find("#SBATCH --time=00:10:00\n") != std::string::npos);
  CHECK(script.find("#SBATCH --output=" + out + "/logs/slurm-%A_%a.out\n") != std::string::npos);
  CHECK(script.find("\ncd " + std::string(XFORMER_SOURCE_DIR) + "\n") != std::string::npos);
  CHECK(script.find("\nexec " + fs::canonical(XFORMER_BINARY).string() + " sweep --config " + sweep +
                    " --trial \"$SLURM_ARRAY_TASK_ID\"\n") != std::string::npos);
  CHECK(run_shell("bash -n '" + script_path + "'").exit_code == 0);
  CHECK(!fs::exists(out + "/lr=0.001"));
  // An output folder that #SBATCH --output cannot take (a space, a %) is refused; so is
  // --threads against a sweep that sets the threads itself.
  const std::string spaced = tmp.str("spaced.json");
  std::ofstream(spaced) << R"({"base": ")" << source_path("configs/translation/tiny.json") << R"(", "output": ")"
                        << tmp.str("out 2%j") << R"(", "grid": {"optim.lr": [0.1]}})";
  r = run_xformer("sweep --config '" + spaced + "' --emit slurm");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("#SBATCH --output cannot take") != std::string::npos);
  const std::string threaded = write_sweep(tmp, R"(, "grid": {"train.blas_threads": [1, 2]})", "threaded.json");
  r = run_xformer("sweep --config '" + threaded + "' --dry-run --threads 1");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("sets train.threads or train.blas_threads itself") != std::string::npos);

  // What array task 1 does: its trial only.
  r = run_shell("SLURM_ARRAY_TASK_ID=1 bash '" + script_path + "'");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(fs::exists(out + "/lr=0.002/checkpoints/last.pt"));
  CHECK(!fs::exists(out + "/lr=0.001"));
  CHECK(!fs::exists(out + "/lr=0.003"));
  CHECK(nlohmann::json::parse(read_text(out + "/trials/lr=0.002.json"))["status"] == "done");
  r = run_xformer("sweep --summarize '" + out + "'");
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("| 1 | lr=0.002 | done |") != std::string::npos);
  CHECK(count(r.output, "| pending |") == 2);
}

TEST_CASE("sweep usage and sweep file errors exit 2 before anything runs", "[cli][sweep]") {
  TempDir tmp("cli_sweep_errors");
  const std::string typo = write_sweep(tmp, R"(, "grid": {"optim.lrr": [0.1]})", "typo.json");
  const std::string bad_key = write_sweep(tmp, R"(, "grdi": {"optim.lr": [0.1]})", "bad_key.json");
  const std::string ok = write_sweep(tmp, R"(, "grid": {"optim.lr": [0.1]})", "ok.json");
  const std::string no_test =
      write_sweep(tmp, R"(, "grid": {"optim.lr": [0.1], "task.test": ["nope.tsv"]}, "eval": {"split": "test"})", "no_test.json");
  struct Case {
    std::string args, expected;
  };
  const std::vector<Case> cases = {
      {"sweep", "sweep needs --config"},
      {"sweep --config '" + typo + "'", "trial 0 (lrr=0.1): config error: unknown key 'optim.lrr' in --set optim.lrr (did you mean 'optim.lr'?)"},
      {"sweep --config '" + bad_key + "'", "unknown key 'grdi' (did you mean 'grid'?)"},
      {"sweep --config '" + ok + "' --trial 1", "--trial 1 is out of range"},
      {"sweep --config '" + ok + "' --emit pbs", "--emit supports 'slurm'"},
      {"sweep --config '" + ok + "' --jobs 0", "--jobs must be >= 1"},
      {"sweep --config " + tmp.str("nope.json"), "cannot open sweep file"},
      {"sweep --summarize " + tmp.str(), "is not a sweep directory"},
      // The split its evals read is missing: found before the trials train, not after each one.
      {"sweep --config '" + no_test + "'", "config error: 'task.test' names 'nope.tsv', which does not exist"},
  };
  for (const auto& c : cases) {
    auto r = run_xformer(c.args);
    INFO(c.args << "\n" << r.output);
    CHECK(r.exit_code == 2);
    CHECK(r.output.find(c.expected) != std::string::npos);
  }
  CHECK(!fs::exists(tmp.str("out")));
  // train --nproc finds a config mistake once, before it starts any rank.
  auto r = run_xformer("train --nproc 2 --config configs/translation/tiny.json --set train.update_freq=0 --run-dir " +
                       tmp.str("ranks"));
  CHECK(r.exit_code == 2);
  CHECK(count(r.output, "config error: 'train.update_freq'") == 1);
  CHECK(!fs::exists(tmp.str("ranks")));
  // Planning looks at no data: a dry run of that sweep lists its trial.
  CHECK(run_xformer("sweep --config '" + no_test + "' --dry-run").exit_code == 0);
}

TEST_CASE("an interrupted sweep stops its trials with a checkpoint; a re-run resumes them", "[cli][sweep]") {
  TempDir tmp("cli_sweep_interrupt");
  const std::string out = tmp.str("out");
  const std::string long_sweep = tmp.str("long.json");
  std::ofstream(long_sweep) << R"({"base": ")" << source_path("configs/translation/tiny.json") << R"(",
    "output": ")" << out << R"(", "grid": {"optim.lr": [0.001, 0.002]},
    "set": {"task.spm_cache": ")" << tmp.str("spm") << R"(", "train.max_steps": 5000, "train.log_every": 5,
            "train.eval_every": 0}})";
  // Ctrl-C once both trials have logged a few steps (at most ~60 s of waiting).
  auto r = run_shell("'" + std::string(XFORMER_BINARY) + "' sweep --config '" + long_sweep + "' --jobs 2 2>&1 & pid=$!; " +
                     "for i in $(seq 300); do [ \"$(grep -l '| step 5 |' '" + out + "'/*/train.log 2>/dev/null | wc -l)\" = 2 ] && break; sleep 0.2; done; " +
                     "kill -INT $pid; wait $pid; echo \"sweep exit $?\"");
  INFO(r.output);
  CHECK(r.output.find("sweep exit 130") != std::string::npos);
  CHECK(r.output.find("asking 2 running trial(s) to save and stop") != std::string::npos);
  for (const char* name : {"lr=0.001", "lr=0.002"}) {
    INFO(name);
    CHECK(nlohmann::json::parse(read_text(out + "/trials/" + name + ".json"))["status"] == "interrupted");
    CHECK(fs::exists(out + "/" + name + "/checkpoints/last.pt"));
  }
  // The same trials with fewer steps: each resumes from its checkpoint (already past the end).
  std::string text = read_text(long_sweep);
  text.replace(text.find("\"train.max_steps\": 5000"), 23, "\"train.max_steps\": 5");
  std::ofstream(long_sweep) << text;
  r = run_xformer("sweep --config '" + long_sweep + "' --jobs 2");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(count(r.output, ": resuming (attempt 1") == 2);
  CHECK(r.output.find("2 done, 0 failed") != std::string::npos);
  CHECK(read_text(out + "/logs/lr=0.001.log").find(" --resume\n") != std::string::npos);
}
