// End-to-end tests of the xformer binary on the tiny translation config: the verbs, the run
// directory, exact resume, interruption, and the errors a user can make.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <tuple>

#include "cli/cli_helpers.h"
#include "test_support.h"
#include "tfrecord_reader.h"
#include "xformer/metrics/bleu.h"
#include "xformer/metrics/chrf.h"

namespace fs = std::filesystem;
using namespace xformer::testing;

TEST_CASE("every verb has --help", "[cli]") {
  for (const char* verb : {"train", "eval", "sample", "info", "sweep"}) {
    auto r = run_xformer(std::string(verb) + " --help");
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("--") != std::string::npos);
  }
  auto r = run_xformer("--help");
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("train") != std::string::npos);
  // sample's help lists the options each task takes (the ones it does not take are refused).
  r = run_xformer("sample --help");
  CHECK(r.output.find("\n  translation: --input --stream --scores --beam") != std::string::npos);
  CHECK(r.output.find(" --out --score-pairs --ensemble\n") != std::string::npos);  // translation combines runs
  CHECK(r.output.find("\n  music: --temperature --top-k --top-p --num --seed --out --length --primer") != std::string::npos);
}

TEST_CASE("usage and config errors exit 2 with a one-line reason", "[cli]") {
  TempDir tmp("cli_errors");
  struct Case {
    std::string args, expected;
  };
  std::filesystem::create_directories(tmp.str("existing"));
  const std::vector<Case> cases = {
      {"info --config configs/translation/tiny.json --set train.max_stepz=3",
       "unknown key 'train.max_stepz' in --set train.max_stepz (did you mean 'train.max_steps'?)"},
      {"info --config configs/translation/tiny.json --set optim.lr=fast",
       "'optim.lr' in --set optim.lr must be a number, got \"fast\""},
      {"info --config configs/translation/tiny.json --set optim.lr", "--set expects KEY=VALUE"},
      {"info --config configs/translation/nope.json", "cannot open config file 'configs/translation/nope.json'"},
      {"info --config configs/translation/tiny.json --set task.name=translaton",
       "unknown task.name 'translaton' (did you mean 'translation'?)"},
      {"info --config configs/translation/tiny.json --set model.norm=middle",
       "'model.norm' in --set model.norm must be one of post|pre"},
      {"train", "train needs --config"},
      {"train --config configs/translation/tiny.json --set task.spm_model=/nonexistent.model --run-dir " + tmp.str("spm"),
       "task.spm_model '/nonexistent.model' does not exist"},
      {"train --config configs/translation/tiny.json --set task.train= --run-dir " + tmp.str("empty"),
       "'task.train' is empty; it names the training data"},
      {"train --config configs/translation/tiny.json --set task.valid=/nonexistent.tsv --run-dir " + tmp.str("v"),
       "'task.valid' names '/nonexistent.tsv', which does not exist"},
      // A decaying schedule without a horizon is refused before training, not after the warmup.
      {"train --config configs/translation/tiny.json --set optim.schedule=linear --set train.max_steps=0"
       " --set train.max_epochs=2 --run-dir " + tmp.str("s"),
       "optim.schedule 'linear' decays to optim.min_lr at train.max_steps, so it needs train.max_steps (0) > "
       "optim.warmup_steps"},
      // Refused before the run directory exists (checked below).
      {"train --config configs/classification/tiny.json --set train.recompute_activations=true --run-dir " +
           tmp.str("r"),
       "'train.recompute_activations' is true, but model 'sasa_resnet' has no layers that recompute (those of "},
      {"sample --run " + tmp.str() + " --beam 2 --temperature 0.5", "excludes"},
      // Values that used to fall back to a default, or pass as nan, are refused before loading.
      {"sample --run " + tmp.str() + " --temperature 0", "--temperature must be a number > 0, got 0"},
      {"sample --run " + tmp.str() + " --temperature nan", "--temperature must be a number > 0, got nan"},
      {"sample --run " + tmp.str() + " --beam 0", "--beam must be >= 1, got 0"},
      {"sample --run " + tmp.str() + " --beam 2 --lenpen -5", "--lenpen must be a number >= 0, got -5"},
      {"sample --run " + tmp.str() + " --temperature 1 --top-p nan", "--top-p must be in (0, 1], got nan"},
      {"sample --run " + tmp.str() + " --temperature 1 --top-k -1", "--top-k must be >= 0, got -1"},
      {"sweep --config " + tmp.str("none.json") + " --trial -1", "--trial"},
      {"sample --run " + tmp.str() + " --num 100000000", "--num must be in 1..10000, got 100000000"},
      {"sample --run " + tmp.str() + " --length 0", "--length must be in 1..10000000, got 0"},
      {"sample --run " + tmp.str() + " --attention-layer 1", "give --attention too"},
      {"sample --run " + tmp.str() + " --input /nonexistent.png", "--input '/nonexistent.png' does not exist"},
      {"sample --run " + tmp.str() + " --temperature 1 --seed -1", "must be an integer in 0..18446744073709551615"},
      {"sample --run " + tmp.str() + " --temperature 1 --seed 18446744073709551616", "must be an integer in 0.."},
      {"sample --run " + tmp.str() + " --primer /nonexistent.mid", "--primer '/nonexistent.mid' does not exist"},
      {"sample --run " + tmp.str() + " --primer " + tmp.str(), "--primer '" + tmp.str() + "' is not a file"},
      {"train --config configs/translation/tiny.json --run-dir ''", "--run-dir: is empty"},
      {"train --config configs/translation/tiny.json --resume --force --run-dir " + tmp.str("rf"), "pass one of them"},
      {"info --set train.seed=2", "--set needs --config FILE"},
      {"info --config-doc --config configs/translation/tiny.json", "--config-doc takes no other option"},
      {"info --config configs/translation/tiny.json --set optim.schedule=cosine --set optim.min_lr=1",
       "optim.min_lr (1.0) is above optim.lr (0.005)"},
      {"sweep --config " + tmp.str("none.json") + " --emit slurm --dry-run", "it takes no --dry-run"},
      {"train --config configs/translation/tiny.json --set train.device=cpu --set train.precision=bf16 --run-dir " +
           tmp.str("p"),
       "train.precision 'bf16' needs a CUDA device"},
      // Found only once the task is built: still no run directory left behind, and a folder that
      // was there (empty) stays, empty.
      {"train --config configs/music/tiny.json --set model.attention=absolute --set model.max_positions=10 --run-dir " +
           tmp.str("m"),
       "model.max_positions (10) is shorter than task.length (64)"},
      {"train --config configs/music/tiny.json --set model.attention=absolute --set model.max_positions=10 --run-dir " +
           tmp.str("existing"),
       "model.max_positions (10) is shorter than task.length (64)"},
      {"train --config configs/translation/tiny.json --resume --run-dir " + tmp.str("typo"),
       "run directory '" + tmp.str("typo") + "' has no checkpoints/last.pt"},
      {"eval --run " + tmp.str(), "is not a run directory"},
      {"sweep --summarize " + tmp.str() + " --jobs 4", "--jobs excludes --summarize"},
      {"sweep --config scripts/sweeps/translation_lr_warmup.json --emit slurm --threads 2", "--threads excludes --emit"},
      {"frobnicate", ""},
  };
  for (const auto& c : cases) {
    auto r = run_xformer(c.args);
    INFO(c.args << "\n" << r.output);
    CHECK(r.exit_code == 2);
    CHECK(r.output.find(c.expected) != std::string::npos);
  }
  for (const char* run : {"r", "p", "m", "rf", "typo", "spm", "empty"}) CHECK(!std::filesystem::exists(tmp.str(run)));
  REQUIRE(std::filesystem::is_directory(tmp.str("existing")));
  for (const auto& e : std::filesystem::directory_iterator(tmp.str("existing"))) CHECK(e.path().filename() == ".lock");
  // A config file with an unknown key names the file.
  std::ofstream(tmp.str("bad.json")) << R"({"extends": ")" << source_path("configs/translation/tiny.json")
                                     << R"(", "optim": {"learning_rate": 0.1}})";
  auto r = run_xformer("info --config " + tmp.str("bad.json"));
  INFO(r.output);
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("unknown key 'optim.learning_rate' in '" + tmp.str("bad.json") + "'") != std::string::npos);
}

