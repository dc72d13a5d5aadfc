// Numeric precision of training and inference: mixed precision on CUDA (autocast), TF32, and
// dynamic loss scaling for fp16.
//
// Parameters, gradients and optimizer state always stay float32 ("master weights"); autocast
// runs matrix products in bf16/fp16 and keeps reductions, softmax and norms in float32. On the
// CPU everything runs in float32.
#pragma once
#include <torch/torch.h>

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace xformer {

using json = nlohmann::json;

enum class Precision { Float32, BFloat16, Float16 };

// train.precision: "auto" (bf16 on CUDA, fp32 on the CPU), "fp32", "bf16", "fp16". ConfigError
// for a reduced precision on the CPU.
Precision resolve_precision(const std::string& name, const torch::Device& device);
std::string precision_name(Precision p);

// Lets float32 matrix products on CUDA use TF32 tensor cores (train.tf32). No effect on the CPU.
void allow_tf32(bool allow);

// The reduced type that autocast currently gives matrix products on `device`, if it is active.
std::optional<torch::ScalarType> autocast_type(const torch::Device& device);

// Autocast on a CUDA `device` for the life of the object in `precision`'s type, or off for
// Float32 (nests; restores the previous state). A no-op on the CPU. Wrap forward passes only:
// backward runs in the types forward chose.
class AutocastScope {
 public:
  AutocastScope(Precision precision, const torch::Device& device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool cuda_ = false, enables_ = false, was_enabled_ = false;
  torch::ScalarType was_type_ = torch::kFloat;
};

// Dynamic loss scaling (fp16): the loss is multiplied by scale() before backward so that small
// gradients survive fp16's range; before the optimizer step the gradients are divided by it. An
// update whose gradients overflowed is skipped and the scale halved; after `growth_interval`
// good updates in a row it doubles. Disabled, scale() is 1 and nothing is ever skipped.
class LossScaler {
 public:
  explicit LossScaler(bool enabled, double initial_scale = 65536.0, int64_t growth_interval = 2000);
  bool enabled() const { return enabled_; }
  double scale() const { return enabled_ ? scale_ : 1.0; }
  // Records the outcome of one update: `finite` = its gradients had no Inf/NaN.
  void update(bool finite);
  json state() const;
  void load_state(const json& state);

 private:
  bool enabled_;
  double scale_;
  int64_t growth_interval_, good_updates_ = 0;
};

}  // namespace xformer
