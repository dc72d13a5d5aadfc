// Test main: registers the built-in tasks once, then runs Catch2. A crash prints a backtrace:
// Catch2 reports the fatal signal, restores the handler found at start and re-raises it.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <execinfo.h>
#include <unistd.h>

#include <csignal>

#include "xformer/core/logging.h"
#include "xformer/core/registry.h"
#include "xformer/core/runtime.h"

namespace {

void print_backtrace_and_die(int sig) {
  void* frames[64];
  const int n = backtrace(frames, 64);
  const char header[] = "\nfatal signal; backtrace:\n";
  (void)!write(STDERR_FILENO, header, sizeof(header) - 1);
  backtrace_symbols_fd(frames, n, STDERR_FILENO);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

}  // namespace

int main(int argc, char* argv[]) {
  for (int sig : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, print_backtrace_and_die);
  xformer::ensure_fast_blas_kernels(argv);  // test the kernels users get
  xformer::init_logging();
  xformer::register_builtins();
  return Catch::Session().run(argc, argv);
}