TEST_CASE("data errors name the file and line", "[cli]") {
  TempDir tmp("cli_data");
  auto r = run_xformer("train " + tiny_args(tmp.str("run"), tmp.str("spm")) +
                       " --set task.train=tests/data/translation/corrupt.tsv");
  INFO(r.output);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("tests/data/translation/corrupt.tsv:3: expected 'source<TAB>target'") != std::string::npos);

  r = run_xformer("train " + tiny_args(tmp.str("run2"), tmp.str("spm")) + " --set task.train=missing.tsv");
  INFO(r.output);
  CHECK(r.exit_code == 2);  // a path in the config that names nothing: a config error, before the run exists
  CHECK(r.output.find("'task.train' names 'missing.tsv', which does not exist") != std::string::npos);
  CHECK(!std::filesystem::exists(tmp.str("run2")));

  // Pairs longer than task.max_tokens are batches of their own: said, not silently over budget.
  r = run_xformer("train " + tiny_args(tmp.str("run3"), tmp.str("spm")) + " --set task.max_tokens=5 --set train.max_steps=1");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("pairs are longer than task.max_tokens (5): each of them is a batch of its own") != std::string::npos);
}

TEST_CASE("train, eval and sample the tiny config end to end", "[cli][e2e]") {
  TempDir tmp("cli_e2e");
  auto count_lines = [](const fs::path& path) {
    std::ifstream in(path);
    int n = 0;
    for (std::string l; std::getline(in, l);) ++n;
    return n;
  };
  const std::string run = tmp.str("run");
  auto r = run_xformer("train " + tiny_args(run, tmp.str("spm")) + " --set train.max_steps=60");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);

  for (const char* f : {"config.json", "train.log", "metrics.jsonl", "tokenizer.model",
                        "checkpoints/last.pt", "checkpoints/best.pt", "samples"})
    CHECK(fs::exists(fs::path(run) / f));
  {  // train.log records how the threads were set
    std::ifstream log(fs::path(run) / "train.log");
    const std::string text((std::istreambuf_iterator<char>(log)), {});
    CHECK(text.find("| threads: torch ") != std::string::npos);
  }
  // keep_last = 2 step checkpoints (60 steps, saved every 20).
  int step_files = 0;
  for (const auto& e : fs::directory_iterator(fs::path(run) / "checkpoints"))
    step_files += e.path().filename().string().rfind("step_", 0) == 0;
  CHECK(step_files == 2);

  auto train = read_metrics(run, "train");
  REQUIRE(train.size() == 6);  // log_every 10
  CHECK(train.back()["loss"].get<double>() < 0.85 * train.front()["loss"].get<double>());
  auto valid = read_metrics(run, "valid");
  check_metrics_declared(run);
  REQUIRE(valid.size() == 3);
  CHECK(valid.back()["loss"].get<double>() < valid.front()["loss"].get<double>());
  CHECK(valid.back().contains("bleu"));
  // TensorBoard gets the same numbers: after the version record, one event per metrics line.
  {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(fs::path(run) / "tensorboard")) files.push_back(e.path().string());
    REQUIRE(files.size() == 1);
    const auto events = read_tfrecords(files[0]);
    REQUIRE(events.size() == 1 + train.size() + valid.size());
    const auto& last = valid.back();
    std::vector<std::pair<std::string, float>> scalars;
    for (const auto& [key, value] : last.items())
      if (key != "step" && value.is_number()) scalars.emplace_back("valid/" + key, value.get<float>());
    CHECK(events.back() == xformer::report::scalars_event(event_wall_time(events.back()), 60, scalars));
  }

  // A non-empty run directory is never silently reused.
  r = run_xformer("train " + tiny_args(run, tmp.str("spm")));
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("--resume") != std::string::npos);

  r = run_xformer("eval --run '" + run + "' --split test --checkpoint last");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  // The metrics are the last line of stdout, one JSON object.
  std::string last_line;
  std::istringstream lines(r.output);
  for (std::string l; std::getline(lines, l);)
    if (!l.empty() && l[0] == '{') last_line = l;
  auto record = nlohmann::json::parse(last_line);
  CHECK(record["split"] == "test");
  CHECK(record["step"] == 60);
  CHECK(record["bleu"].get<double>() >= 0.0);
  CHECK(record["loss"].get<double>() > 0.0);
  CHECK(read_metrics(run, "test").size() == 1);
  CHECK(fs::exists(fs::path(run) / "samples" / "test.hyp"));
  {  // The scores are those of the written hypotheses against the test split's targets.
    std::vector<std::string> hyps, refs;
    std::ifstream hyp_file(fs::path(run) / "samples" / "test.hyp"), tsv(source_path("tests/data/translation/test.tsv"));
    for (std::string l; std::getline(hyp_file, l);) hyps.push_back(l);
    for (std::string l; std::getline(tsv, l);) refs.push_back(l.substr(l.find('\t') + 1));
    REQUIRE(hyps.size() == refs.size());
    CHECK(record["bleu"].get<double>() == Approx(xformer::metrics::corpus_bleu(hyps, refs).score).epsilon(1e-12));
    CHECK(record["chrf"].get<double>() == Approx(xformer::metrics::corpus_chrf(hyps, refs).score).epsilon(1e-12));
    CHECK(record["chrf"].get<double>() > 0.0);
  }

  // --set changes decoding or data keys for one evaluation: here another test file, greedy.
  {
    std::ifstream fixture(source_path("tests/data/translation/test.tsv"));
    std::ofstream other(tmp.str("other.tsv"));
    std::string line;
    for (int i = 0; i < 5 && std::getline(fixture, line); ++i) other << line << "\n";
  }
  r = run_xformer("eval --run '" + run + "' --set task.test='" + tmp.str("other.tsv") + "' --set task.beam=1");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("test: 5 pairs from " + tmp.str("other.tsv")) != std::string::npos);
  REQUIRE(read_metrics(run, "test").size() == 2);
  CHECK(read_metrics(run, "test").back()["set"].size() == 2);
  std::ifstream saved_config(fs::path(run) / "config.json");
  CHECK(nlohmann::json::parse(saved_config)["task"]["beam"] != 1);  // the run's own config is untouched
  CHECK(count_lines(fs::path(run) / "samples" / "test.set.hyp") == 5);  // and its own outputs too
  CHECK(count_lines(fs::path(run) / "samples" / "test.hyp") > 5);
  // The mean of the last two step checkpoints (40 and 60).
  r = run_xformer("eval --run '" + run + "' --checkpoint average:2");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(read_metrics(run, "test").back()["averaged_steps"] == nlohmann::json::array({40, 60}));
  CHECK(run_xformer("eval --run '" + run + "' --checkpoint average:3").exit_code == 2);
  // A mistyped checkpoint choice or data file is a usage error (exit 2) that names it.
  r = run_xformer("eval --run '" + run + "' --checkpoint bets");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("--checkpoint 'bets': expected last, best, average:N") != std::string::npos);
  r = run_xformer("eval --run '" + run + "' --set task.test=typo.tsv");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("'task.test' names 'typo.tsv', which does not exist") != std::string::npos);
  r = run_xformer("eval --run '" + run + "' --set model.d_model=32");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("--set: model.d_model is 64") != std::string::npos);

  std::ofstream(tmp.str("in.txt")) << "Where is the station?\nI like it.\nThank you.\n";
  r = run_xformer("sample --run '" + run + "' --input " + tmp.str("in.txt") + " --beam 2 --out " + tmp.str("beam.txt"));
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(count_lines(tmp.str("beam.txt")) == 3);
  // Without --beam, sample searches as eval does (the run's task.beam 2, task.lenpen 0.6), so the
  // 2-best list needs no --beam; --set changes that for one command.
  const std::string plain = "sample --run '" + run + "' --input " + tmp.str("in.txt") + " --num 2";
  REQUIRE(run_xformer(plain + " --out " + tmp.str("default.txt")).exit_code == 0);
  REQUIRE(run_xformer(plain + " --beam 2 --lenpen 0.6 --out " + tmp.str("explicit.txt")).exit_code == 0);
  CHECK(count_lines(tmp.str("default.txt")) == 6);
  {
    std::ifstream d(tmp.str("default.txt")), e(tmp.str("explicit.txt"));
    CHECK(std::string(std::istreambuf_iterator<char>(d), {}) == std::string(std::istreambuf_iterator<char>(e), {}));
  }
  r = run_xformer(plain + " --set task.beam=1");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("need --beam 2 or wider (the n-best list; the run's task.beam is 1)") != std::string::npos);
  r = run_xformer("sample --run '" + run + "' --input " + tmp.str("in.txt") + " --beam 100000");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("--beam 100000 is wider than the vocabulary") != std::string::npos);
  // Options of free generation are refused, not ignored.
  r = run_xformer("sample --run '" + run + "' --input " + tmp.str("in.txt") + " --length 5");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("--length is not for translation runs; their sample options are --input, --stream,") !=
        std::string::npos);
  r = run_xformer("sample --run '" + run + "' --input " + tmp.str("in.txt") + " --top-k 5");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("need --temperature") != std::string::npos);
  r = run_xformer("sample --run '" + run + "' --input " + tmp.str("in.txt") + " --beam 2 --num 3");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("--num 3 translations per line need --beam 3 or wider") != std::string::npos);

  // --num with --beam: the n-best list of each line, best first (so its first entry is the
  // translation the same beam gives alone).
  const std::string beam3 = "sample --run '" + run + "' --input " + tmp.str("in.txt") + " --beam 3";
  REQUIRE(run_xformer(beam3 + " --num 2 --out " + tmp.str("nbest.txt")).exit_code == 0);
  REQUIRE(run_xformer(beam3 + " --out " + tmp.str("best.txt")).exit_code == 0);
  {
    std::ifstream nbest(tmp.str("nbest.txt")), best(tmp.str("best.txt"));
    std::vector<std::string> n_lines, b_lines;
    for (std::string l; std::getline(nbest, l);) n_lines.push_back(l);
    for (std::string l; std::getline(best, l);) b_lines.push_back(l);
    REQUIRE(n_lines.size() == 6);
    REQUIRE(b_lines.size() == 3);
    for (size_t i = 0; i < 3; ++i) CHECK(n_lines[2 * i] == b_lines[i]);
    // --scores: the same n-best list, each translation after its log-probability and a tab.
    REQUIRE(run_xformer(beam3 + " --num 2 --scores --out " + tmp.str("scored.txt")).exit_code == 0);
    std::ifstream scored(tmp.str("scored.txt"));
    std::vector<std::string> s_lines;
    for (std::string l; std::getline(scored, l);) s_lines.push_back(l);
    REQUIRE(s_lines.size() == 6);
    for (size_t i = 0; i < 6; ++i) {
      INFO(s_lines[i]);
      const auto tab = s_lines[i].find('\t');
      REQUIRE(tab != std::string::npos);
      CHECK(s_lines[i].substr(tab + 1) == n_lines[i]);
      const double log_prob = std::stod(s_lines[i].substr(0, tab));
      CHECK(std::isfinite(log_prob));
      CHECK(log_prob < 0);
    }
  }

  const std::string sample_args = "sample --run '" + run + "' --input " + tmp.str("in.txt") +
                                  " --temperature 0.9 --top-k 20 --num 2 --seed 7 --out ";
  REQUIRE(run_xformer(sample_args + tmp.str("s1.txt")).exit_code == 0);
  REQUIRE(run_xformer(sample_args + tmp.str("s2.txt")).exit_code == 0);
  CHECK(count_lines(tmp.str("s1.txt")) == 6);
  auto text_of = [](const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  CHECK(text_of(tmp.str("s1.txt")) == text_of(tmp.str("s2.txt")));
  // Another seed draws other samples (sampling that fell back to the most likely tokens would
  // give the same ones).
  REQUIRE(run_xformer("sample --run '" + run + "' --input " + tmp.str("in.txt") +
                      " --temperature 0.9 --top-k 20 --num 2 --seed 8 --out " + tmp.str("s3.txt")).exit_code == 0);
  CHECK(text_of(tmp.str("s3.txt")) != text_of(tmp.str("s1.txt")));

  // stdin works too.
  r = run_shell("echo 'Good morning.' | '" + std::string(XFORMER_BINARY) + "' sample --run '" + run + "' --input - 2>/dev/null");
  CHECK(r.exit_code == 0);
  CHECK(!r.output.empty());

  // --stream answers each line as soon as it is read: the first translation arrives while the
  // feeding side still holds the second line back (reading to the end first, it would not come
  // before the wait below gives up).
  const std::string fifo = tmp.str("lines.fifo"), streamed = tmp.str("streamed.txt"), log = tmp.str("stream.log");
  r = run_shell("mkfifo '" + fifo + "' && : > '" + streamed + "' && { '" + std::string(XFORMER_BINARY) +
                "' sample --run '" + run + "' --input - --stream --beam 2 < '" + fifo + "' > '" + streamed +
                "' 2> '" + log + "' & pid=$!;"
                " exec 3> '" + fifo + "'; echo 'Where is the station?' >&3;"
                " for i in $(seq 600); do [ $(wc -l < '" + streamed + "') -ge 1 ] && break;"
                " kill -0 $pid 2>/dev/null || break; sleep 0.1; done;"
                " first=$(wc -l < '" + streamed + "'); echo 'I like it.' >&3; exec 3>&-; wait $pid;"
                " echo \"first $first exit $?\"; cat '" + log + "'; }");
  INFO(r.output);
  CHECK(r.output.find("first 1 exit 0") != std::string::npos);
  CHECK(count_lines(streamed) == 2);
  // Each streamed line is translated alone, as a file of that one line is.
  std::ofstream(tmp.str("one.txt")) << "Where is the station?\n";
  REQUIRE(run_xformer("sample --run '" + run + "' --input " + tmp.str("one.txt") + " --beam 2 --out " +
                      tmp.str("one_out.txt")).exit_code == 0);
  {
    std::ifstream s_in(streamed), one(tmp.str("one_out.txt"));
    std::string s_first, one_first;
    std::getline(s_in, s_first), std::getline(one, one_first);
    CHECK(s_first == one_first);
  }
  // A missing input leaves an existing --out file as it was, streaming or not, and --out may
  // not be the input.
  std::ofstream(tmp.str("keep.txt")) << "kept\n";
  for (const std::string stream : {"", " --stream"}) {
    r = run_xformer("sample --run '" + run + "' --input " + tmp.str("missing.txt") + " --out " +
                    tmp.str("keep.txt") + stream);
    CHECK(r.exit_code == 2);
    CHECK(r.output.find("--input '" + tmp.str("missing.txt") + "' does not exist") != std::string::npos);
    CHECK(count_lines(tmp.str("keep.txt")) == 1);
  }
  r = run_xformer("sample --run '" + run + "' --input " + tmp.str("keep.txt") + " --out " + tmp.str("keep.txt"));
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("is the --input file") != std::string::npos);
  CHECK(count_lines(tmp.str("keep.txt")) == 1);
}

