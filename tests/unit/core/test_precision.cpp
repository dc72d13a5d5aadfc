// Precision settings that hold on any machine: train.precision's resolution, autocast being a
// no-op on the CPU, and the fp16 loss scaler's schedule and state.
#include "test_support.h"

#include "xformer/core/error.h"
#include "xformer/core/precision.h"

using namespace xformer;

TEST_CASE("train.precision resolves per device", "[core][precision]") {
  const torch::Device cpu(torch::kCPU), cuda(torch::kCUDA);
  CHECK(resolve_precision("auto", cpu) == Precision::Float32);
  CHECK(resolve_precision("auto", cuda) == Precision::BFloat16);
  CHECK(resolve_precision("fp32", cuda) == Precision::Float32);
  CHECK(resolve_precision("fp16", cuda) == Precision::Float16);
  CHECK(precision_name(Precision::BFloat16) == "bf16");
  // Reduced precision on the CPU is refused with the key and the way out.
  try {
    resolve_precision("bf16", cpu);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.exit_code() == kExitUsage);
    CHECK(std::string(e.what()).find("train.precision 'bf16' needs a CUDA device") != std::string::npos);
  }
  CHECK_THROWS_AS(resolve_precision("fp8", cuda), Error);
}

TEST_CASE("autocast is a no-op on the CPU", "[core][precision]") {
  auto a = torch::randn({4, 8}), b = torch::randn({8, 3});
  AutocastScope scope(Precision::BFloat16, torch::Device(torch::kCPU));
  CHECK(!autocast_type(torch::Device(torch::kCPU)).has_value());
  CHECK(torch::mm(a, b).scalar_type() == torch::kFloat);
}

TEST_CASE("loss scaler halves on overflow, grows after good updates, and resumes", "[core][precision]") {
  LossScaler off(false);
  off.update(false);
  CHECK(off.scale() == 1.0);

  LossScaler s(true, 1024.0, /*growth_interval=*/3);
  s.update(false);
  CHECK(s.scale() == 512.0);
  s.update(true), s.update(true);
  CHECK(s.scale() == 512.0);
  s.update(true);  // third good update in a row
  CHECK(s.scale() == 1024.0);
  s.update(true);
  LossScaler restored(true, 1.0, 3);
  restored.load_state(s.state());
  CHECK(restored.scale() == 1024.0);
  s.update(true), restored.update(true);  // the good-update count travelled too
  s.update(true), restored.update(true);
  CHECK(s.scale() == 2048.0);
  CHECK(restored.scale() == 2048.0);
  // Never below 1, never above 2^24.
  LossScaler low(true, 1.0, 1);
  low.update(false);
  CHECK(low.scale() == 1.0);
  LossScaler high(true, 16777216.0, 1);
  high.update(true);
  CHECK(high.scale() == 16777216.0);
}
