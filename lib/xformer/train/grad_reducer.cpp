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
    : comm_(comm) {
  bucket_bytes = std::max<int64_t>(bucket_bytes, 1);
  std::map<std::string, size_t> open;  // dtype + device -> its bucket being filled
  std::set<const void*> seen;          // a parameter registered twice is reduced once
  std::vector<std::pair<torch::Tensor, size_t>> placed;
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    const auto& p = *it;
    if (!p.requires_grad() || p.numel() == 0 || !seen.insert(p.unsafeGetTensorImpl()).second) continue;
    const std::string key = std::string(c10::toString(p.scalar_type())) + p.device().str();
    auto found = open.find(key);
    if (found == open.end()) {
      found = open.emplace(key, buckets_.size()).first;
      buckets_.emplace_back();
    }
    const size_t index = found->second;
    Bucket& b = buckets_[index];
    b.params.push_back(p);
    placed.emplace_back(p, index);
    int64_t bytes = 0;
    for (const auto& q : b.params) bytes += q.numel() * static_cast<int64_t>(q.element_size());
    // The first bucket is small (as in DDP) so that sending starts early in backward.
    if (bytes >= (index == 0 ? std::min<int64_t>(bucket_bytes, kFirstBucketBytes) : bucket_bytes)) open.erase(found);
  }
  for (auto& b : buckets_) {
    int64_t n = 0;
    for (const auto& q : b.params) n += q.numel();
    b.flat = torch::empty({n}, b.params[0].options().requires_grad(false));
  }
  for (const auto& [p, index] : placed) {
    // The accumulator node lives only while someone holds it: keep it, or the hook goes with it.
    auto accumulator = torch::autograd::impl::grad_accumulator(p);
    const size_t bucket = index;
    hook_keys_.push_back(accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, bucket](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          on_gradient(bucket);
          return outputs;
        })));
    accumulators_.push_back(std::move(accumulator));
  }
}

GradReducer::~GradReducer() {
  for (size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hook_keys_[i]);
}

void GradReducer::arm() {
  std::lock_guard<std::mutex> lock(mutex_);
  armed_ = true;
  started_in_backward_ = 0;
}

void GradReducer::on_gradient(size_t bucket) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_) return;  // an earlier backward of the update: gradients are still accumulating
  Bucket& b = buckets_[bucket];
  if (++b.arrived < static_cast<int64_t>(b.params.size())) return;
  const size_t before = next_;
  start_ready_in_order();
  started_in_backward_ += static_cast<int64_t>(next_ - before);
}

void GradReducer::start_ready_in_order() {
  while (next_ < buckets_.size() && buckets_[next_].arrived == static_cast<int64_t>(buckets_[next_].params.size())) {
    start(buckets_[next_]);
    ++next_;  // only once started: a failed start leaves the bucket to launch_rest()
  }
}

void GradReducer::start(Bucket& b) {
  torch::NoGradGuard no_grad;
  int64_t offset = 0;
  for (const auto& p : b.params) {
    auto slot = b.flat.narrow(0, offset, p.numel());
    if (p.grad().defined()) slot.copy_(p.grad().reshape(-1));
    else slot.zero_();  // unused by this rank's batches: contributes nothing
    offset += p.numel();
  }
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
    for (auto& p : b.params) {
      auto sum = b.flat.narrow(0, offset, p.numel()).view(p.sizes());
      if (p.grad().defined()) p.mutable_grad().copy_(sum);
      else p.mutable_grad() = sum.clone();
      offset += p.numel();
    }
    b.arrived = 0;
    b.wait = nullptr;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  armed_ = false;
  next_ = 0;
}

}  // namespace xformer::train