TEST_CASE("nothing is lost to a failed command: outputs, inputs and the run's config stay", "[cli][safety]") {
  TempDir tmp("cli_safety");
  const std::string run = tmp.str("run");
  auto r = run_xformer("train " + tiny_args(run, tmp.str("spm")) + " --set train.max_steps=4");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  // A resume that fails (here: a damaged checkpoint) leaves config.json as the run wrote it.
  const std::string damaged = tmp.str("damaged");
  std::filesystem::copy(run, damaged, std::filesystem::copy_options::recursive);
  std::filesystem::remove(damaged + "/checkpoints/last.pt");
  std::ofstream(damaged + "/checkpoints/last.pt") << "not a checkpoint";
  const std::string config = read_text(damaged + "/config.json");
  r = run_xformer("train --run-dir " + damaged + " --resume --set train.max_steps=8");
  CHECK(r.exit_code == 1);
  CHECK(read_text(damaged + "/config.json") == config);

  // A config.json edited since training (here model.activation, which keeps every shape) no longer
  // describes the checkpoint: eval, sample and resume refuse it, naming the key.
  const std::string edited = tmp.str("edited");
  std::filesystem::copy(run, edited, std::filesystem::copy_options::recursive);
  {
    auto c = nlohmann::json::parse(read_text(edited + "/config.json"));
    REQUIRE(c["model"]["activation"] == "relu");
    c["model"]["activation"] = "gelu";
    std::ofstream(edited + "/config.json") << c.dump(2);
  }
  for (const std::string command : {"eval --run " + edited, "sample --run " + edited + " --input " + tmp.str("one.txt"),
                                    "train --run-dir " + edited + " --resume --set train.max_steps=8"}) {
    std::ofstream(tmp.str("one.txt")) << "hello\n";
    r = run_xformer(command);
    INFO(command << "\n" << r.output);
    CHECK(r.exit_code == 2);
    CHECK(r.output.find("was made with model.activation \"relu\", but the run's config has \"gelu\"") != std::string::npos);
  }

  // --out is opened only once the input has been read whole: a malformed line leaves it as it was.
  const std::string out = tmp.str("keep.txt");
  std::ofstream(out) << "earlier results\n";
  std::ofstream(tmp.str("pairs.tsv")) << "hello\tHallo\nno tab here\n";
  r = run_xformer("sample --run " + run + " --score-pairs --input " + tmp.str("pairs.tsv") + " --out " + out);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("pairs.tsv:2: expected 'source<TAB>target' (no TAB)") != std::string::npos);
  CHECK(read_text(out) == "earlier results\n");
  std::ofstream(tmp.str("latin1.txt")) << "caf\xe9\n";
  r = run_xformer("sample --run " + run + " --input " + tmp.str("latin1.txt") + " --out " + out);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("latin1.txt:1: not valid UTF-8") != std::string::npos);
  CHECK(read_text(out) == "earlier results\n");
  // A write that fails (a full disk) is an error, not a short file and exit 0.
  std::ofstream(tmp.str("one.txt")) << "hello\n";
  r = run_xformer("sample --run " + run + " --input " + tmp.str("one.txt") + " --out /dev/full");
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("cannot write '/dev/full'") != std::string::npos);
  // A line longer than the model reads is translated from its start, and said so.
  std::string words;
  for (int i = 0; i < 100; ++i) words += "the house is small ";
  std::ofstream(tmp.str("long.txt")) << "hello\n" << words << "\n";
  r = run_xformer("sample --run " + run + " --input " + tmp.str("long.txt"));
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("long.txt:2: ") != std::string::npos);
  CHECK(r.output.find("longer than the model reads (model.max_positions): translating its first 63") != std::string::npos);
  // Options that would be ignored are refused.
  r = run_xformer("sample --run " + run + " --input " + tmp.str("one.txt") + " --seed 3");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("--seed seeds sampling: give --temperature too") != std::string::npos);
  // eval of a folder that is no run writes nothing there.
  r = run_xformer("eval --run " + tmp.str("no_run"));
  CHECK(r.exit_code == 2);
  CHECK(!std::filesystem::exists(tmp.str("no_run")));
}

