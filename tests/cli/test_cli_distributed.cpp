// Multi-process training end to end: two local ranks over Gloo train the same model as one
// process with the same config, resume exactly, and fail fast when a rank dies or hangs.
#include <chrono>
#include <iterator>
#include <regex>

#include "cli/cli_helpers.h"
#include "test_support.h"
#include "xformer/train/distributed.h"

using namespace xformer::testing;
namespace fs = std::filesystem;

namespace {

// Quick runs: every step logged, no BLEU, no evaluation until the end.
const std::string kQuick =
    " --set train.log_every=1 --set train.eval_every=0 --set train.save_every=0 --set task.eval_bleu=false"
    " --set train.update_freq=2 --set task.max_tokens=400 --set train.dist_timeout=60";

void check_same_losses(const std::vector<nlohmann::json>& a, const std::vector<nlohmann::json>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("line " << i << ": " << a[i].dump() << " vs " << b[i].dump());
    CHECK(a[i]["step"] == b[i]["step"]);
    // Equal up to the order in which gradients are summed (two ranks add two batches' gradients
    // after backward, one process accumulates them during it).
    CHECK(b[i]["loss"].get<double>() == Approx(a[i]["loss"].get<double>()).epsilon(1e-5));
  }
}

}  // namespace

TEST_CASE("two ranks over Gloo train as one process with the same effective batch", "[cli][distributed]") {
  if (!xformer::train::distributed_available()) return;
  TempDir tmp("cli_dist");
  auto one = run_xformer("train " + tiny_args(tmp.str("one"), tmp.str("spm")) + kQuick + " --set train.max_steps=6");
  INFO(one.output);
  REQUIRE(one.exit_code == 0);
  auto two = run_xformer("train --nproc 2 " + tiny_args(tmp.str("two"), tmp.str("spm")) + kQuick +
                         " --set train.max_steps=6");
  INFO(two.output);
  REQUIRE(two.exit_code == 0);
  CHECK(two.output.find("rank 0 of 2 (gloo backend") != std::string::npos);
  check_same_losses(read_metrics(tmp.str("one"), "train"), read_metrics(tmp.str("two"), "train"));
  check_same_losses(read_metrics(tmp.str("one"), "valid"), read_metrics(tmp.str("two"), "valid"));
  // The tokens of an update are those of the whole update, not of one rank's share.
  CHECK(read_metrics(tmp.str("two"), "train").size() == 6);
  // Only rank 0 writes: one metrics line per step, one config, one log, one TensorBoard file.
  CHECK(fs::exists(tmp.str("two") + "/checkpoints/last.pt"));
  CHECK(std::distance(fs::directory_iterator(tmp.str("two") + "/tensorboard"), fs::directory_iterator()) == 1);

  SECTION("recomputed layers: the gradient buckets, filled inside the layers' own backward, still add up") {
    auto recomputed = run_xformer("train --nproc 2 " + tiny_args(tmp.str("recomputed"), tmp.str("spm")) + kQuick +
                                  " --set train.max_steps=6 --set train.recompute_activations=true"
                                  " --set train.dist_bucket_mb=0.01");  // many buckets, sent during backward
    INFO(recomputed.output);
    REQUIRE(recomputed.exit_code == 0);
    check_same_losses(read_metrics(tmp.str("one"), "train"), read_metrics(tmp.str("recomputed"), "train"));
  }

  SECTION("resume of a two-rank run continues exactly (dropout on: every rank's RNG restored)") {
    check_exact_resume(tmp.str("resume"), [&](const std::string& run) {
      return "--nproc 2 " + tiny_args(run, tmp.str("spm")) + kQuick + " --set model.dropout=0.1";
    }, 4, 8, "--nproc 2");
  }
}

TEST_CASE("multi-process mistakes are config errors", "[cli][distributed]") {
  if (!xformer::train::distributed_available()) return;
  TempDir tmp("cli_dist_err");
  auto r = run_xformer("train --nproc 2 " + tiny_args(tmp.str("run"), tmp.str("spm")) +
                       " --set train.max_steps=2 --set train.update_freq=3");
  INFO(r.output);
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("train.update_freq (3) must be a multiple of the number of ranks (2)") != std::string::npos);
  auto bad = run_shell("WORLD_SIZE=2 RANK=x '" + std::string(XFORMER_BINARY) + "' train " +
                       tiny_args(tmp.str("run2"), tmp.str("spm")));
  CHECK(bad.exit_code == 2);
  CHECK(bad.output.find("RANK='x'") != std::string::npos);
}

