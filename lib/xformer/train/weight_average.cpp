#include "xformer/train/weight_average.h"

#include <torch/version.h>

#include <cmath>
#include <unordered_set>

#include "xformer/core/error.h"

namespace xformer::train {

WeightAverage::WeightAverage(const torch::nn::Module& model, double decay) : decay_(decay) {
  // Each tensor once: one registered twice (tied weights) would otherwise be swapped twice.
  std::unordered_set<const void*> seen;
  for (const auto& p : model.parameters())
    if (seen.insert(p.unsafeGetTensorImpl()).second) params_.push_back(p);
  torch::NoGradGuard no_grad;
  // Before the first update the average is the starting weights (the first update replaces them).
  for (const auto& p : params_) average_.push_back(p.detach().clone());
}

void WeightAverage::update() {
  torch::NoGradGuard no_grad;
  ++updates_;
  // a_t = a_(t-1) + (w_t - a_(t-1)) (1 - d) / (1 - d^t): the bias-corrected average (header).
  const double weight = (1 - decay_) / (1 - std::pow(decay_, static_cast<double>(updates_)));
  if (params_.empty()) return;
#if TORCH_VERSION_MAJOR >= 2
  at::_foreach_lerp_(average_, params_, weight);  // one pass, a few kernel launches on a GPU
#else
  at::_foreach_mul_(average_, 1 - weight);
  at::_foreach_add_(average_, params_, weight);
#endif
}

void WeightAverage::restart() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) average_[i].copy_(params_[i]);
  updates_ = 1;
}

void WeightAverage::swap() {
  // The storages change hands, nothing is copied or allocated (so the scope's undo cannot fail
  // for want of memory). The parameters stay the same tensors: the optimizer, gradients and
  // hooks that hold them are unaffected.
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor trained = params_[i].data();  // shares the parameter's current storage
    params_[i].set_data(average_[i]);
    average_[i] = trained;
  }
}

void WeightAverage::save(torch::serialize::OutputArchive& archive) const {
  for (size_t i = 0; i < average_.size(); ++i) archive.write(std::to_string(i), average_[i]);
}

nlohmann::json WeightAverage::state() const { return {{"updates", updates_}, {"decay", decay_}}; }

void WeightAverage::load(torch::serialize::InputArchive& archive, const nlohmann::json& state,
                         const std::string& path) {
  torch::NoGradGuard no_grad;
  const size_t stored = archive.keys().size();
  if (stored != average_.size())
    throw DataError("checkpoint '" + path + "' does not fit this model: its weight average holds " +
                    std::to_string(stored) + " tensors, the model has " + std::to_string(average_.size()) +
                    " parameters");
  for (size_t i = 0; i < average_.size(); ++i) {
    torch::Tensor t;
    archive.read(std::to_string(i), t);
    if (t.sizes() != average_[i].sizes())
      throw DataError("checkpoint '" + path + "' does not fit this model: averaged parameter " +
                      std::to_string(i) + " is " + c10::str(t.sizes()) + ", the model's is " +
                      c10::str(average_[i].sizes()));
    average_[i].copy_(t);
  }
  updates_ = state.at("updates").get<int64_t>();
}

}  // namespace xformer::train