TEST_CASE("eval and sample --ensemble average the models of several runs", "[cli][ensemble]") {
  TempDir tmp("cli_ensemble");
  const std::string a = tmp.str("a"), b = tmp.str("b"), spm = tmp.str("spm");
  // b trains its own tokenizer (another cache): the same vocabulary, in a file that differs (it
  // records where it was trained).
  for (const auto& [run, seed, cache] : {std::tuple{a, 1, spm}, std::tuple{b, 2, tmp.str("spm_b")}}) {
    auto r = run_xformer("train " + tiny_args(run, cache) + " --set train.max_steps=20 --set train.seed=" +
                         std::to_string(seed));
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
  }
  auto eval = [](const std::string& run, const std::string& more = "") {  // the eval line it appends
    auto r = run_xformer("eval --split valid --run " + run + more);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    return read_metrics(run, "valid").back();
  };
  const auto alone_a = eval(a), alone_b = eval(b);
  // A model ensembled with itself is the model: the same loss and the same translations.
  const auto twice = eval(a, " --ensemble " + a);
  CHECK(twice["ensemble"] == nlohmann::json::array({a}));
  CHECK(twice["nll"].get<double>() == Approx(alone_a["nll"].get<double>()).epsilon(1e-5));
  CHECK(twice["loss"].get<double>() == Approx(alone_a["loss"].get<double>()).epsilon(1e-5));
  CHECK(read_text(a + "/samples/valid.ensemble2.hyp") == read_text(a + "/samples/valid.hyp"));
  CHECK(read_text(a + "/tokenizer.model") != read_text(b + "/tokenizer.model"));  // yet one vocabulary (below)
  // Two models: the NLL of their mean distribution is neither's, and at most the mean of theirs
  // (-log of a mean probability <= the mean of -log, token by token).
  const auto pair = eval(a, " --ensemble " + b);
  const double nll_a = alone_a["nll"], nll_b = alone_b["nll"], nll = pair["nll"];
  CHECK(std::abs(nll - nll_a) > 1e-4);
  CHECK(std::abs(nll - nll_b) > 1e-4);
  CHECK(nll <= (nll_a + nll_b) / 2 + 1e-6);
  CHECK(pair["ensemble"] == nlohmann::json::array({b}));

  std::ofstream(tmp.str("in.txt")) << "Where is the station?\nI like it.\n";
  const std::string sample = "sample --input " + tmp.str("in.txt") + " --scores --run " + a;
  auto alone = run_xformer(sample + " --out " + tmp.str("alone.txt"));
  auto with_itself = run_xformer(sample + " --ensemble " + a + " --out " + tmp.str("itself.txt"));
  auto with_b = run_xformer(sample + " --ensemble " + b + " --out " + tmp.str("with_b.txt"));
  INFO(with_b.output);
  REQUIRE((alone.exit_code == 0 && with_itself.exit_code == 0 && with_b.exit_code == 0));
  auto scored = [&](const std::string& path) {  // (log-probability, translation) per line
    std::vector<std::pair<double, std::string>> out;
    std::ifstream in(path);
    for (std::string l; std::getline(in, l);) out.emplace_back(std::stod(l.substr(0, l.find('\t'))), l.substr(l.find('\t') + 1));
    return out;
  };
  const auto s_alone = scored(tmp.str("alone.txt")), s_itself = scored(tmp.str("itself.txt"));
  REQUIRE(s_alone.size() == 2);
  REQUIRE(s_itself.size() == 2);
  REQUIRE(scored(tmp.str("with_b.txt")).size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CHECK(s_itself[i].second == s_alone[i].second);
    CHECK(s_itself[i].first == Approx(s_alone[i].first).margin(1e-3));
  }

  // What cannot be combined is refused, naming the run and why.
  auto other_vocab = run_xformer("train " + tiny_args(tmp.str("v300"), spm) + " --set task.vocab_size=300 --set train.max_steps=1");
  REQUIRE(other_vocab.exit_code == 0);
  fs::create_directories(tmp.str("music"));
  std::ofstream(tmp.str("music/config.json")) << R"({"task": {"name": "music"}, "model": {}, "optim": {}, "train": {}})";
  struct Case {
    std::string args, expected;
  };
  const std::vector<Case> refused = {
      {"eval --run " + a + " --ensemble " + tmp.str("v300"),
       "--ensemble " + tmp.str("v300") + ": its vocabulary (tokenizer.model) differs from that of " + a},
      {"eval --run " + a + " --ensemble " + tmp.str("music"), "--ensemble " + tmp.str("music") + " is a music run"},
      {"sample --run " + tmp.str("music") + " --ensemble " + a, "--ensemble is not for music runs; it combines runs of: translation"},
      {"eval --run " + a + " --ensemble " + b + " --checkpoint " + a + "/checkpoints/last.pt",
       "--ensemble loads the same --checkpoint of every run: last, best or average:N"},
      {"eval --run " + a + " --ensemble " + tmp.str("none"), "is not a run directory"},
  };
  for (const auto& c : refused) {
    auto r = run_xformer(c.args);
    INFO(c.args << "\n" << r.output);
    CHECK(r.exit_code == 2);
    CHECK(r.output.find(c.expected) != std::string::npos);
  }
}

