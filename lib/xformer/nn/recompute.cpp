#include "xformer/nn/recompute.h"

#include <ATen/autocast_mode.h>

#include <mutex>
#include <optional>

#include "xformer/core/precision.h"

namespace xformer::nn {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What the second forward needs: the function, and the random-number and autocast state the
// first one ran under. Held by the autograd node until backward.
struct Replay : torch::CustomClassHolder {
  RecomputedFn fn;
  torch::Device device = torch::kCPU;  // of the inputs
  torch::Tensor cpu_rng, device_rng;   // generator states before the first forward
  std::optional<torch::ScalarType> autocast;
};

// Handles on LibTorch's default generators (copies share the generator), and their state read
// and written under the generator's lock, as its users draw under it.
at::Generator cpu_generator() { return at::detail::getDefaultCPUGenerator(); }
at::Generator device_generator(const torch::Device& device) {
  return at::globalContext().defaultGenerator(device);
}
torch::Tensor state_of(at::Generator generator) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}
void set_state(at::Generator generator, const torch::Tensor& state) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

// Puts the generators back to the states of the first forward for the life of the object, then
// returns them to where they were, so that recomputing draws nothing from the training stream.
class ReplayRandomness {
 public:
  explicit ReplayRandomness(const Replay& r) : device_(r.device) {
    cpu_now_ = state_of(cpu_generator());
    set_state(cpu_generator(), r.cpu_rng);
    if (r.device_rng.defined()) {
      device_now_ = state_of(device_generator(device_));
      set_state(device_generator(device_), r.device_rng);
    }
  }
  ~ReplayRandomness() {
    set_state(cpu_generator(), cpu_now_);
    if (device_now_.defined()) set_state(device_generator(device_), device_now_);
  }
  ReplayRandomness(const ReplayRandomness&) = delete;
  ReplayRandomness& operator=(const ReplayRandomness&) = delete;

 private:
  torch::Device device_;
  torch::Tensor cpu_now_, device_now_;
};

Precision precision_of(const std::optional<torch::ScalarType>& autocast) {
  if (!autocast) return Precision::Float32;
  return *autocast == torch::kBFloat16 ? Precision::BFloat16 : Precision::Float16;
}

// Autocast keeps the reduced copies of weights that require gradients for reuse until its
// outermost scope ends; copies made with autograd off have no path back to the weights, and a
// later forward with autograd on (this recompute, when backward starts inside that scope) would
// reuse them and leave the weights without gradients. So the first forward runs with the
// cache off.
class AutocastCacheOff {
 public:
  AutocastCacheOff() : was_(at::autocast::is_autocast_cache_enabled()) {
    at::autocast::set_autocast_cache_enabled(false);
  }
  ~AutocastCacheOff() { at::autocast::set_autocast_cache_enabled(was_); }
  AutocastCacheOff(const AutocastCacheOff&) = delete;
  AutocastCacheOff& operator=(const AutocastCacheOff&) = delete;

 private:
  bool was_;
};

class RecomputeFunction : public torch::autograd::Function<RecomputeFunction> {
 public:
  // inputs: every tensor argument; replay: not a tensor, so it gets no gradient.
  static torch::Tensor forward(AutogradContext* ctx, c10::intrusive_ptr<Replay> replay,
                               torch::TensorList inputs) {
    ctx->save_for_backward(inputs.vec());
    torch::Tensor output;
    {
      AutocastCacheOff no_cache;
      output = replay->fn(inputs.vec());  // grad mode is off here: nothing is kept
    }
    ctx->saved_data["replay"] = c10::IValue::make_capsule(std::move(replay));
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_output) {
    auto replay = c10::static_intrusive_pointer_cast<Replay>(ctx->saved_data["replay"].toCapsule());
    std::vector<torch::Tensor> inputs;
    for (const auto& saved : ctx->get_saved_variables())
      inputs.push_back(saved.detach().requires_grad_(saved.requires_grad()));
    torch::Tensor output;
    {
      ReplayRandomness randomness(*replay);
      // Backward may run on another thread (CUDA) with another autocast state: set the first
      // forward's, on or off.
      AutocastScope autocast(precision_of(replay->autocast), replay->device);
      torch::AutoGradMode grad(true);
      output = replay->fn(inputs);
    }
    // Gradients of the parameters accumulate in their .grad as in any backward; those of the
    // inputs come back through the detached copies.
    if (output.requires_grad()) torch::autograd::backward({output}, {grad_output[0]});
    variable_list grads{torch::Tensor()};  // none for `replay`
    for (const auto& in : inputs) grads.push_back(in.requires_grad() ? in.grad() : torch::Tensor());
    return grads;
  }
};

}  // namespace

torch::Tensor recompute_in_backward(RecomputedFn fn, const std::vector<torch::Tensor>& inputs) {
  bool wants_grad = false;
  for (const auto& t : inputs) wants_grad = wants_grad || t.requires_grad();
  if (!torch::GradMode::is_enabled() || !wants_grad) return fn(inputs);
  auto replay = c10::make_intrusive<Replay>();
  replay->fn = std::move(fn);
  replay->device = inputs.at(0).device();
  replay->cpu_rng = state_of(cpu_generator());
  if (!replay->device.is_cpu()) replay->device_rng = state_of(device_generator(replay->device));
  replay->autocast = autocast_type(replay->device);
  return RecomputeFunction::apply(replay, torch::TensorList(inputs));
}

int64_t set_recompute(torch::nn::Module& model, bool on) {
  int64_t count = 0;
  for (const auto& m : model.modules(/*include_self=*/true)) {
    if (auto* r = dynamic_cast<Recomputable*>(m.get())) {
      r->set_recompute(on);
      ++count;
    }
  }
  return count;
}

}  // namespace xformer::nn
