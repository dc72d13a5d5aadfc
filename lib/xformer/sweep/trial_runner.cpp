#include "xformer/sweep/trial_runner.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

#include "xformer/core/error.h"
#include "xformer/core/subprocess.h"
#include "xformer/sweep/results_table.h"
#include "xformer/sweep/sweep_state.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace xformer::sweep {

namespace {

volatile sig_atomic_t g_stop_signal = 0;
extern "C" void on_sweep_signal(int sig) { g_stop_signal = sig; }

std::string now_iso() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Starts argv[0] with `argv`, stdout and stderr appended to `log`, in its own process group
// (so that a Ctrl-C on the terminal reaches the sweep, which passes it on exactly once).
pid_t spawn(const std::vector<std::string>& argv, const std::string& log) {
  SpawnOptions o;
  o.output = log;
  o.own_process_group = true;
  return spawn_process(argv, o);
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

void append_log(const std::string& log, const std::string& line) {
  std::ofstream out(log, std::ios::app);
  out << line << "\n";
}

struct Running {
  const Trial* trial = nullptr;
  std::string phase;  // "train" or "eval"
  std::chrono::steady_clock::time_point start;
};

}  // namespace

bool sweep_sets_threads(const SweepSpec& spec, const json& resolved_first) {
  auto is_thread_key = [](const std::string& k) { return k == "train.threads" || k == "train.blas_threads"; };
  for (const auto& [k, v] : spec.set)
    if (is_thread_key(k)) return true;
  for (const auto& a : spec.axes)
    if (is_thread_key(a)) return true;
  if (resolved_first.is_object() && resolved_first.contains("train")) {
    const auto& t = resolved_first["train"];
    if (t.value("blas_threads", 0) != 0 || t.value("threads", 0) != 0) return true;
  }
  return false;
}

std::vector<std::string> train_command(const SweepSpec& spec, const Trial& trial, const RunOptions& opt,
                                       const std::string& start) {
  std::vector<std::string> argv = {opt.binary, "train", "--config", spec.base, "--run-dir",
                                   run_path(spec.output, trial.name)};
  for (const auto& s : trial_overrides(spec, trial)) {
    argv.push_back("--set");
    argv.push_back(s);
  }
  if (opt.threads > 0) {
    argv.push_back("--set");
    argv.push_back("train.blas_threads=" + std::to_string(opt.threads));
  }
  if (!start.empty()) argv.push_back(start);
  return argv;
}

std::vector<std::string> eval_command(const SweepSpec& spec, const Trial& trial, const RunOptions& opt) {
  if (!spec.eval.enabled) return {};
  return {opt.binary, "eval", "--run", run_path(spec.output, trial.name), "--split", spec.eval.split,
          "--checkpoint", spec.eval.checkpoint};
}

std::string start_flag(const std::string& run_dir) {
  std::error_code ec;
  if (fs::exists(fs::path(run_dir) / "checkpoints" / "last.pt", ec)) return "--resume";
  if (fs::is_directory(run_dir, ec) && !fs::is_empty(run_dir, ec)) return "--force";
  return "";
}

std::string shell_quote(const std::string& arg) {
  if (!arg.empty() && arg.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                            "0123456789_-.,/:=+@%") == std::string::npos)
    return arg;
  std::string out = "'";
  for (char c : arg) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

std::string command_line(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + shell_quote(a);
  return s;
}

int run_sweep(const SweepSpec& spec, const RunOptions& opt) {
  fs::create_directories(fs::path(spec.output) / "logs");
  fs::create_directories(fs::path(spec.output) / "trials");
  write_plan(spec);

  std::deque<const Trial*> queue;
  int skipped = 0;
  std::map<int, json> status;  // by trial index
  // What "done" included: an evaluation turned on or changed since is still to run (a re-run
  // then resumes the finished training, which has nothing to do, and evaluates).
  const json eval = spec.eval.enabled ? json{{"split", spec.eval.split}, {"checkpoint", spec.eval.checkpoint}} : json();
  for (const auto& t : spec.trials) {
    if (opt.only_trial >= 0 && t.index != opt.only_trial) continue;
    json st = read_status(spec.output, t.name);
    const json overrides = trial_overrides(spec, t);
    // Done with the same overrides and the same resolved config (an edited base file is another
    // config: the trial then runs again, resuming, as after a change to the overrides).
    if (st.value("status", "") == kDone && st.value("overrides", json()) == overrides &&
        st.value("config", t.config_digest) == t.config_digest && st.value("eval", eval) == eval) {
      ++skipped;
      spdlog::info("trial {} {}: already done, skipped", t.index, t.name);
      continue;
    }
    // A new invocation gets a fresh budget of attempts (and a fresh status: the trial's log keeps
    // the history of earlier invocations).
    st = {{"name", t.name}, {"index", t.index}, {"status", kPending}, {"attempts", 0},
          {"exit_codes", json::array()}, {"overrides", overrides}, {"config", t.config_digest}, {"eval", eval},
          {"log", log_path(spec.output, t.name)},
          {"run_dir", run_path(spec.output, t.name)}};
    status[t.index] = st;
    queue.push_back(&t);
  }
  const int total = static_cast<int>(queue.size());
  spdlog::info("sweep {}: {} trial(s) to run, {} skipped (already done); {} at a time{}", spec.name, total, skipped,
               opt.jobs, opt.threads > 0 ? ", " + std::to_string(opt.threads) + " BLAS thread(s) each" : "");

  g_stop_signal = 0;
  struct sigaction sa {}, old_int {}, old_term {}, old_chld {}, default_chld {};
  sa.sa_handler = on_sweep_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  // Trials are waited for: an ignored SIGCHLD (inherited from a parent) would have the kernel
  // reap them unseen.
  default_chld.sa_handler = SIG_DFL;
  sigemptyset(&default_chld.sa_mask);
  sigaction(SIGCHLD, &default_chld, &old_chld);

  std::map<pid_t, Running> running;
  bool forwarded = false;
  int done = 0, failed = 0, interrupted = 0;

  auto launch = [&](const Trial* t, const std::string& phase) {
    json& st = status[t->index];
    const std::string log = log_path(spec.output, t->name);
    std::vector<std::string> argv;
    if (phase == "train") {
      st["attempts"] = st["attempts"].get<int>() + 1;
      argv = train_command(spec, *t, opt, start_flag(run_path(spec.output, t->name)));
    } else {
      argv = eval_command(spec, *t, opt);
    }
    append_log(log, "=== " + now_iso() + " attempt " + st["attempts"].dump() + ": " + command_line(argv));
    st["status"] = kRunning;
    st["started"] = now_iso();
    st["host"] = host_name();
    st["sweep_pid"] = static_cast<int64_t>(::getpid());
    write_status(spec.output, t->name, st);
    const pid_t pid = spawn(argv, log);
    running[pid] = {t, phase, std::chrono::steady_clock::now()};
    if (phase == "train")
      spdlog::info("trial {} {}: {} (attempt {}, log {})", t->index, t->name,
                   argv.back() == "--resume" ? "resuming" : "started", st["attempts"].get<int>(), log);
  };

  auto finish = [&](const Trial* t, const char* state, int code, double seconds) {
    json& st = status[t->index];
    st["status"] = state;
    st["finished"] = now_iso();
    st["seconds"] = st.value("seconds", 0.0) + seconds;
    if (code >= 0) st["exit_codes"].push_back(code);
    write_status(spec.output, t->name, st);
  };

  while (!queue.empty() || !running.empty()) {
    while (!g_stop_signal && static_cast<int>(running.size()) < opt.jobs && !queue.empty()) {
      const Trial* t = queue.front();
      queue.pop_front();
      launch(t, "train");
    }
    if (g_stop_signal && !forwarded) {
      forwarded = true;
      spdlog::warn("sweep interrupted: asking {} running trial(s) to save and stop", running.size());
      for (const auto& [pid, r] : running) kill(pid, SIGTERM);
    }
    int wstatus = 0;
    const pid_t pid = waitpid(-1, &wstatus, WNOHANG);
    if (pid == 0 || (pid < 0 && errno == EINTR)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (pid < 0) break;  // no children left (should not happen while `running` is non-empty)
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const Running r = it->second;
    running.erase(it);
    const int code = exit_code_of(wstatus);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - r.start).count();
    const Trial* t = r.trial;
    if (code == 0 && r.phase == "train" && spec.eval.enabled && !g_stop_signal) {
      status[t->index]["seconds"] = status[t->index].value("seconds", 0.0) + secs;
      launch(t, "eval");
      continue;
    }
    if (code == 0 && (r.phase == "eval" || !spec.eval.enabled)) {
      ++done;
      finish(t, kDone, code, secs);
      spdlog::info("trial {} {}: done in {:.1f} s", t->index, t->name, status[t->index]["seconds"].get<double>());
      continue;
    }
    if (g_stop_signal || code == kExitInterrupted) {
      ++interrupted;
      finish(t, kInterrupted, code, secs);
      spdlog::warn("trial {} {}: interrupted ({}); a re-run of the sweep resumes it", t->index, t->name, r.phase);
      continue;
    }
    const int attempts = status[t->index]["attempts"].get<int>();
    // A usage or config error (exit 2) would fail the same way again.
    if (code == kExitUsage)
      spdlog::warn("trial {} {}: {} failed with a usage or config error (exit 2): not retried", t->index, t->name,
                   r.phase);
    else if (attempts <= spec.retries) {
      status[t->index]["exit_codes"].push_back(code);
      status[t->index]["status"] = kPending;
      write_status(spec.output, t->name, status[t->index]);
      spdlog::warn("trial {} {}: {} failed with exit code {}; retrying (log {})", t->index, t->name, r.phase, code,
                   log_path(spec.output, t->name));
      queue.push_back(t);
      continue;
    }
    ++failed;
    finish(t, kFailed, code, secs);
    spdlog::error("trial {} {}: {} failed with exit code {} after {} attempt(s); log {}", t->index, t->name, r.phase,
                  code, attempts, log_path(spec.output, t->name));
  }
  // Trials never started because of an interrupt keep their previous status.
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  sigaction(SIGCHLD, &old_chld, nullptr);

  const std::string md = write_results(spec.output);
  if (opt.only_trial < 0) std::cout << md << std::flush;
  spdlog::info("sweep {}: {} done, {} failed, {} interrupted, {} skipped (already done); results in {}", spec.name,
               done, failed, interrupted, skipped, (fs::path(spec.output) / "results.md").string());
  if (g_stop_signal || interrupted > 0) return kExitInterrupted;
  return failed > 0 ? kExitFailure : kExitOk;
}

std::string emit_slurm(const SweepSpec& spec, const std::string& binary) {
  const fs::path out = fs::absolute(spec.output).lexically_normal();
  const fs::path sweep_file = fs::absolute(spec.file).lexically_normal();
  // #SBATCH lines are not shell: sbatch splits them at spaces and expands % in --output.
  if (out.string().find_first_of(" \t\n'\"\\%") != std::string::npos)
    throw ConfigError("usage error: the sweep's output folder '" + out.string() +
                      "' holds a space, quote, backslash or %, which a Slurm script's #SBATCH --output cannot take");
  fs::create_directories(out / "logs");
  const int n = static_cast<int>(spec.trials.size());
  std::string s = "#!/bin/bash\n";
  s += "# Slurm job array of the sweep " + sweep_file.string() + ": " + std::to_string(n) +
       " trial(s), one array task each.\n";
  s += "# Submit with: sbatch " + shell_quote((out / "sweep.slurm").string()) + "\n";
  s += "# Then, at any time: " + shell_quote(binary) + " sweep --summarize " + shell_quote(out.string()) + "\n";
  s += "#SBATCH --job-name=" + sanitize_name("sweep-" + spec.name) + "\n";
  s += "#SBATCH --array=0-" + std::to_string(n - 1) +
       (spec.slurm.max_parallel > 0 ? "%" + std::to_string(spec.slurm.max_parallel) : "") + "\n";
  s += "#SBATCH --ntasks=1\n";
  s += "#SBATCH --cpus-per-task=" + std::to_string(spec.slurm.cpus_per_task) + "\n";
  if (!spec.slurm.mem.empty()) s += "#SBATCH --mem=" + spec.slurm.mem + "\n";
  if (!spec.slurm.time.empty()) s += "#SBATCH --time=" + spec.slurm.time + "\n";
  if (!spec.slurm.partition.empty()) s += "#SBATCH --partition=" + spec.slurm.partition + "\n";
  if (!spec.slurm.account.empty()) s += "#SBATCH --account=" + spec.slurm.account + "\n";
  if (!spec.slurm.gpus.empty()) s += "#SBATCH --gpus-per-task=" + spec.slurm.gpus + "\n";
  s += "#SBATCH --output=" + (out / "logs" / "slurm-%A_%a.out").string() + "\n";
  // SIGTERM to the batch shell (which exec's the sweep) two minutes before the time limit: the
  // trial saves a checkpoint, and resubmitting the script resumes it.
  s += "#SBATCH --signal=B:TERM@120\n\n";
  s += "set -euo pipefail\n";
  for (const auto& line : spec.slurm.setup) s += line + "\n";
  s += "cd " + shell_quote(fs::current_path().string()) + "\n";
  s += "exec " + shell_quote(binary) + " sweep --config " + shell_quote(sweep_file.string()) +
       " --trial \"$SLURM_ARRAY_TASK_ID\"\n";
  const std::string path = (out / "sweep.slurm").string();
  write_file_atomically(path, s);
  fs::permissions(path, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
  return path;
}

}  // namespace xformer::sweep
