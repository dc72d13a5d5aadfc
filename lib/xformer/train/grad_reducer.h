// Sums gradients over the ranks while backward is still running. Parameters are grouped into
// buckets of about `bucket_bytes` (the first one at most 1 MB; one dtype and device each) in
// reverse order, roughly the order in which backward produces their gradients; a hook on each parameter's gradient accumulator
// counts the bucket's arrivals, and a full bucket is flattened into its buffer and its all-reduce
// started at once, so communication overlaps the rest of backward (as PyTorch's DDP does).
//
// Buckets always start in index order, so every rank issues the same collectives in the same
// order whatever order its gradients arrive in. A bucket that backward did not fill (a parameter
// this rank's batch did not use, or a rank that had no batch in the update) starts in
// launch_rest(), with zeros for missing gradients.
//
// Per update:   arm() before this rank's last backward of the update (earlier ones accumulate),
//               backward(), launch_rest(), [other collectives], finish().
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace xformer::train {

class Communicator;

class GradReducer {
 public:
  GradReducer(Communicator& comm, const std::vector<torch::Tensor>& params, int64_t bucket_bytes);
  ~GradReducer();  // removes the hooks
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // The next backward pass completes this rank's gradients of the update.
  void arm();
  // Starts, in order, every bucket not started yet.
  void launch_rest();
  // Waits for every bucket and writes the sums into the parameters' gradients (created where a
  // parameter had none). Disarms.
  void finish();

  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }
  // Buckets of the last update started by the hooks, before backward returned.
  int64_t started_in_backward() const { return started_in_backward_; }

 private:
  struct Bucket {
    std::vector<torch::Tensor> params;
    torch::Tensor flat;                 // (sum of numels), the bucket's wire buffer
    int64_t arrived = 0;                // gradients accumulated in the armed backward
    std::function<void()> wait;         // set once started
  };
  void on_gradient(size_t bucket);      // hook body
  void start(Bucket& b);
  void start_ready_in_order();

  Communicator& comm_;
  std::vector<Bucket> buckets_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // keep them (and hooks) alive
  std::vector<uintptr_t> hook_keys_;
  std::mutex mutex_;                    // hooks may run on autograd's device threads
  bool armed_ = false;
  size_t next_ = 0;                     // first bucket not started
  int64_t started_in_backward_ = 0;
};

}  // namespace xformer::train