TEST_CASE("a killed or hung rank makes the job fail fast, naming the rank", "[cli][distributed]") {
  if (!xformer::train::distributed_available()) return;
  TempDir tmp("cli_dist_fail");
  // Starts a long two-rank run, waits for its first steps, then runs `action` (a shell snippet
  // that sees $pid, the launcher, and $rank1); reports the launcher's exit code, the seconds
  // it took to end after the action, and its log.
  auto run_and = [&](const std::string& name, const std::string& action, int timeout) {
    const std::string run = tmp.str(name), log = tmp.str(name + ".log");
    return run_shell("'" + std::string(XFORMER_BINARY) + "' train --nproc 2 " + tiny_args(run, tmp.str("spm")) +
                     kQuick + " --set train.max_steps=100000 --set train.dist_timeout=" + std::to_string(timeout) +
                     " > " + log + " 2>&1 & pid=$!; "
                     "for i in $(seq 600); do [ -s '" + run + "/metrics.jsonl' ] && break; sleep 0.1; done; "
                     "rank1=$(sed -n 's/.*(pids [0-9]*\\.\\.\\([0-9]*\\),.*/\\1/p' " + log + "); "
                     // No rank pid in the log (the job never started training): stop it, and
                     // let the checks below fail, rather than wait on a 100000-step run.
                     "[ -n \"$rank1\" ] || { echo 'no rank 1 pid in the log'; kill -TERM $pid; }; "
                     "start=$(date +%s); " + action + "; wait $pid; code=$?; "
                     "echo exit=$code seconds=$(( $(date +%s) - start )); cat " + log);
  };
  auto seconds = [](const std::string& output) {
    std::smatch m;
    REQUIRE(std::regex_search(output, m, std::regex("seconds=([0-9]+)")));
    return std::stoi(m[1]);
  };
  SECTION("killed") {
    auto r = run_and("killed", "kill -KILL $rank1", 60);
    INFO(r.output);
    CHECK(r.output.find("exit=1 ") != std::string::npos);
    CHECK(r.output.find("rank 1 (pid") != std::string::npos);
    CHECK(r.output.find("killed by signal 9") != std::string::npos);
    CHECK(seconds(r.output) < 30);  // at once, not after the 60 s timeout
  }
  SECTION("hung") {
    auto r = run_and("hung", "kill -STOP $rank1", 5);
    INFO(r.output);
    CHECK(r.output.find("exit=1 ") != std::string::npos);
    CHECK(r.output.find("rank 0 of 2") != std::string::npos);  // the survivor's error names itself
    CHECK(r.output.find("dist_timeout = 5 s") != std::string::npos);
    CHECK(seconds(r.output) < 40);
  }
  SECTION("a second Ctrl-C stops a job whose rank hangs, without waiting for the timeout") {
    auto r = run_and("twice", "kill -STOP $rank1; kill -INT $pid; sleep 1; kill -INT $pid", 600);
    INFO(r.output);
    CHECK(r.output.find("exit=130 ") != std::string::npos);
    CHECK(seconds(r.output) < 60);
  }
  SECTION("ranks stop (and save) when their launcher is killed") {
    const std::string run = tmp.str("orphans");
    auto r = run_and("orphans", "kill -KILL $pid; sleep 0.5; for i in $(seq 300); do "
                     "kill -0 $rank1 2>/dev/null || break; sleep 0.1; done; "
                     "kill -0 $rank1 2>/dev/null && echo rank1=alive || echo rank1=gone", 60);
    INFO(r.output);
    CHECK(r.output.find("rank1=gone") != std::string::npos);
    CHECK(fs::exists(run + "/checkpoints/last.pt"));
    // The run is free again: no trainer holds its lock.
    auto again = run_xformer("train --resume --run-dir '" + run + "' --set train.max_steps=" +
                             std::to_string(read_metrics(run, "train").back()["step"].get<int>() + 1));
    INFO(again.output);
    CHECK(again.exit_code == 0);
  }
}

TEST_CASE("a rank with no batch in an update still sums the same statistics", "[cli][distributed]") {
  if (!xformer::train::distributed_available()) return;
  TempDir tmp("cli_dist_short");
  // One batch per epoch and one epoch: the only update gives rank 1 nothing to compute.
  const std::string one_epoch = kQuick +
                                " --set train.max_steps=0 --set train.max_epochs=1 --set task.max_tokens=100000"
                                " --set task.max_sentences=100000";
  auto r = run_xformer("train --nproc 2 " + tiny_args(tmp.str("run"), tmp.str("spm")) + one_epoch);
  INFO(r.output);
  CHECK(r.exit_code == 0);
  // Rank 0 computes the batch as one process would (same seed, same dropout): the summed loss
  // and gradient are that process's, divided by the same count.
  auto one = run_xformer("train " + tiny_args(tmp.str("one"), tmp.str("spm")) + one_epoch);
  INFO(one.output);
  REQUIRE(one.exit_code == 0);
  const auto ranks = read_metrics(tmp.str("run"), "train"), single = read_metrics(tmp.str("one"), "train");
  REQUIRE(ranks.size() == 1);
  REQUIRE(single.size() == 1);
  CHECK(ranks[0]["loss"].get<double>() == Approx(single[0]["loss"].get<double>()).epsilon(1e-5));
  CHECK(ranks[0]["gnorm"].get<double>() == Approx(single[0]["gnorm"].get<double>()).epsilon(1e-4));
  CHECK(ranks[0]["nll"].get<double>() == Approx(single[0]["nll"].get<double>()).epsilon(1e-5));
}
