// End-to-end tests of the xformer binary on the tiny translation config: the verbs, the run
// directory, exact resume, interruption, and the errors a user can make.
#include <filesystem>
#include <cmath>
#include <fstream>
#include <regex>
#include <sstream>

#include "cli/cli_helpers.h"
#include "test_support.h"
#include "xformer/data/image.h"
#include "xformer/data/midi.h"
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
}

TEST_CASE("usage and config errors exit 2 with a one-line reason", "[cli]") {
  TempDir tmp("cli_errors");
  struct Case {
    std::string args, expected;
  };
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
      {"eval --run " + tmp.str(), "is not a run directory"},
      {"frobnicate", ""},
  };
  for (const auto& c : cases) {
    auto r = run_xformer(c.args);
    INFO(c.args << "\n" << r.output);
    CHECK(r.exit_code == 2);
    CHECK(r.output.find(c.expected) != std::string::npos);
  }
  CHECK(!std::filesystem::exists(tmp.str("r")));
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
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("cannot open corpus file 'missing.tsv'") != std::string::npos);
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
  CHECK(r.output.find("not for translation") != std::string::npos);
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
  }

  const std::string sample_args = "sample --run '" + run + "' --input " + tmp.str("in.txt") +
                                  " --temperature 0.9 --top-k 20 --num 2 --seed 7 --out ";
  REQUIRE(run_xformer(sample_args + tmp.str("s1.txt")).exit_code == 0);
  REQUIRE(run_xformer(sample_args + tmp.str("s2.txt")).exit_code == 0);
  CHECK(count_lines(tmp.str("s1.txt")) == 6);
  std::ifstream a(tmp.str("s1.txt")), b(tmp.str("s2.txt"));
  CHECK(std::string(std::istreambuf_iterator<char>(a), {}) == std::string(std::istreambuf_iterator<char>(b), {}));

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
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("cannot open input file '" + tmp.str("missing.txt") + "'") != std::string::npos);
    CHECK(count_lines(tmp.str("keep.txt")) == 1);
  }
  r = run_xformer("sample --run '" + run + "' --input " + tmp.str("keep.txt") + " --out " + tmp.str("keep.txt"));
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("is the --input file") != std::string::npos);
  CHECK(count_lines(tmp.str("keep.txt")) == 1);
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
  // Start a long run, wait for its first log line, try a second trainer on the same run
  // directory (refused: the first holds its lock), interrupt the first.
  const std::string bin = "'" + std::string(XFORMER_BINARY) + "'";
  // ("true;" first: run_shell prefixes "cd SOURCE &&", which must not go to the background with it.)
  auto r = run_shell("true; " + bin + " train " + tiny_args(run, tmp.str("spm")) +
                     " --set train.max_steps=100000 --set train.log_every=1 --set train.eval_every=0"
                     " > " + tmp.str("log.txt") + " 2>&1 & pid=$!; "
                     "for i in $(seq 600); do [ -s '" + run + "/metrics.jsonl' ] && break; sleep 0.1; done; " +
                     bin + " train --resume --run-dir '" + run + "' 2>&1; echo second=$?; "
                     "kill -INT $pid; wait $pid; echo exit=$? pid=$pid");
  INFO(r.output);
  CHECK(r.output.find("exit=130") != std::string::npos);
  CHECK(r.output.find("second=2") != std::string::npos);
  std::smatch m;
  REQUIRE(std::regex_search(r.output, m, std::regex("pid=([0-9]+)")));
  CHECK(r.output.find("is in use by another xformer train (pid " + m[1].str() + ")") != std::string::npos);
  CHECK(fs::exists(fs::path(run) / "checkpoints" / "last.pt"));
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