TEST_CASE("sample --score-pairs scores given translations as eval scores the split", "[cli][score]") {
  TempDir tmp("cli_score_pairs");
  const std::string run = tmp.str("run");
  auto r = run_xformer("train " + tiny_args(run, tmp.str("spm")) + " --set train.max_steps=20");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  r = run_xformer("eval --run " + run + " --split valid");
  REQUIRE(r.exit_code == 0);
  const double eval_nll = read_metrics(run, "valid").back()["nll"];

  // The valid split's pairs, scored line by line: their summed log-probability over their summed
  // pieces is the NLL per token that eval reports for the split.
  const std::string pairs = source_path("tests/data/translation/valid.tsv");
  const std::string score = "sample --run " + run + " --score-pairs --input ";
  r = run_xformer(score + pairs + " --out " + tmp.str("scores.txt"));
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto read_scores = [](const std::string& path) {
    std::vector<std::pair<double, int64_t>> out;
    std::ifstream in(path);
    for (std::string l; std::getline(in, l);) out.emplace_back(std::stod(l.substr(0, l.find('\t'))), std::stoll(l.substr(l.find('\t') + 1)));
    return out;
  };
  const auto scores = read_scores(tmp.str("scores.txt"));
  REQUIRE(scores.size() == 40);
  double log_prob = 0, pieces = 0;
  for (const auto& [lp, n] : scores) {
    CHECK(lp < 0);
    CHECK(n >= 2);
    log_prob += lp, pieces += static_cast<double>(n);
  }
  CHECK(-log_prob / pieces == Approx(eval_nll).epsilon(1e-4));
  // Streamed, and with the model ensembled with itself: the same scores.
  REQUIRE(run_xformer(score + pairs + " --stream --ensemble " + run + " --out " + tmp.str("again.txt")).exit_code == 0);
  const auto again = read_scores(tmp.str("again.txt"));
  REQUIRE(again.size() == scores.size());
  for (size_t i = 0; i < scores.size(); ++i) {
    CHECK(again[i].first == Approx(scores[i].first).margin(2e-4));
    CHECK(again[i].second == scores[i].second);
  }

  // A malformed line or a side longer than the model reads is an error naming the line; search
  // and sampling options are refused.
  std::string long_target;
  for (int i = 0; i < 80; ++i) long_target += "Haus ";
  std::ofstream(tmp.str("bad.tsv")) << "Hello.\tHallo.\nno tab here\n";
  // A blank line (spaces only, too) gives a blank line, so that the output stays aligned with
  // the input; translating, it is not translated (into whatever a source of nothing gives).
  auto lines_of = [](const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
  };
  std::ofstream(tmp.str("blank.tsv")) << "Hello.\tHallo.\n\n   \nThanks.\tDanke.\n";
  r = run_xformer(score + tmp.str("blank.tsv") + " --out " + tmp.str("blank_scores.txt"));
  REQUIRE(r.exit_code == 0);
  {
    const auto lines = lines_of(tmp.str("blank_scores.txt"));
    REQUIRE(lines.size() == 4);
    CHECK((lines[1].empty() && lines[2].empty()));
    CHECK(lines[3].find('\t') != std::string::npos);
  }
  std::ofstream(tmp.str("blank.txt")) << "Hello.\n\n   \nThanks.\n";
  r = run_xformer("sample --run " + run + " --input " + tmp.str("blank.txt") + " --beam 2 --num 2 --scores --out " +
                  tmp.str("blank_out.txt"));
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  {
    const auto lines = lines_of(tmp.str("blank_out.txt"));
    REQUIRE(lines.size() == 8);  // two hypotheses per line
    for (int i : {0, 1, 6, 7}) CHECK(lines[i].find('\t') != std::string::npos);
    for (int i : {2, 3, 4, 5}) CHECK(lines[i].empty());
  }
  std::ofstream(tmp.str("long.tsv")) << "Hello.\tHallo.\nHouses.\t" << long_target << "\n";
  r = run_xformer(score + tmp.str("bad.tsv"));
  CHECK(r.exit_code == 1);
  CHECK(r.output.find(tmp.str("bad.tsv") + ":2: expected 'source<TAB>target' (no TAB)") != std::string::npos);
  r = run_xformer(score + tmp.str("long.tsv"));
  CHECK(r.exit_code == 1);
  CHECK(r.output.find(tmp.str("long.tsv") + ":2: the target has ") != std::string::npos);
  // With both faults in one file, the error names the earlier line, whichever the fault.
  std::ofstream(tmp.str("both.tsv")) << "Hello.\tHallo.\nHouses.\t" << long_target << "\nno tab here\n";
  r = run_xformer(score + tmp.str("both.tsv"));
  CHECK(r.exit_code == 1);
  CHECK(r.output.find(tmp.str("both.tsv") + ":2: the target has ") != std::string::npos);
  r = run_xformer(score + pairs + " --beam 2");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("--score-pairs scores the translations it is given; it takes none of --beam") != std::string::npos);
}

