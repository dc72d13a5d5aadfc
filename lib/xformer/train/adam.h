// Adam (Kingma & Ba 2015) and AdamW (decoupled weight decay, Loshchilov & Hutter 2019), the
// optimizers of train::Trainer.
//
// Same update as torch::optim::Adam/AdamW, but on the CPU each parameter is updated in one
// pass over its memory (parameter, gradient and both moments read once, written once) instead
// of LibTorch's six elementwise ops, each a pass of its own. Other devices (and dtypes) run the
// same arithmetic as multi-tensor (_foreach) ops, a few kernel launches for all parameters. State is saved as named tensors, independent of LibTorch's
// internal optimizer layout. As in LibTorch, each parameter counts its own steps (those where
// it had a gradient) for the bias correction: one first used late starts as Adam starts.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace xformer::train {

struct AdamConfig {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  bool decoupled_weight_decay = false;  // true: AdamW
};

class Adam : public torch::optim::Optimizer {
 public:
  Adam(std::vector<torch::Tensor> params, const AdamConfig& config);
  // The learning rate is read from the parameter group each step (the trainer's schedule sets it).
  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
  // The state save() writes, by name, in its order (for the checkpoint's digest).
  std::vector<std::pair<std::string, torch::Tensor>> state_tensors() const;

 private:
  AdamConfig config_;
  int64_t steps_ = 0;                                // optimizer steps taken
  std::vector<int64_t> param_steps_;                 // per parameter: the steps that updated it
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;  // per parameter, allocated on first step
};

}  // namespace xformer::train
