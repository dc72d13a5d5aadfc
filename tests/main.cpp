// Test main: registers the built-in tasks once, then runs Catch2.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "xformer/core/logging.h"
#include "xformer/core/registry.h"
#include "xformer/core/runtime.h"

int main(int argc, char* argv[]) {
  xformer::ensure_fast_blas_kernels(argv);  // test the kernels users get
  xformer::init_logging();
  xformer::register_builtins();
  return Catch::Session().run(argc, argv);
}
