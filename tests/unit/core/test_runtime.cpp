// Runtime settings: the thread defaults and the OpenBLAS kernel choice that main() makes.
#include <cstdlib>

#include "test_support.h"
#include "xformer/core/runtime.h"

TEST_CASE("thread defaults: one LibTorch thread, explicit values win", "[core][runtime]") {
  const int before = torch::get_num_threads();
  xformer::configure_threads(0, 0);
  CHECK(torch::get_num_threads() == 1);
  xformer::configure_threads(2, 1);
  CHECK(torch::get_num_threads() == 2);
  torch::set_num_threads(before);
}

TEST_CASE("OpenBLAS never runs its generic Prescott kernels on an AVX2 CPU", "[core][runtime]") {
  // tests/main.cpp calls ensure_fast_blas_kernels() like the binary does; unless the user
  // chose the kernels, a CPU with AVX2 must not be left on the SSE3 fallback.
  const std::string core = xformer::blas_core_name();
  const bool user_choice = std::getenv("OPENBLAS_CORETYPE") && !std::getenv("XFORMER_BLAS_RESTARTED");
  if (core.empty() || !__builtin_cpu_supports("avx2") || user_choice) {
    SUCCEED("not OpenBLAS, no AVX2, or kernels chosen by the user");
    return;
  }
  INFO("OpenBLAS kernels: " << core);
  CHECK(core != "Prescott");
}
