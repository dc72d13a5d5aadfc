// Sums gradients over the ranks while backward is still running (as PyTorch's DDP does).
// Parameters are grouped into buckets of about `bucket_bytes` (the first one at most 1 MB; one
// dtype and device each); a hook on each parameter's gradient accumulator counts the bucket's
// arrivals, and a full bucket is flattened into its buffer and its all-reduce started at once,
// so communication overlaps the rest of backward.
//
// Buckets start in index order, so that every rank issues the same collectives in the same order
// whatever order its gradients arrive in. The first buckets are built from the parameters in
// reverse order (roughly the order backward reaches them); after the first update they are
// rebuilt, alike on every rank, in the order rank 0's gradients actually arrived. A bucket that
// backward did not fill (a parameter this rank's batches did not use, or a rank that had no batch
// in the update) starts in launch_rest(), with zeros for missing gradients. Each bucket also
// carries one count per parameter of the ranks that had its gradient: a parameter no rank used
// keeps no gradient, so the optimizer skips it (weight decay included) as in one process.
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
  // parameter had none and another rank had one). Disarms. After the first update: rebuilds the
  // buckets (a collective).
  void finish();

  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }
  int64_t parameters() const { return static_cast<int64_t>(params_.size()); }
  // How many gradients had arrived in the last armed backward when its first bucket was sent:
  // few when sending overlaps backward, all of them when it waited for the end.
  int64_t first_send_after() const { return first_send_after_; }

 private:
  struct Bucket {
    std::vector<size_t> members;  // indices into params_
    torch::Tensor flat;           // (sum of numels + members), the bucket's wire buffer: the
                                  // gradients, then per member the ranks that had its gradient
    int64_t arrived = 0;          // gradients accumulated in the armed backward
    std::function<void()> wait;   // set once started
    // flat's tail: per member, the ranks that had its gradient (summed with the rest).
    torch::Tensor rank_counts() const {
      const auto m = static_cast<int64_t>(members.size());
      return flat.narrow(0, flat.numel() - m, m);
    }
  };
  void build_buckets(const std::vector<size_t>& order);
  void adopt_rank0_arrival_order();
  void on_gradient(size_t param);  // hook body
  void start(Bucket& b);
  void start_ready_in_order();

  Communicator& comm_;
  int64_t bucket_bytes_;
  std::vector<torch::Tensor> params_;
  std::vector<size_t> bucket_of_;  // params_ index -> bucket
  std::vector<Bucket> buckets_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // keep them (and hooks) alive
  std::vector<uintptr_t> hook_keys_;
  std::mutex mutex_;               // hooks may run on autograd's device threads
  bool armed_ = false, rebuilt_ = false;
  size_t next_ = 0;                // first bucket not started
  int64_t arrived_ = 0, first_send_after_ = 0;
  std::vector<size_t> arrivals_;   // parameters in arrival order, until the buckets are rebuilt
};

}  // namespace xformer::train