TEST_CASE("music: train, eval and sample the tiny config end to end", "[cli][e2e][music]") {
  TempDir tmp("cli_music");
  // The training folder: the fixture's pieces plus a truncated file, which must be skipped.
  fs::copy(source_path("tests/data/music/train"), tmp.str("train"));
  fs::copy_file(source_path("tests/data/music/corrupt/truncated.mid"), tmp.str("train/truncated.mid"));
  const std::string run = tmp.str("run");
  auto r = run_xformer("train --config configs/music/tiny.json --run-dir '" + run +
                       "' --set task.train='" + tmp.str("train") + "' --set train.max_steps=60");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("truncated.mid") != std::string::npos);
  CHECK(r.output.find("1 unreadable files skipped") != std::string::npos);
  auto train = read_metrics(run, "train");
  REQUIRE(train.size() == 6);
  CHECK(train.back()["loss"].get<double>() < 0.85 * train.front()["loss"].get<double>());
  auto valid = read_metrics(run, "valid");
  check_metrics_declared(run);
  REQUIRE(valid.size() == 3);
  CHECK(valid.back()["nll"].get<double>() < valid.front()["nll"].get<double>());

  r = run_xformer("eval --run '" + run + "' --split test");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto test = read_metrics(run, "test");
  REQUIRE(test.size() == 1);
  // NLL per event in nats, below the uniform distribution's log(391).
  CHECK(test[0]["nll"].get<double>() < std::log(391.0));

  r = run_xformer("sample --run '" + run + "' --temperature 0.9 --num 2 --length 80 --seed 3 --out '" +
                  tmp.str("out") + "' --primer tests/data/music/test/piece_01.mid");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  for (const char* f : {"out/sample_1.mid", "out/sample_2.mid"}) {
    auto m = xformer::data::read_midi(tmp.str(f));
    CHECK(m.notes.size() > 10);  // the primer's notes at least
  }
  CHECK(run_xformer("sample --run '" + run + "' --beam 2").exit_code == 2);
  // --length counts the events generated (EOS, which the model never puts right after BOS, aside).
  r = run_xformer("sample --run '" + run + "' --length 1 --out '" + tmp.str("one") + "'");
  INFO(r.output);
  CHECK(r.output.find("sample_1.mid (1 events") != std::string::npos);

  // The attention page of the first sample: 2 heads of the tiny model's last layer.
  r = run_xformer("sample --run '" + run + "' --length 40 --out '" + tmp.str("out") + "' --attention '" +
                  tmp.str("att.html") + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  std::ifstream page_in(tmp.str("att.html"));
  const std::string page((std::istreambuf_iterator<char>(page_in)), {});
  CHECK(page.find("\"heads\":2") != std::string::npos);
  CHECK(page.find("\"BOS\"") != std::string::npos);
  CHECK(run_xformer("sample --run '" + run + "' --attention x.html --attention-layer 5").exit_code == 2);

  // --wav renders audio where FluidSynth and a soundfont are installed, and says so otherwise.
  r = run_xformer("sample --run '" + run + "' --length 20 --wav --out '" + tmp.str("wav") + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK((fs::exists(tmp.str("wav/sample_1.wav")) || r.output.find("--wav: ") != std::string::npos));

  // Absolute positions cannot go past model.max_positions: refused before sampling starts.
  const std::string abs_run = tmp.str("absolute");
  r = run_xformer("train --config configs/music/tiny.json --run-dir '" + abs_run +
                  "' --set model.attention=absolute --set train.max_steps=2 --set train.eval_every=0");
  REQUIRE(r.exit_code == 0);
  r = run_xformer("sample --run '" + abs_run + "' --length 600");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("max_positions 512") != std::string::npos);

  // Local attention (blocks of 16) trains, and samples past several blocks over the cache.
  const std::string local_run = tmp.str("local");
  r = run_xformer("train --config configs/music/tiny.json --run-dir '" + local_run +
                  "' --set model.local_block=16 --set train.max_steps=2 --set train.eval_every=0");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  r = run_xformer("sample --run '" + local_run + "' --length 80 --out '" + tmp.str("local_out") + "'");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(fs::exists(tmp.str("local_out/sample_1.mid")));
  CHECK(run_xformer("train --config configs/music/tiny.json --run-dir '" + tmp.str("bad") +
                    "' --set model.local_block=-1").exit_code == 2);
}

