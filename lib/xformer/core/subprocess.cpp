#include "xformer/core/subprocess.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>

extern char** environ;

#include "xformer/core/error.h"

namespace xformer {

pid_t spawn_process(const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty()) throw Error("spawn_process: empty argument vector");
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    bool replaced = false;
    for (const auto& kv : options.env) replaced |= entry.rfind(kv.first + "=", 0) == 0;
    if (!replaced) env_strings.push_back(entry);
  }
  for (const auto& [k, v] : options.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  int out_fd = -1;
  if (!options.output.empty()) {
    out_fd = open(options.output.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out_fd < 0) throw DataError("cannot open '" + options.output + "' for writing: " + strerror(errno));
  }
  const std::string failed = "cannot execute " + argv[0] + "\n";
  std::cout.flush();  // nothing buffered twice
  std::cerr.flush();
  const pid_t parent = getpid();
  // SIGINT/SIGTERM stay blocked across fork: one that reaches the child before execve would run
  // our handler there (which only notes it) and be lost when execve resets the handlers. The
  // child resets caught signals to their default first, then unblocks: a pending one then acts as
  // it would have right after execve.
  sigset_t stop_signals, old_mask;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, &old_mask);
  const pid_t pid = fork();
  if (pid < 0) {
    const int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    if (out_fd >= 0) close(out_fd);
    throw Error(std::string("cannot start '") + argv[0] + "': " + strerror(fork_errno));
  }
  if (pid == 0) {
    for (int sig : {SIGINT, SIGTERM}) {
      struct sigaction current {};
      if (sigaction(sig, nullptr, &current) == 0 && current.sa_handler != SIG_IGN) signal(sig, SIG_DFL);
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    if (options.own_process_group) setpgid(0, 0);
    if (options.terminate_with_parent) {
      // If we die (even by SIGKILL), the child gets SIGTERM: it saves and stops rather than
      // training on unsupervised, out of reach of Ctrl-C.
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(kExitInterrupted);  // we died before prctl took effect
    }
    // The channel first, before 0-2 are replaced (it may be one of them if ours were closed).
    // dup2 onto 3 clears close-on-exec there; the same descriptor needs an explicit clear.
    if (options.channel_fd == 3) fcntl(3, F_SETFD, 0);
    else if (options.channel_fd >= 0) dup2(options.channel_fd, 3);
    if (out_fd >= 0) {
      dup2(out_fd, STDOUT_FILENO);
      dup2(out_fd, STDERR_FILENO);
    }
    if (options.stdout_to_stderr) dup2(STDERR_FILENO, STDOUT_FILENO);
    const int null = open("/dev/null", O_RDONLY);  // children never read our input
    if (null >= 0) dup2(null, STDIN_FILENO);
#ifdef SYS_close_range
    // Nothing else of ours reaches the child (files a library opened without close-on-exec,
    // the run directory's lock); where the kernel lacks close_range, they are merely inherited.
    syscall(SYS_close_range, options.channel_fd >= 0 ? 4u : 3u, ~0u, 0u);
#endif
    execve(args[0], args.data(), envp.data());
    if (write(STDERR_FILENO, failed.data(), failed.size()) < 0) {}
    _exit(127);
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  if (out_fd >= 0) close(out_fd);
  return pid;
}

std::string self_executable() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) throw Error("cannot find the running program (/proc/self/exe)");
  return std::string(buf, static_cast<size_t>(n));
}

std::string describe_exit_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "stopped (status " + std::to_string(status) + ")";
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return kExitFailure;
}

}  // namespace xformer
