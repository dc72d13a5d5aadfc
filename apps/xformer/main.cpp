// xformer: one binary with verbs (train, eval, sample, info, sweep). Errors reach the user as one
// line and an exit code: 2 for usage/config mistakes, 1 for runtime failures, 130 when
// interrupted after saving.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <new>
#include <string>

#include "verbs.h"
#include "xformer/core/error.h"
#include "xformer/core/logging.h"
#include "xformer/core/registry.h"
#include "xformer/core/runtime.h"

namespace {
// A failed allocation (LibTorch's CPU or CUDA allocator, or operator new), as one line that
// says what to make smaller; `message` is the allocator's own ("" for std::bad_alloc).
std::string out_of_memory(const std::string& message) {
  std::string size;
  const std::string cpu = "you tried to allocate ", cuda = "Tried to allocate ";
  if (const auto at = message.find(cpu); at != std::string::npos) {
    const double bytes = std::atof(message.c_str() + at + cpu.size());
    size = bytes >= 1e9 ? fmt::format(" (an allocation of {:.1f} GB failed)", bytes / 1e9)
                        : fmt::format(" (an allocation of {:.1f} MB failed)", bytes / 1e6);
  } else if (const auto at = message.find(cuda); at != std::string::npos) {  // "... 2.00 GiB (GPU 0; ..." or "... 2.00 GiB. GPU 0 ..."
    const auto begin = at + cuda.size();
    const auto end = std::min(message.find(" (", begin), message.find(". ", begin));
    size = " (an allocation of " + message.substr(begin, end == std::string::npos ? std::string::npos : end - begin) + " failed)";
  }
  return "out of memory" + size +
         ": make the batch (task.max_tokens, task.batch_size), the model or what you asked for (--num, --length, "
         "task.beam, image sizes) smaller";
}

bool is_out_of_memory(const std::string& message) {
  return message.find("can't allocate memory") != std::string::npos ||
         message.find("out of memory") != std::string::npos;
}
}  // namespace

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
    const std::string message = e.what_without_backtrace();
    if (is_out_of_memory(message)) {
      spdlog::debug("{}", message);  // the allocator's own figures, with --verbose
      spdlog::error("{}", out_of_memory(message));
    } else {
      spdlog::error("{}", message);
    }
    return kExitFailure;
  } catch (const std::bad_alloc&) {
    spdlog::error("{}", out_of_memory(""));
    return kExitFailure;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return kExitFailure;
  }
}
