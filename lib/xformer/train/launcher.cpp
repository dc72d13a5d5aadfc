#include "xformer/train/launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include "xformer/core/error.h"
#include "xformer/core/subprocess.h"

namespace xformer::train {

namespace {

std::atomic<int> g_signal{0}, g_signal_count{0};
extern "C" void on_launcher_signal(int signal) {
  g_signal.store(signal);
  g_signal_count.fetch_add(1);
}

// A TCP port that is free now on the loopback interface (the kernel picks it).
int free_loopback_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error("cannot open a socket to find a free port");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  close(fd);
  if (!ok) throw Error("cannot find a free TCP port on 127.0.0.1 (set MASTER_PORT)");
  return ntohs(a.sin_port);
}

}  // namespace

int run_local_ranks(int nproc, const std::vector<std::string>& args, std::chrono::seconds grace) {
  if (nproc < 1) throw ConfigError("usage error: --nproc must be at least 1");
  const char* user_port = std::getenv("MASTER_PORT");
  const std::string port = user_port && *user_port ? user_port : std::to_string(free_loopback_port());

  struct sigaction sa {};
  sa.sa_handler = on_launcher_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  std::vector<std::string> argv = {self_executable()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<pid_t> pids(nproc, -1);
  auto signal_alive = [&](int sig) {
    for (pid_t p : pids)
      if (p > 0) kill(p, sig);
  };
  for (int r = 0; r < nproc; ++r) {
    SpawnOptions o;
    o.env = {{"RANK", std::to_string(r)},         {"LOCAL_RANK", std::to_string(r)},
             {"WORLD_SIZE", std::to_string(nproc)}, {"LOCAL_WORLD_SIZE", std::to_string(nproc)},
             {"MASTER_ADDR", "127.0.0.1"},          {"MASTER_PORT", port}};
    o.own_process_group = true;  // a terminal's Ctrl-C reaches the launcher, which passes it on
    try {
      pids[r] = spawn_process(argv, o);
    } catch (const std::exception&) {
      signal_alive(SIGKILL);  // the ranks already started would wait for this one in vain
      for (pid_t p : pids)
        if (p > 0) waitpid(p, nullptr, 0);
      throw;
    }
  }
  spdlog::info("started {} ranks on this machine (pids {}..{}, TCPStore 127.0.0.1:{}); rank 0 writes the run",
               nproc, pids.front(), pids.back(), port);

  int alive = nproc, failed_rank = -1, failed_code = kExitOk, interrupted_ranks = 0;
  int forwarded = 0;  // signals passed on so far
  bool kill_pending = false;  // SIGKILL whoever is left at kill_at
  std::chrono::steady_clock::time_point kill_at;
  while (alive > 0) {
    // Every signal is passed on: the first makes each rank save and stop; a second makes the
    // ranks exit at once (their own rule), and whoever cannot react (stopped, stuck in a
    // collective) is killed after the grace period.
    if (const int count = g_signal_count.load(); count > forwarded) {
      const int sig = g_signal.load();
      if (forwarded == 0)
        spdlog::warn("signal {}: passing it on to the ranks (they save a checkpoint and stop)", sig);
      else
        spdlog::warn("signal {} again: the ranks stop now", sig);
      if (count > 1) {
        signal_alive(SIGCONT);
        if (!kill_pending) kill_at = std::chrono::steady_clock::now() + grace, kill_pending = true;
      }
      signal_alive(sig);
      forwarded = count;
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      int rank = 0;
      while (rank < nproc && pids[rank] != pid) ++rank;
      if (rank == nproc) continue;
      pids[rank] = -1;
      --alive;
      // After a signal, stopping is success: with a checkpoint (130), or killed by the signal
      // itself when it came before the rank was training.
      // After a second signal (stop now), however a rank ends is the stop asked for.
      const bool interrupted = forwarded && ((WIFEXITED(status) && WEXITSTATUS(status) == kExitInterrupted) ||
                                             WIFSIGNALED(status) || forwarded > 1);
      const bool finished = WIFEXITED(status) && WEXITSTATUS(status) == kExitOk;
      const bool ok = finished || interrupted;
      if (!finished && interrupted) ++interrupted_ranks;  // a signal after the last update: finished
      if (!ok && failed_rank < 0) {
        failed_rank = rank;
        failed_code = WIFEXITED(status) ? WEXITSTATUS(status) : kExitFailure;
        spdlog::error("rank {} (pid {}) {}; stopping the other ranks", rank, pid, describe_exit_status(status));
        signal_alive(SIGCONT);  // a stopped rank must run to see the SIGTERM
        signal_alive(SIGTERM);
        kill_at = std::chrono::steady_clock::now() + grace;
        kill_pending = true;
      }
      continue;
    }
    if (kill_pending && std::chrono::steady_clock::now() > kill_at) {
      spdlog::error("{} rank(s) still running {} s later: killing them", alive, grace.count());
      signal_alive(SIGKILL);
      kill_pending = false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (failed_rank >= 0) return failed_code == kExitOk ? kExitFailure : failed_code;
  return interrupted_ranks > 0 ? kExitInterrupted : kExitOk;
}

}  // namespace xformer::train
