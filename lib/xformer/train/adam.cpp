#include "xformer/train/adam.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <map>

namespace xformer::train {

namespace {

// Scalars of one step, shared by every parameter.
struct StepScalars {
  float beta1, beta2, eps, l2;  // l2: Adam's weight decay, added to the gradient
  float decay;                  // AdamW's decoupled decay: p *= 1 - lr * wd
  float step_size;              // lr / (1 - beta1^t)
  float inv_sqrt_bc2;           // 1 / sqrt(1 - beta2^t)
};

void fused_update(float* __restrict p, const float* __restrict g, float* __restrict m,
                  float* __restrict v, int64_t n, const StepScalars& s) {
  at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float gi = g[i] + s.l2 * p[i];
      const float mi = s.beta1 * m[i] + (1 - s.beta1) * gi;
      const float vi = s.beta2 * v[i] + (1 - s.beta2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] = p[i] * s.decay - s.step_size * mi / (std::sqrt(vi) * s.inv_sqrt_bc2 + s.eps);
    }
  });
}

// The same arithmetic as multi-tensor ops (CUDA, other dtypes): each op is a few kernel
// launches for all parameters together rather than one per parameter.
void foreach_update(std::vector<torch::Tensor>& p, std::vector<torch::Tensor> g,
                    std::vector<torch::Tensor>& m, std::vector<torch::Tensor>& v,
                    const StepScalars& s) {
  if (p.empty()) return;
  if (s.l2 != 0) g = at::_foreach_add(g, p, s.l2);
  at::_foreach_mul_(m, s.beta1);
  at::_foreach_add_(m, g, 1 - s.beta1);
  at::_foreach_mul_(v, s.beta2);
  at::_foreach_addcmul_(v, g, g, 1 - s.beta2);
  if (s.decay != 1) at::_foreach_mul_(p, s.decay);
  auto denom = at::_foreach_sqrt(v);
  at::_foreach_mul_(denom, s.inv_sqrt_bc2);
  at::_foreach_add_(denom, s.eps);
  at::_foreach_addcdiv_(p, m, denom, -s.step_size);
}

}  // namespace

Adam::Adam(std::vector<torch::Tensor> params, const AdamConfig& config)
    : torch::optim::Optimizer(std::move(params),
                              std::make_unique<torch::optim::AdamOptions>(config.lr)),
      config_(config) {}

torch::Tensor Adam::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure) loss = closure();
  auto& params = param_groups().at(0).params();
  if (exp_avg_.empty()) {
    for (const auto& p : params) {
      exp_avg_.push_back(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
      exp_avg_sq_.push_back(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
    }
    param_steps_.assign(params.size(), 0);
  }
  ++steps_;
  const double lr = param_groups().at(0).options().get_lr();
  auto scalars = [&](int64_t step) {  // the bias corrections of a parameter's step-th update
    const auto t = static_cast<double>(step);
    StepScalars s;
    s.beta1 = static_cast<float>(config_.beta1);
    s.beta2 = static_cast<float>(config_.beta2);
    s.eps = static_cast<float>(config_.eps);
    s.l2 = config_.decoupled_weight_decay ? 0.0f : static_cast<float>(config_.weight_decay);
    s.decay = config_.decoupled_weight_decay ? static_cast<float>(1 - lr * config_.weight_decay) : 1.0f;
    s.step_size = static_cast<float>(lr / (1 - std::pow(config_.beta1, t)));
    s.inv_sqrt_bc2 = static_cast<float>(1 / std::sqrt(1 - std::pow(config_.beta2, t)));
    return s;
  };
  // The rest, for foreach_update, by step count (almost always one group: every parameter).
  struct Rest {
    std::vector<torch::Tensor> p, g, m, v;
  };
  std::map<int64_t, Rest> rest;
  for (size_t i = 0; i < params.size(); ++i) {
    auto& p = params[i];
    if (!p.grad().defined()) continue;
    const int64_t step = ++param_steps_[i];
    auto g = p.grad();
    auto &m = exp_avg_[i], &v = exp_avg_sq_[i];
    const bool fused = p.device().is_cpu() && p.scalar_type() == torch::kFloat &&
                       p.is_contiguous() && g.is_contiguous() && g.scalar_type() == torch::kFloat;
    if (fused) {
      fused_update(p.data_ptr<float>(), g.data_ptr<float>(), m.data_ptr<float>(),
                   v.data_ptr<float>(), p.numel(), scalars(step));
    } else {
      auto& r = rest[step];
      r.p.push_back(p), r.g.push_back(g), r.m.push_back(m), r.v.push_back(v);
    }
  }
  for (auto& [step, r] : rest) foreach_update(r.p, std::move(r.g), r.m, r.v, scalars(step));
  return loss;
}

void Adam::save(torch::serialize::OutputArchive& archive) const {
  archive.write("steps", torch::tensor(steps_));
  if (!param_steps_.empty()) archive.write("param_steps", torch::tensor(param_steps_));
  for (size_t i = 0; i < exp_avg_.size(); ++i) {
    archive.write("exp_avg." + std::to_string(i), exp_avg_[i]);
    archive.write("exp_avg_sq." + std::to_string(i), exp_avg_sq_[i]);
  }
}

std::vector<std::pair<std::string, torch::Tensor>> Adam::state_tensors() const {
  std::vector<std::pair<std::string, torch::Tensor>> out = {{"steps", torch::tensor(steps_)}};
  if (!param_steps_.empty()) out.emplace_back("param_steps", torch::tensor(param_steps_));
  for (size_t i = 0; i < exp_avg_.size(); ++i) {
    out.emplace_back("exp_avg." + std::to_string(i), exp_avg_[i]);
    out.emplace_back("exp_avg_sq." + std::to_string(i), exp_avg_sq_[i]);
  }
  return out;
}

void Adam::load(torch::serialize::InputArchive& archive) {
  torch::Tensor steps;
  archive.read("steps", steps);
  steps_ = steps.item<int64_t>();
  const auto& params = param_groups().at(0).params();
  exp_avg_.clear(), exp_avg_sq_.clear(), param_steps_.clear();
  if (steps_ == 0) return;
  torch::Tensor param_steps;  // absent from older checkpoints: every parameter took every step
  if (archive.try_read("param_steps", param_steps)) {
    param_steps = param_steps.to(torch::kCPU, torch::kLong).contiguous();  // read onto the model's device
    TORCH_CHECK(param_steps.numel() == static_cast<int64_t>(params.size()), "optimizer state for ",
                param_steps.numel(), " parameters, the model has ", params.size());
    param_steps_.assign(param_steps.data_ptr<int64_t>(), param_steps.data_ptr<int64_t>() + param_steps.numel());
  } else {
    param_steps_.assign(params.size(), steps_);
  }
  for (size_t i = 0; i < params.size(); ++i) {
    torch::Tensor m, v;
    archive.read("exp_avg." + std::to_string(i), m);
    archive.read("exp_avg_sq." + std::to_string(i), v);
    TORCH_CHECK(m.sizes() == params[i].sizes() && v.sizes() == params[i].sizes(),
                "optimizer state ", i, " has shape ", m.sizes(), ", the parameter ",
                params[i].sizes());
    exp_avg_.push_back(m.to(params[i].device()).contiguous());
    exp_avg_sq_.push_back(v.to(params[i].device()).contiguous());
  }
}

}  // namespace xformer::train
