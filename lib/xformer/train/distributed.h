// Data-parallel training across processes on torch.distributed's c10d: ProcessGroupGloo on the
// CPU, ProcessGroupNCCL on CUDA where the build has it. Ranks meet through a TCPStore served
// by rank 0, found from the standard environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT; Slurm's SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID stand in under `srun`), so
// `torchrun --no-python`, `srun` and `xformer train --nproc N` all start the same way.
//
// Every collective has a timeout: a rank that dies closes its sockets and the others fail at
// once; a rank that hangs makes the others fail when the timeout expires. Either way the error
// names this rank, the operation and the timeout, never a silent hang.
#pragma once
#include <ATen/core/Tensor.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace xformer::train {

struct DistributedEnv {
  int rank = 0, world_size = 1, local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool active() const { return world_size > 1; }
};

// The process's place in the job, from the environment (world_size 1 when nothing is set).
// ConfigError naming the variable when a value is malformed or inconsistent.
DistributedEnv distributed_env_from_environment();

// Whether this build can run more than one rank (c10d with Gloo was found at build time).
bool distributed_available();

class Communicator {
 public:
  // Joins the group: blocks until every rank has connected, or throws after `timeout`.
  Communicator(const DistributedEnv& env, const c10::Device& device, std::chrono::milliseconds timeout);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  const std::string& backend() const { return backend_; }

  // Starts summing `flat` (one contiguous tensor) over the ranks, in place; the returned call
  // waits for the sum (GradReducer starts gradient buckets with it while backward runs).
  std::function<void()> start_all_reduce(const at::Tensor& flat);
  // Sums a few numbers over the ranks (losses, counts, flags).
  std::vector<double> all_reduce_values(const std::vector<double>& values);
  // Replaces each tensor by its mean over the ranks, in place (floating point tensors).
  void average(const std::vector<at::Tensor>& tensors);
  // Copies rank 0's tensors to every rank, in place (parameters at the start).
  void broadcast_from_rank0(const std::vector<at::Tensor>& tensors);
  // Rank 0's `text` on every rank (the argument is ignored elsewhere).
  std::string broadcast_text(const std::string& text);
  // Every rank's `tensor` (same shape and dtype everywhere), in rank order.
  std::vector<at::Tensor> all_gather(const at::Tensor& tensor);
  void barrier();

 private:
  struct Impl;
  [[noreturn]] void fail(const std::string& operation, const std::exception& e) const;

  DistributedEnv env_;
  std::string backend_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace xformer::train
