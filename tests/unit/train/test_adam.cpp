// train::Adam against LibTorch's Adam and AdamW over several steps (with weight decay, and a
// parameter first used late), and its state surviving save + load exactly.
#include "test_support.h"

#include "xformer/train/adam.h"

using xformer::testing::max_abs_diff;
using xformer::train::Adam;
using xformer::train::AdamConfig;

namespace {

// Parameters of a few shapes, including a scalar. float32 takes train::Adam's fused CPU loop;
// float64 its multi-tensor path (the one CUDA uses).
std::vector<torch::Tensor> make_params(torch::ScalarType type = torch::kFloat) {
  torch::manual_seed(31);
  return {torch::randn({7, 5}, type).requires_grad_(true), torch::randn({300}, type).requires_grad_(true),
          torch::randn({}, type).requires_grad_(true)};
}

// Sets deterministic gradients for step `step`. Parameter 1 has none in steps 0 and 1 (first
// used later): its bias correction must count its own steps.
void set_grads(std::vector<torch::Tensor>& params, int step) {
  for (size_t i = 0; i < params.size(); ++i) {
    if (i == 1 && step < 2) {
      params[i].mutable_grad() = torch::Tensor();
      continue;
    }
    auto g = torch::sin(torch::arange(params[i].numel(), params[i].options()) * (step + 1) + static_cast<double>(i))
                 .view(params[i].sizes());
    params[i].mutable_grad() = g;
  }
}

std::vector<torch::Tensor> clone_params(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) out.push_back(p.detach().clone().requires_grad_(true));
  return out;
}

}  // namespace

TEST_CASE("train::Adam matches torch::optim::Adam and AdamW", "[train][adam]") {
  for (auto type : {torch::kFloat, torch::kDouble})
  for (bool decoupled : {false, true}) {
    DYNAMIC_SECTION((decoupled ? "AdamW " : "Adam ") << (type == torch::kFloat ? "fused" : "multi-tensor")) {
      auto ours = make_params(type), ref = clone_params(ours);
      AdamConfig c;
      c.lr = 0.01, c.beta1 = 0.9, c.beta2 = 0.98, c.eps = 1e-9, c.weight_decay = 0.1;
      c.decoupled_weight_decay = decoupled;
      Adam opt(ours, c);
      std::unique_ptr<torch::optim::Optimizer> ref_opt;
      if (decoupled)
        ref_opt = std::make_unique<torch::optim::AdamW>(
            ref, torch::optim::AdamWOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay));
      else
        ref_opt = std::make_unique<torch::optim::Adam>(
            ref, torch::optim::AdamOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay));
      for (int step = 0; step < 6; ++step) {
        // The learning rate changes between steps, as the trainer's schedule does.
        const double lr = 0.01 * (step + 1) / 6;
        opt.param_groups()[0].options().set_lr(lr);
        ref_opt->param_groups()[0].options().set_lr(lr);
        set_grads(ours, step);
        set_grads(ref, step);
        opt.step();
        ref_opt->step();
      }
      for (size_t i = 0; i < ours.size(); ++i) CHECK(max_abs_diff(ours[i], ref[i]) < 1e-6);
      // The parameters did move.
      CHECK(max_abs_diff(ours[0], make_params(type)[0]) > 1e-3);
    }
  }
}

TEST_CASE("train::Adam resumes exactly from saved state", "[train][adam]") {
  AdamConfig c;
  c.lr = 0.05;
  auto straight = make_params(), resumed = clone_params(straight);
  Adam a(straight, c);
  for (int step = 0; step < 5; ++step) set_grads(straight, step), a.step();

  Adam b(resumed, c);
  for (int step = 0; step < 2; ++step) set_grads(resumed, step), b.step();
  torch::serialize::OutputArchive out;
  b.save(out);
  std::stringstream buffer;
  out.save_to(buffer);
  Adam c2(resumed, c);  // a fresh optimizer over the same parameters
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  c2.load(in);
  for (int step = 2; step < 5; ++step) set_grads(resumed, step), c2.step();
  for (size_t i = 0; i < straight.size(); ++i) CHECK(torch::equal(straight[i], resumed[i]));
}

TEST_CASE("train::Adam refuses state of another shape", "[train][adam]") {
  auto params = make_params();
  Adam a(params, AdamConfig{});
  set_grads(params, 0);
  a.step();
  torch::serialize::OutputArchive out;
  a.save(out);
  std::stringstream buffer;
  out.save_to(buffer);
  std::vector<torch::Tensor> other{torch::randn({7, 6}).requires_grad_(true),
                                   torch::randn({300}).requires_grad_(true),
                                   torch::randn({}).requires_grad_(true)};
  Adam b(other, AdamConfig{});
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  CHECK_THROWS_WITH(b.load(in), Catch::Contains("[7, 5]") && Catch::Contains("[7, 6]"));
}

TEST_CASE("train::Adam loads state saved before per-parameter step counts", "[train][adam]") {
  // State without "param_steps" (older checkpoints): every parameter counts the optimizer's
  // steps, which is what a state saved after steps that updated every parameter holds.
  AdamConfig c;
  c.lr = 0.05;
  auto params = make_params();
  Adam a(params, c);
  for (int step = 2; step < 4; ++step) set_grads(params, step), a.step();  // every parameter, twice
  torch::serialize::OutputArchive full;
  a.save(full);
  std::stringstream buffer;
  full.save_to(buffer);
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  torch::serialize::OutputArchive old;  // the same without param_steps
  auto copy = [&](const std::string& key) {
    torch::Tensor t;
    in.read(key, t);
    old.write(key, t);
  };
  copy("steps");
  for (size_t i = 0; i < params.size(); ++i)
    for (const std::string k : {"exp_avg.", "exp_avg_sq."}) copy(k + std::to_string(i));
  std::stringstream old_buffer;
  old.save_to(old_buffer);

  auto p_new = clone_params(params), p_old = clone_params(params);
  Adam from_new(p_new, c), from_old(p_old, c);
  torch::serialize::InputArchive in_new, in_old;
  buffer.seekg(0);
  in_new.load_from(buffer);
  in_old.load_from(old_buffer);
  from_new.load(in_new);
  from_old.load(in_old);
  for (int step = 4; step < 6; ++step) set_grads(p_new, step), set_grads(p_old, step), from_new.step(), from_old.step();
  for (size_t i = 0; i < params.size(); ++i) CHECK(torch::equal(p_new[i], p_old[i]));
}