TEST_CASE("train.ema_decay: eval and sample use the moving average, --no-ema the trained weights", "[cli][ema]") {
  TempDir tmp("cli_ema");
  const std::string run = tmp.str("run");
  auto r = run_xformer("train " + tiny_args(run, tmp.str("spm")) +
                       " --set train.max_steps=20 --set train.eval_every=10 --set train.ema_decay=0.9");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  REQUIRE(run_xformer("eval --run '" + run + "' --checkpoint last").exit_code == 0);
  r = run_xformer("eval --run '" + run + "' --checkpoint last --no-ema");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto test = read_metrics(run, "test");
  REQUIRE(test.size() == 2);
  CHECK(test[0]["ema"] == true);
  CHECK(test[1]["ema"] == false);
  CHECK(test[0]["loss"] != test[1]["loss"]);
  // The average is what training evaluated at its last step: eval of the same weights on the
  // valid split gives the logged loss.
  const double logged = read_metrics(run, "valid").back()["loss"];
  REQUIRE(run_xformer("eval --run '" + run + "' --checkpoint last --split valid").exit_code == 0);
  REQUIRE(run_xformer("eval --run '" + run + "' --checkpoint last --split valid --no-ema").exit_code == 0);
  const auto valid = read_metrics(run, "valid");
  CHECK(valid[valid.size() - 2]["loss"].get<double>() == Approx(logged).epsilon(1e-9));
  CHECK(valid.back()["loss"].get<double>() != Approx(logged).epsilon(1e-6));
  CHECK(fs::exists(fs::path(run) / "samples" / "test.hyp"));
  CHECK(fs::exists(fs::path(run) / "samples" / "test.no_ema.hyp"));
  std::ofstream(tmp.str("in.txt")) << "Thank you.\n";
  CHECK(run_xformer("sample --run '" + run + "' --no-ema --input " + tmp.str("in.txt")).exit_code == 0);
  // Runs without an average: --no-ema changes nothing and the line carries no "ema".
  const std::string plain = tmp.str("plain");
  REQUIRE(run_xformer("train " + tiny_args(plain, tmp.str("spm")) + " --set train.max_steps=2").exit_code == 0);
  REQUIRE(run_xformer("eval --run '" + plain + "' --no-ema").exit_code == 0);
  CHECK(!read_metrics(plain, "test").back().contains("ema"));
}