TEST_CASE("image tasks: train, eval and sample the tiny configs end to end", "[cli][e2e][image]") {
  TempDir tmp("cli_image");
  // The training folder: the fixture's pictures plus a truncated PNG, which must be skipped.
  fs::copy(source_path("tests/data/images/train"), tmp.str("train"));
  fs::copy_file(source_path("tests/data/images/corrupt/truncated.png"), tmp.str("train/truncated.png"));
  const std::string run = tmp.str("sr");
  auto r = run_xformer("train --config configs/super_resolution/tiny.json --run-dir '" + run +
                       "' --set task.train='" + tmp.str("train") + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("truncated.png") != std::string::npos);
  CHECK(r.output.find("1 unreadable files skipped") != std::string::npos);
  auto train = read_metrics(run, "train");
  REQUIRE(train.size() == 4);
  CHECK(train.back()["loss"].get<double>() < 0.97 * train.front()["loss"].get<double>());
  auto valid = read_metrics(run, "valid");
  check_metrics_declared(run);
  REQUIRE(valid.size() == 2);
  for (const char* k : {"bits_per_dim", "psnr", "ssim", "bicubic_psnr", "bicubic_ssim"}) CHECK(valid.back().contains(k));
  // bits/dim is the NLL per intensity in bits.
  CHECK(valid.back()["bits_per_dim"].get<double>() ==
        Approx(valid.back()["nll"].get<double>() / std::log(2.0)));
  CHECK(fs::exists(fs::path(run) / "samples" / "valid_step40.png"));

  r = run_xformer("eval --run '" + run + "' --split test");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  REQUIRE(read_metrics(run, "test").size() == 1);

  // Samples at each default temperature, and the grid; an HR-size input is downsampled first.
  r = run_xformer("sample --run '" + run + "' --num 2 --seed 3 --out '" + tmp.str("out") + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  for (const char* f : {"out/grid.png", "out/sample_1_t0.80_1.png", "out/sample_2_t1.00_2.png"})
    CHECK(fs::exists(tmp.str(f)));
  auto sample = xformer::data::read_image(tmp.str("out/sample_1_t0.90_2.png"));
  CHECK(sample.height == 8);
  CHECK(sample.width == 8);
  // Same seed, same samples.
  REQUIRE(run_xformer("sample --run '" + run + "' --num 2 --seed 3 --out '" + tmp.str("again") + "'").exit_code == 0);
  CHECK(xformer::data::read_image(tmp.str("again/sample_1_t0.90_2.png")).pixels == sample.pixels);
  r = run_xformer("sample --run '" + run + "' --input tests/data/images/test/picture_01.png --temperature 0.925 --out '" +
                  tmp.str("one") + "'");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(fs::exists(tmp.str("one/sample_1_t0.925_1.png")));  // not rounded to 0.93 (or 0.92)
  CHECK(run_xformer("sample --run '" + run + "' --beam 2").exit_code == 2);

  // Unconditional generation.
  const std::string gen = tmp.str("gen");
  r = run_xformer("train --config configs/image_generation/tiny.json --run-dir '" + gen + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(read_metrics(gen, "valid").back().contains("bits_per_dim"));
  check_metrics_declared(gen);
  r = run_xformer("sample --run '" + gen + "' --num 3 --temperature 1.0 --out '" + tmp.str("gen_out") + "'");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(fs::exists(tmp.str("gen_out/sample_1_t1.00_3.png")));
  // CIFAR-10 binary batches, chosen by a wildcard pattern.
  fs::create_directories(tmp.str("cifar"));
  for (const char* f : {"data_batch_1.bin", "data_batch_2.bin", "test_batch.bin"})
    xformer::testing::write_cifar10_batch(tmp.str(std::string("cifar/") + f), 3);
  r = run_xformer("train --config configs/image_generation/tiny.json --run-dir '" + tmp.str("cifar_run") +
                  "' --set train.max_steps=2 --set task.train='" + tmp.str("cifar/data_batch_*.bin") +
                  "' --set task.valid='" + tmp.str("cifar/test_batch.bin") + "'");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("train: 6 images from") != std::string::npos);
  CHECK(r.output.find("valid: 3 images from") != std::string::npos);

  // Config mistakes are usage errors.
  CHECK(run_xformer("train --config configs/super_resolution/tiny.json --run-dir '" + tmp.str("bad1") +
                    "' --set task.scale=3").exit_code == 2);
  CHECK(run_xformer("train --config configs/super_resolution/tiny.json --run-dir '" + tmp.str("bad2") +
                    "' --set model.encoder_layers=0").exit_code == 2);
}

TEST_CASE("classification: train, eval, sample and model stats end to end", "[cli][e2e][classification]") {
  TempDir tmp("cli_classification");
  const std::string run = tmp.str("run");
  auto r = run_xformer("train --config configs/classification/tiny.json --run-dir '" + run + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto train = read_metrics(run, "train");
  REQUIRE(train.size() == 6);
  CHECK(train.back()["loss"].get<double>() < 0.8 * train.front()["loss"].get<double>());
  auto valid = read_metrics(run, "valid");
  check_metrics_declared(run);
  REQUIRE(valid.size() == 2);
  CHECK(valid.back()["accuracy"].get<double>() > 0.3);  // 10 classes: chance is 0.1
  CHECK(valid.back()["top5_accuracy"].get<double>() >= valid.back()["accuracy"].get<double>());
  CHECK(valid.back()["error"].get<double>() == Approx(1 - valid.back()["accuracy"].get<double>()));

  r = run_xformer("eval --run '" + run + "' --split test");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto test = read_metrics(run, "test");
  REQUIRE(test.size() == 1);
  // The confusion matrix: 10 rows under a header, counts adding up to the 100 test images, its
  // diagonal the accuracy.
  std::ifstream confusion(fs::path(run) / "samples" / "test.confusion.tsv");
  REQUIRE(confusion.good());
  std::string line;
  std::getline(confusion, line);
  int rows = 0, total = 0, diagonal = 0;
  while (std::getline(confusion, line)) {
    std::istringstream cells(line);
    std::string name;
    cells >> name;
    for (int j = 0, n; cells >> n; ++j) total += n, diagonal += j == rows ? n : 0;
    ++rows;
  }
  CHECK(rows == 10);
  CHECK(total == 100);
  CHECK(diagonal == Approx(100 * test[0]["accuracy"].get<double>()));

  r = run_xformer("sample --run '" + run + "' --num 3 --top-k 2 --out '" + tmp.str("pred.tsv") + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  std::ifstream pred(tmp.str("pred.tsv"));
  std::vector<std::string> lines;
  while (std::getline(pred, line)) lines.push_back(line);
  REQUIRE(lines.size() == 4);
  CHECK(lines[1].rfind("test[0]\t7\t", 0) == 0);  // MNIST's first test digit is a 7
  // An image file is classified too (converted to grey and resized to 14x14).
  r = run_xformer("sample --run '" + run + "' --input tests/data/images/test/picture_01.png");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("picture_01.png\t") != std::string::npos);
  CHECK(run_xformer("sample --run '" + run + "' --temperature 1").exit_code == 2);

  // Model statistics without data: the SASA paper's ResNet-26 at ImageNet size.
  r = run_xformer("info --config configs/classification/tiny.json --model-stats --set task.size=224 "
                  "--set task.channels=3 --set task.classes=1000 --set model.width=64 --set model.stem_width=64 "
                  "--set model.small_images=false --set model.heads=8 --set model.kernel=7 --set model.stem_kernel=4 "
                  "--set model.stem_mixtures=4 --set task.train=/nonexistent");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("(10.") != std::string::npos);  // 10.3M parameters
  CHECK(r.output.find("at 224x224") != std::string::npos);
  CHECK(run_xformer("info --model-stats").exit_code == 2);
  CHECK(run_xformer("train --config configs/classification/tiny.json --run-dir '" + tmp.str("bad") +
                    "' --set model.depth=34").exit_code == 2);
  CHECK(run_xformer("train --config configs/classification/tiny.json --run-dir '" + tmp.str("bad2") +
                    "' --set model.heads=3").exit_code == 2);
}

TEST_CASE("classification: resume with augmentation reproduces the same losses", "[cli][resume][classification]") {
  TempDir tmp("cli_classification_resume");
  // Random crops and flips on, checkpoint mid-epoch (13 batches of 32 per epoch of 400).
  check_exact_resume(tmp.str(), [](const std::string& run) {
    return "--config configs/classification/tiny.json --set task.crop_padding=2 --set task.horizontal_flip=true"
           " --set train.log_every=1 --set train.eval_every=0 --set train.save_every=9 --run-dir '" + run + "'";
  }, 9, 18);
}

TEST_CASE("detection: train, eval and sample the tiny config end to end", "[cli][e2e][detection]") {
  TempDir tmp("cli_detection");
  const std::string run = tmp.str("run");
  auto r = run_xformer("train --config configs/detection/tiny.json --run-dir '" + run + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto train = read_metrics(run, "train");
  REQUIRE(train.size() == 4);
  CHECK(train.back()["loss"].get<double>() < 0.7 * train.front()["loss"].get<double>());
  auto valid = read_metrics(run, "valid");
  check_metrics_declared(run);
  REQUIRE(valid.size() == 2);
  for (const char* k : {"map", "ap50", "ap75", "ap_small", "ap_medium", "ap_large"}) CHECK(valid.back().contains(k));
  CHECK(valid.back()["ap50"].get<double>() > valid.front()["ap50"].get<double>());
  CHECK(valid.back()["ap50"].get<double>() >= valid.back()["map"].get<double>());

  r = run_xformer("eval --run '" + run + "' --split test");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  REQUIRE(read_metrics(run, "test").size() == 1);
  // Detections in COCO's results format, with the dataset's category ids (1..10).
  std::ifstream results(fs::path(run) / "samples" / "test.detections.json");
  REQUIRE(results.good());
  const auto found = nlohmann::json::parse(results);
  REQUIRE(!found.empty());
  CHECK(found[0]["category_id"].get<int>() >= 1);
  CHECK(found[0]["bbox"].size() == 4);

  r = run_xformer("sample --run '" + run + "' --num 2 --out '" + tmp.str("out") + "'");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(xformer::data::read_image(tmp.str("out/000001.png")).width == 32);
  CHECK(fs::exists(tmp.str("out/detections.json")));
  r = run_xformer("sample --run '" + run + "' --input tests/data/detection/valid --out '" + tmp.str("dir") + "'");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(fs::exists(tmp.str("dir/000008.png")));
  CHECK(run_xformer("sample --run '" + run + "' --temperature 1").exit_code == 2);

  // Broken annotations are named; config mistakes are usage errors.
  std::ofstream(tmp.str("bad.json")) << R"({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [)"
                                     << R"({"id": 7, "image_id": 2, "category_id": 1, "bbox": [0, 0, 4, 4]}],)"
                                     << R"( "categories": [{"id": 1, "name": "x"}]})";
  r = run_xformer("train --config configs/detection/tiny.json --run-dir '" + tmp.str("bad") + "' --set task.train='" +
                  tmp.str("bad.json") + "'");
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("annotation 7 refers to unknown image 2") != std::string::npos);
  CHECK(run_xformer("train --config configs/detection/tiny.json --run-dir '" + tmp.str("bad2") +
                    "' --set model.backbone=vgg").exit_code == 2);
}
