// Activation recomputation ("gradient checkpointing", Chen et al. 2016): a layer run through
// recompute_in_backward() keeps only its inputs for backward, not the activations inside it,
// and runs its forward a second time during backward to get them back. Training then holds
// the activations of one layer at a time plus the layers' boundaries, for about one more
// forward pass of compute (train.recompute_activations).
//
// The second forward sees what the first one saw: the same random numbers (dropout draws its
// seeds from LibTorch's default generators, whose states are saved and put back) and the same
// autocast type, so the gradients equal those of the plain layer and the random stream after
// backward is the one the plain layer leaves. (On CUDA, LibTorch may pick another attention
// kernel when its inputs require gradients, and with attention dropout draw other masks; the
// gradients are then those of another dropout draw.)
//
// A recomputed layer's parameters must not be used outside it: the nested backward accumulates
// their gradients on its own, and the multi-process gradient buckets count one accumulation per
// parameter and backward.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace xformer::nn {

using RecomputedFn = std::function<torch::Tensor(const std::vector<torch::Tensor>& inputs)>;

// fn(inputs) -> output, with fn's activations recomputed in backward. `inputs` are the tensors
// gradients flow back to (a layer's input, the encoder states a decoder layer attends to);
// parameters and anything else fn needs it captures. fn must depend on nothing else that
// changes between forward and backward. Without autograd (no grad mode, or nothing requiring
// gradients) this is fn(inputs).
torch::Tensor recompute_in_backward(RecomputedFn fn, const std::vector<torch::Tensor>& inputs);

// A module that can run its forward through recompute_in_backward (the Transformer layers).
// Modules with running statistics (batch norm) must not: their second forward would update
// the statistics again.
class Recomputable {
 public:
  virtual ~Recomputable() = default;
  void set_recompute(bool on) { recompute_ = on; }
  bool recompute() const { return recompute_; }

 private:
  bool recompute_ = false;
};

// Turns recomputation on or off in every Recomputable module of `model` (itself included);
// returns how many there are.
int64_t set_recompute(torch::nn::Module& model, bool on);

}  // namespace xformer::nn