TEST_CASE("resume reproduces the same losses as an uninterrupted run", "[cli][resume]") {
  TempDir tmp("cli_resume");
  // Dropout on, so the restored RNG state matters; log every step to compare every loss.
  check_exact_resume(tmp.str(), [&](const std::string& run) {
    return tiny_args(run, tmp.str("spm")) + " --set model.dropout=0.1 --set train.log_every=1 --set train.eval_every=0"
           " --set train.save_every=7 --set task.eval_bleu=false";
  }, 9, 16);
  // TensorBoard: the resumed run starts a second events file, named to sort after the first (the
  // order TensorBoard reads them in). It tells TensorBoard to drop what earlier files hold, and
  // holds the run's curves again from metrics.jsonl up to the checkpoint (step 9), then the rest.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(tmp.str("split/tensorboard"))) names.push_back(e.path().string());
  REQUIRE(names.size() == 2);
  std::sort(names.begin(), names.end());
  const auto started = read_tfrecords(names[0]), resumed = read_tfrecords(names[1]);
  REQUIRE(resumed.size() > 1);
  CHECK(resumed[1] == xformer::report::session_start_event(event_wall_time(resumed[1]), 1));
  CHECK(started.size() == 1 + 9 + 1);  // the version record, steps 1..9, the evaluation at the end
  CHECK(resumed.size() == 2 + 10 + 8);  // version, restart, those 10 again, steps 10..16 and an evaluation
}

TEST_CASE("a run that ended by train.max_epochs, resumed, is not validated again", "[cli][resume]") {
  TempDir tmp("cli_epochs_done");
  const std::string run = tmp.str("run");
  const std::string args = "train " + tiny_args(run, tmp.str("spm")) +
                           " --set train.max_steps=0 --set train.max_epochs=1 --set train.eval_every=0"
                           " --set task.eval_bleu=false --set task.max_tokens=2000";
  auto r = run_xformer(args);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto valid = read_metrics(run, "valid");
  REQUIRE(valid.size() == 1);  // the evaluation at the end
  const auto last = fs::last_write_time(run + "/checkpoints/last.pt");
  r = run_xformer(args + " --resume");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(read_metrics(run, "valid") == valid);
  CHECK(fs::last_write_time(run + "/checkpoints/last.pt") == last);  // nor saved again
  // One more epoch trains, and validates, as before.
  r = run_xformer(args + " --resume --set train.max_epochs=2");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(read_metrics(run, "valid").size() == 2);
}

