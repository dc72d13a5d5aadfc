#include "xformer/core/precision.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <cmath>

#include "xformer/core/error.h"

// LibTorch 2.4 replaced the CUDA-only autocast functions with per-device ones.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define XFORMER_DEVICE_AUTOCAST_API 1
#endif

namespace xformer {

namespace {

bool cuda_autocast_enabled() {
#ifdef XFORMER_DEVICE_AUTOCAST_API
  return at::autocast::is_autocast_enabled(at::kCUDA);
#else
  return at::autocast::is_enabled();
#endif
}

torch::ScalarType cuda_autocast_type() {
#ifdef XFORMER_DEVICE_AUTOCAST_API
  return at::autocast::get_autocast_dtype(at::kCUDA);
#else
  return at::autocast::get_autocast_gpu_dtype();
#endif
}

void set_cuda_autocast(bool enabled, torch::ScalarType type) {
#ifdef XFORMER_DEVICE_AUTOCAST_API
  at::autocast::set_autocast_enabled(at::kCUDA, enabled);
  at::autocast::set_autocast_dtype(at::kCUDA, type);
#else
  at::autocast::set_enabled(enabled);
  at::autocast::set_autocast_gpu_dtype(type);
#endif
}

}  // namespace

Precision resolve_precision(const std::string& name, const torch::Device& device) {
  if (name == "auto") return device.is_cuda() ? Precision::BFloat16 : Precision::Float32;
  if (name == "fp32") return Precision::Float32;
  if (name != "bf16" && name != "fp16")
    throw ConfigError("config error: train.precision '" + name +
                      "' is not one of auto, fp32, bf16, fp16");
  if (!device.is_cuda())
    throw ConfigError("config error: train.precision '" + name +
                      "' needs a CUDA device; on the CPU xformer computes in fp32 (use auto or fp32)");
  return name == "bf16" ? Precision::BFloat16 : Precision::Float16;
}

std::string precision_name(Precision p) {
  switch (p) {
    case Precision::BFloat16: return "bf16";
    case Precision::Float16: return "fp16";
    default: return "fp32";
  }
}

void allow_tf32(bool allow) { at::globalContext().setFloat32MatmulPrecision(allow ? "high" : "highest"); }

std::optional<torch::ScalarType> autocast_type(const torch::Device& device) {
  if (device.is_cuda() && cuda_autocast_enabled()) return cuda_autocast_type();
  return std::nullopt;
}

AutocastScope::AutocastScope(Precision precision, const torch::Device& device)
    : cuda_(device.is_cuda()), enables_(precision != Precision::Float32) {
  if (!cuda_) return;
  was_enabled_ = cuda_autocast_enabled();
  was_type_ = cuda_autocast_type();
  if (!enables_) {
    set_cuda_autocast(false, was_type_);
    return;
  }
  set_cuda_autocast(true, precision == Precision::BFloat16 ? torch::kBFloat16 : torch::kHalf);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!cuda_) return;
  // Autocast caches the reduced copies of the weights while it is active; drop them when the
  // outermost scope ends, as the optimizer is about to change the weights.
  if (enables_ && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_cuda_autocast(was_enabled_, was_type_);
}

LossScaler::LossScaler(bool enabled, double initial_scale, int64_t growth_interval)
    : enabled_(enabled), scale_(initial_scale), growth_interval_(growth_interval) {}

void LossScaler::update(bool finite) {
  if (!enabled_) return;
  if (!finite) {
    scale_ = std::max(scale_ / 2, 1.0);
    good_updates_ = 0;
  } else if (++good_updates_ >= growth_interval_) {
    scale_ = std::min(scale_ * 2, 16777216.0);  // 2^24: beyond it fp16 gains nothing
    good_updates_ = 0;
  }
}

json LossScaler::state() const { return {{"scale", scale_}, {"good_updates", good_updates_}}; }

void LossScaler::load_state(const json& state) {
  if (state.is_null()) return;  // checkpoints from before loss scaling
  scale_ = state.at("scale");
  good_updates_ = state.at("good_updates");
}

}  // namespace xformer
