// xformer: one binary with verbs (train, eval, sample, info, sweep). Errors reach the user as one
// line and an exit code: 2 for usage/config mistakes, 1 for runtime failures, 130 when
// interrupted after saving.
#include <spdlog/spdlog.h>

#include "verbs.h"
#include "xformer/core/error.h"
#include "xformer/core/logging.h"
#include "xformer/core/registry.h"
#include "xformer/core/runtime.h"

int main(int argc, char** argv) {
  using namespace xformer;
  ensure_fast_blas_kernels(argv);
  keep_freed_memory_for_reuse();
  init_logging();
  register_builtins();

  CLI::App app{"xformer: train, evaluate and sample self-attention models"};
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Log debug messages");
  app::Action run;
  app::add_train(app, run);
  app::add_eval(app, run);
  app::add_sample(app, run);
  app::add_info(app, run);
  app::add_sweep(app, run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  init_logging(verbose);
  try {
    return run();
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return e.exit_code();
  } catch (const c10::Error& e) {
    spdlog::error("{}", e.what_without_backtrace());
    return kExitFailure;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return kExitFailure;
  }
}