TEST_CASE("a run trained without TensorBoard events gets its curves so far when resumed with them", "[cli][resume]") {
  TempDir tmp("cli_tensorboard_late");
  const std::string run = tmp.str("run");
  const std::string args = "train " + tiny_args(run, tmp.str("spm")) +
                           " --set train.log_every=1 --set train.eval_every=0 --set task.eval_bleu=false";
  REQUIRE(run_xformer(args + " --set train.max_steps=4 --set train.tensorboard=false").exit_code == 0);
  CHECK(!fs::exists(run + "/tensorboard"));
  REQUIRE(run_xformer("eval --run " + run + " --split valid").exit_code == 0);  // not a training curve
  auto r = run_xformer(args + " --resume --set train.max_steps=6");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(run + "/tensorboard")) files.push_back(e.path().string());
  REQUIRE(files.size() == 1);
  // The version record, the restart, then metrics.jsonl's training lines before the resume
  // (steps 1..4 and the evaluation at the end; not eval's line) and after it (steps 5, 6 and the
  // evaluation): one event each.
  const auto events = read_tfrecords(files[0]);
  CHECK(events.size() == 2 + 5 + 3);
  const auto first = read_metrics(run, "train").front();
  std::vector<std::pair<std::string, float>> scalars;
  for (const auto& [key, value] : first.items())
    if (key != "step" && value.is_number()) scalars.emplace_back("train/" + key, value.get<float>());
  REQUIRE(events.size() > 2);
  CHECK(events[2] == xformer::report::scalars_event(event_wall_time(events[2]), 1, scalars));
}

TEST_CASE("train.recompute_activations trains as the plain run does", "[cli][recompute]") {
  TempDir tmp("cli_recompute");
  auto train = [&](const std::string& run, const std::string& extra) {
    auto r = run_xformer("train " + tiny_args(run, tmp.str("spm")) +
                         " --set model.dropout=0.1 --set train.log_every=1 --set train.eval_every=0"
                         " --set train.save_every=0 --set train.max_steps=8 " + extra);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    return read_metrics(run, "train");
  };
  const auto plain = train(tmp.str("plain"), ""),
             recomputed = train(tmp.str("recomputed"), "--set train.recompute_activations=true");
  REQUIRE(plain.size() == 8);
  REQUIRE(recomputed.size() == 8);
  for (size_t i = 0; i < plain.size(); ++i) {
    INFO("step " << i + 1);
    CHECK(recomputed[i]["loss"].get<double>() == Approx(plain[i]["loss"].get<double>()).epsilon(1e-5));
  }
  CHECK(plain.back()["loss"].get<double>() < plain.front()["loss"].get<double>());
}

TEST_CASE("SIGINT saves a checkpoint and exits 130", "[cli][signal]") {
  TempDir tmp("cli_sigint");
  const std::string run = tmp.str("run");
  // Start a long run, wait for its first checkpoint, try a second trainer on the same run
  // directory (refused: the first holds its lock; before the first checkpoint it would be
  // refused for having none), interrupt the first.
  const std::string bin = "'" + std::string(XFORMER_BINARY) + "'";
  // ("true;" first: run_shell prefixes "cd SOURCE &&", which must not go to the background with it.)
  auto r = run_shell("true; " + bin + " train " + tiny_args(run, tmp.str("spm")) +
                     " --set train.max_steps=100000 --set train.log_every=1 --set train.eval_every=0"
                     " --set train.save_every=2 > " + tmp.str("log.txt") + " 2>&1 & pid=$!; "
                     "for i in $(seq 600); do [ -e '" + run + "/checkpoints/last.pt' ] && break; sleep 0.1; done; " +
                     bin + " train --resume --run-dir '" + run + "' 2>&1; echo second=$?; "
                     "kill -INT $pid; wait $pid; echo exit=$? pid=$pid");
  INFO(r.output);
  CHECK(r.output.find("exit=130") != std::string::npos);
  CHECK(r.output.find("second=2") != std::string::npos);
  std::smatch m;
  REQUIRE(std::regex_search(r.output, m, std::regex("pid=([0-9]+)")));
  CHECK(r.output.find("is in use by another xformer train (pid " + m[1].str() + ")") != std::string::npos);
  CHECK(fs::exists(fs::path(run) / "checkpoints" / "last.pt"));
  // The interrupt was acknowledged at once, with what a second one would do.
  CHECK(read_text(tmp.str("log.txt")).find("interrupt: stopping after the current update with a checkpoint "
                                           "(interrupt again to quit at once, without one)") != std::string::npos);
  // And the run continues from there.
  auto resumed = run_xformer("train --resume --run-dir '" + run + "' --set train.max_steps=" +
                             std::to_string(read_metrics(run, "train").back()["step"].get<int>() + 2));
  INFO(resumed.output);
  CHECK(resumed.exit_code == 0);
}

TEST_CASE("docs/configs.md lists every key as `xformer info --config-doc` does", "[cli][docs]") {
  auto r = run_shell("'" + std::string(XFORMER_BINARY) + "' info --config-doc 2>/dev/null");
  REQUIRE(r.exit_code == 0);
  std::ifstream in(source_path("docs/configs.md"));
  const std::string doc((std::istreambuf_iterator<char>(in)), {});
  INFO("regenerate docs/configs.md with `xformer info --config-doc` (see its header)");
  CHECK(doc.find(r.output) != std::string::npos);
  CHECK(r.output.find("`optim.lr`") != std::string::npos);
  CHECK(r.output.find("`task.max_tokens`") != std::string::npos);
  CHECK(r.output.find("`model.d_model`") != std::string::npos);
}
