// Child processes started from an argument vector (never a shell string): local ranks of
// `xformer train --nproc N`, and sweep trials.
#pragma once
#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

namespace xformer {

struct SpawnOptions {
  std::vector<std::pair<std::string, std::string>> env;  // added to (or replacing in) ours
  std::string output;  // file for stdout and stderr (appended); "" = share ours
  bool own_process_group = false;  // a terminal's Ctrl-C then reaches only us, not the child
  // The child receives SIGTERM when the thread that started it ends (PR_SET_PDEATHSIG): start
  // such children from the main thread. false: the child outlives us unless it stops itself.
  bool terminate_with_parent = true;
  int channel_fd = -1;             // >= 0: becomes the child's descriptor 3
  bool stdout_to_stderr = false;   // the child's standard output goes to our standard error
};

// Starts argv[0] with argv, its input from /dev/null. Error if it cannot start (the child
// reports exec failures as exit code 127, with a line on its output).
pid_t spawn_process(const std::vector<std::string>& argv, const SpawnOptions& options = {});

// The running program's own file (/proc/self/exe), to start copies of ourselves.
std::string self_executable();

// "exited with code 3", "was killed by signal 9 (Killed)": a waitpid status in words.
std::string describe_exit_status(int status);

// The exit code that reports `status` onwards: its code, or 128 + the signal that killed it.
int exit_code_of(int status);

}  // namespace xformer
