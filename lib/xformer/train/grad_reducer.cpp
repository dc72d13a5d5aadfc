#include "xformer/train/grad_reducer.h"

#include <torch/csrc/autograd/utils/lambda_post_hook.h>

#include <map>
#include <set>
#include <string>

#include "xformer/train/distributed.h"

namespace xformer::train {

namespace {
constexpr int64_t kFirstBucketBytes = 1 << 20;
}  // namespace

GradReducer::GradReducer(Communicator& comm, const std::vector<torch::Tensor>& params, int64_t bucket_bytes)
    : comm_(comm), bucket_bytes_(std::max<int64_t>(bucket_bytes, 1)) {
  std::set<const void*> seen;  // a parameter registered twice is reduced once
  for (const auto& p : params)
    if (p.requires_grad() && p.numel() > 0 && seen.insert(p.unsafeGetTensorImpl()).second) params_.push_back(p);
  std::vector<size_t> last_first;
  for (size_t i = params_.size(); i-- > 0;) last_first.push_back(i);
  build_buckets(last_first);
  for (size_t i = 0; i < params_.size(); ++i) {
    // The accumulator node lives only while someone holds it: keep it, or the hook goes with it.
    auto accumulator = torch::autograd::impl::grad_accumulator(params_[i]);
    hook_keys_.push_back(accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          on_gradient(i);
          return outputs;
        })));
    accumulators_.push_back(std::move(accumulator));
  }
}

GradReducer::~GradReducer() {
  for (size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hook_keys_[i]);
}

void GradReducer::build_buckets(const std::vector<size_t>& order) {
  buckets_.clear();
  bucket_of_.assign(params_.size(), 0);
  std::map<std::string, size_t> open;  // dtype + device -> its bucket being filled
  std::map<size_t, int64_t> bytes;
  for (const size_t i : order) {
    const auto& p = params_[i];
    const std::string key = std::string(c10::toString(p.scalar_type())) + p.device().str();
    auto found = open.find(key);
    if (found == open.end()) {
      found = open.emplace(key, buckets_.size()).first;
      buckets_.emplace_back();
    }
    const size_t index = found->second;
    buckets_[index].members.push_back(i);
    bucket_of_[i] = index;
    bytes[index] += p.numel() * static_cast<int64_t>(p.element_size());
    // The first bucket is small (as in DDP) so that sending starts early in backward.
    if (bytes[index] >= (index == 0 ? std::min(bucket_bytes_, kFirstBucketBytes) : bucket_bytes_)) open.erase(found);
  }
  for (auto& b : buckets_) {
    int64_t n = 0;
    for (const size_t i : b.members) n += params_[i].numel();
    b.flat = torch::empty({n + static_cast<int64_t>(b.members.size())},
                          params_[b.members[0]].options().requires_grad(false));
  }
}

void GradReducer::arm() {
  std::lock_guard<std::mutex> lock(mutex_);
  armed_ = true;
  arrived_ = 0;
  first_send_after_ = 0;
}

void GradReducer::on_gradient(size_t param) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_) return;  // an earlier backward of the update: gradients are still accumulating
  ++arrived_;
  if (!rebuilt_) arrivals_.push_back(param);
  Bucket& b = buckets_[bucket_of_[param]];
  if (++b.arrived == static_cast<int64_t>(b.members.size())) start_ready_in_order();
}

void GradReducer::start_ready_in_order() {
  while (next_ < buckets_.size() && buckets_[next_].arrived == static_cast<int64_t>(buckets_[next_].members.size())) {
    start(buckets_[next_]);
    ++next_;  // only once started: a failed start leaves the bucket to launch_rest()
  }
}

void GradReducer::start(Bucket& b) {
  torch::NoGradGuard no_grad;
  if (next_ == 0) first_send_after_ = arrived_;
  int64_t offset = 0;
  std::vector<float> had;  // 1 where this rank has the member's gradient
  for (const size_t i : b.members) {
    const auto& p = params_[i];
    auto slot = b.flat.narrow(0, offset, p.numel());
    if (p.grad().defined()) slot.copy_(p.grad().reshape(-1));
    else slot.zero_();  // unused by this rank's batches: contributes nothing
    had.push_back(p.grad().defined() ? 1.0f : 0.0f);
    offset += p.numel();
  }
  b.rank_counts().copy_(torch::tensor(had));
  b.wait = comm_.start_all_reduce(b.flat);
}

void GradReducer::launch_rest() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (; next_ < buckets_.size(); ++next_) start(buckets_[next_]);
}

void GradReducer::finish() {
  launch_rest();
  torch::NoGradGuard no_grad;
  for (auto& b : buckets_) {
    b.wait();
    int64_t offset = 0;
    torch::Tensor ranks_with_gradient;  // read (a copy to the host) only for a member we lack
    for (size_t m = 0; m < b.members.size(); ++m) {
      auto& p = params_[b.members[m]];
      auto sum = b.flat.narrow(0, offset, p.numel()).view(p.sizes());
      offset += p.numel();
      if (p.grad().defined()) {
        p.mutable_grad().copy_(sum);
        continue;
      }
      if (!ranks_with_gradient.defined()) ranks_with_gradient = b.rank_counts().to(torch::kCPU, torch::kFloat);
      if (ranks_with_gradient[static_cast<int64_t>(m)].item<float>() > 0) p.mutable_grad() = sum.clone();
    }
    b.arrived = 0;
    b.wait = nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    armed_ = false;
    next_ = 0;
    arrived_ = 0;
  }
  if (!rebuilt_) adopt_rank0_arrival_order();
}

void GradReducer::adopt_rank0_arrival_order() {
  rebuilt_ = true;
  if (params_.empty()) return;  // the same model everywhere: every rank returns here
  // Rank 0's arrivals, then any parameter that did not arrive, in the current order; every rank
  // takes rank 0's list, so the buckets stay the same everywhere.
  std::vector<int64_t> order;
  std::vector<bool> listed(params_.size(), false);
  for (const size_t i : arrivals_)
    if (!listed[i]) listed[i] = true, order.push_back(static_cast<int64_t>(i));
  for (const auto& b : buckets_)
    for (const size_t i : b.members)
      if (!listed[i]) listed[i] = true, order.push_back(static_cast<int64_t>(i));
  auto shared = torch::tensor(order, torch::kLong).to(params_[0].device());
  comm_.broadcast_from_rank0({shared});
  shared = shared.cpu();
  const int64_t* ids = shared.data_ptr<int64_t>();
  build_buckets(std::vector<size_t>(ids, ids + shared.numel()));
  arrivals_.clear();
}

}  // namespace xformer::train
