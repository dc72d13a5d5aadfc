#include "xformer/train/distributed.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <unistd.h>

#include <cstdlib>
#include <set>

#include "xformer/core/error.h"
#include "xformer_build_config.h"  // XFORMER_HAVE_GLOO, XFORMER_HAVE_NCCL (CMake's findings)

// c10d's backend headers compile only with these set (LibTorch's CMake config may set them).
#if XFORMER_HAVE_GLOO
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#if XFORMER_HAVE_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace xformer::train {

namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// A whole-number environment variable (its leading number for Slurm's "2(x3)" forms when
// `leading` is set); `fallback` when unset.
int env_int(const char* name, int fallback, bool leading = false) {
  const char* v = env(name);
  if (!v) return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (end == v || (!leading && *end != '\0') || n < 0 || n > 1000000)
    throw ConfigError(std::string("environment error: ") + name + "='" + v + "' is not a whole number");
  return static_cast<int>(n);
}

}  // namespace

DistributedEnv distributed_env_from_environment() {
  DistributedEnv e;
  if (env("WORLD_SIZE")) {  // torchrun, or set by hand / by `xformer train --nproc`
    e.world_size = env_int("WORLD_SIZE", 1);
    if (e.world_size > 1 && !env("RANK"))
      throw ConfigError("environment error: WORLD_SIZE is " + std::to_string(e.world_size) +
                        " but RANK is not set");
    e.rank = env_int("RANK", 0);
    e.local_rank = env_int("LOCAL_RANK", e.rank);
    e.local_world_size = env_int("LOCAL_WORLD_SIZE", e.world_size);
  } else if (env_int("SLURM_STEP_NUM_TASKS", 1) > 1) {  // a step started by srun
    e.world_size = env_int("SLURM_STEP_NUM_TASKS", 1);
    e.rank = env_int("SLURM_PROCID", 0);
    e.local_rank = env_int("SLURM_LOCALID", 0);
    e.local_world_size = env_int("SLURM_STEP_TASKS_PER_NODE", 1, /*leading=*/true);
    if (!env("MASTER_ADDR"))
      throw ConfigError("environment error: under srun with " + std::to_string(e.world_size) +
                        " tasks, set MASTER_ADDR to the first node (see docs/scaling.md)");
  }
  if (e.world_size < 1) throw ConfigError("environment error: WORLD_SIZE must be at least 1");
  if (e.rank >= e.world_size)
    throw ConfigError("environment error: rank " + std::to_string(e.rank) + " is not below the world size " +
                      std::to_string(e.world_size));
  if (e.local_world_size < 1) e.local_world_size = 1;
  if (const char* a = env("MASTER_ADDR")) e.master_addr = a;
  e.master_port = env_int("MASTER_PORT", 29500);
  if (e.master_port < 1 || e.master_port > 65535)
    throw ConfigError("environment error: MASTER_PORT=" + std::to_string(e.master_port) +
                      " is not a TCP port (1-65535)");
  return e;
}

bool distributed_available() { return XFORMER_HAVE_GLOO != 0; }

#if XFORMER_HAVE_GLOO

namespace {

// Where this rank computes: "cpu", or its host and physical GPU (CUDA_VISIBLE_DEVICES maps the
// index the process sees to the machine's; its entries may be ordinals or UUIDs).
[[maybe_unused]] std::string placement(const c10::Device& device) {
  if (!device.is_cuda()) return "cpu";
  const int index = device.has_index() ? device.index() : 0;
  std::string gpu = std::to_string(index);
  if (const char* visible = env("CUDA_VISIBLE_DEVICES")) {
    std::vector<std::string> entries(1);
    for (const char* c = visible; *c; ++c) {
      if (*c == ',') entries.emplace_back();
      else entries.back().push_back(*c);
    }
    if (index < static_cast<int>(entries.size())) gpu = entries[index];
  }
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return std::string(host) + "/gpu " + gpu;
}

// Every rank publishes its placement in the store and reads all of them, so that every rank
// reaches the same answer: whether all ranks are CUDA ranks, each on a GPU no other rank uses.
[[maybe_unused]] bool gpus_of_their_own(c10d::Store& store, const DistributedEnv& env, const c10::Device& device) {
  const std::string mine = placement(device);
  store.set("xformer/placement/" + std::to_string(env.rank), std::vector<uint8_t>(mine.begin(), mine.end()));
  std::set<std::string> seen;
  for (int r = 0; r < env.world_size; ++r) {
    const auto value = store.get("xformer/placement/" + std::to_string(r));
    const std::string where(value.begin(), value.end());
    if (where == "cpu" || !seen.insert(where).second) return false;
  }
  return true;
}

}  // namespace

// c10d's process groups derive from Backend in LibTorch 2.x, from ProcessGroup in 1.13; both
// have the same collective calls.
#if TORCH_VERSION_MAJOR >= 2
using ProcessGroupBase = c10d::Backend;
#else
using ProcessGroupBase = c10d::ProcessGroup;
#endif

struct Communicator::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<ProcessGroupBase> group;
  c10::Device device = c10::kCPU;
};

Communicator::Communicator(const DistributedEnv& env_in, const c10::Device& device,
                           std::chrono::milliseconds timeout)
    : env_(env_in), timeout_(timeout), impl_(std::make_unique<Impl>()) {
  impl_->device = device;
  try {
    c10d::TCPStoreOptions o;
    o.port = static_cast<std::uint16_t>(env_.master_port);
    o.isServer = env_.rank == 0;
    o.numWorkers = static_cast<std::size_t>(env_.world_size);
    o.waitWorkers = true;
    o.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, o);
  } catch (const std::exception& e) {
    const std::string where = env_.master_addr + ":" + std::to_string(env_.master_port);
    std::string what = e.what();
    if (const auto* c = dynamic_cast<const c10::Error*>(&e)) what = c->what_without_backtrace();
    what = what.substr(0, what.find('\n'));
    if (env_.rank == 0 && what.find("in use") != std::string::npos)
      throw Error("rank 0 cannot serve the TCPStore at " + where + ": the port is in use (" + what +
                  "); set MASTER_PORT to a free port");
    fail("meeting the other ranks at the TCPStore " + where, e);
  }
  try {
#if XFORMER_HAVE_NCCL
    // NCCL needs every rank on a GPU of its own (it refuses two ranks on one); otherwise Gloo.
    if (gpus_of_their_own(*impl_->store, env_, device)) {
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = timeout;
      impl_->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, env_.rank, env_.world_size, o);
      backend_ = "nccl";
      return;
    }
#endif
    auto o = c10d::ProcessGroupGloo::Options::create(timeout);
    const bool loopback = env_.master_addr == "127.0.0.1" || env_.master_addr == "localhost";
    if (const char* ifname = env("GLOO_SOCKET_IFNAME"))
      o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (loopback)  // all ranks on this machine: no need to resolve the host name
      o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env_.rank, env_.world_size, o);
    backend_ = "gloo";
  } catch (const std::exception& e) {
    fail("creating the process group", e);
  }
}

Communicator::~Communicator() = default;

void Communicator::fail(const std::string& operation, const std::exception& e) const {
  std::string what = e.what();
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) what = c->what_without_backtrace();
  what = what.substr(0, what.find('\n'));
  throw Error("rank " + std::to_string(env_.rank) + " of " + std::to_string(env_.world_size) + ": " +
              operation + " failed (" + what + "); another rank has probably stopped or hung, see its log" +
              " (collectives time out after train.dist_timeout = " +
              std::to_string(timeout_.count() / 1000) + " s)");
}

std::function<void()> Communicator::start_all_reduce(const at::Tensor& flat) {
  c10::intrusive_ptr<c10d::Work> work;
  try {
    std::vector<at::Tensor> io{flat};
    work = impl_->group->allreduce(io);
  } catch (const std::exception& e) {
    fail("all-reduce of gradients", e);
  }
  return [this, work] {
    try {
      work->wait();
    } catch (const std::exception& e) {
      fail("all-reduce of gradients", e);
    }
  };
}

std::vector<double> Communicator::all_reduce_values(const std::vector<double>& values) {
  if (values.empty()) return values;
  auto t = torch::tensor(values, torch::kDouble).to(impl_->device);
  try {
    std::vector<at::Tensor> io{t};
    impl_->group->allreduce(io)->wait();
  } catch (const std::exception& e) {
    fail("all-reduce of training statistics", e);
  }
  t = t.cpu();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

void Communicator::average(const std::vector<at::Tensor>& tensors) {
  try {
    std::vector<c10::intrusive_ptr<c10d::Work>> works;  // all started before the first is awaited
    for (const auto& t : tensors) {
      std::vector<at::Tensor> io{t};
      works.push_back(impl_->group->allreduce(io));
    }
    for (auto& w : works) w->wait();
  } catch (const std::exception& e) {
    fail("all-reduce of buffers", e);
  }
  for (const auto& t : tensors) t.div_(env_.world_size);
}

void Communicator::broadcast_from_rank0(const std::vector<at::Tensor>& tensors) {
  try {
    for (const auto& t : tensors) {
      std::vector<at::Tensor> io{t};
      impl_->group->broadcast(io)->wait();
    }
  } catch (const std::exception& e) {
    fail("broadcast of rank 0's parameters", e);
  }
}

std::string Communicator::broadcast_text(const std::string& text) {
  auto size = torch::tensor({static_cast<int64_t>(text.size())}, torch::kLong).to(impl_->device);
  broadcast_from_rank0({size});
  const int64_t n = size.item<int64_t>();
  auto bytes = torch::zeros({std::max<int64_t>(n, 1)}, torch::kUInt8);
  if (env_.rank == 0) std::copy(text.begin(), text.end(), bytes.data_ptr<uint8_t>());
  bytes = bytes.to(impl_->device);
  broadcast_from_rank0({bytes});
  bytes = bytes.cpu();
  return std::string(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), static_cast<size_t>(n));
}

std::vector<at::Tensor> Communicator::all_gather(const at::Tensor& tensor) {
  auto local = tensor.to(impl_->device).contiguous();
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < env_.world_size; ++r) out[0].push_back(torch::empty_like(local));
  try {
    std::vector<at::Tensor> in{local};
    impl_->group->allgather(out, in)->wait();
  } catch (const std::exception& e) {
    fail("all-gather", e);
  }
  return out[0];
}

void Communicator::barrier() {
  try {
    c10d::BarrierOptions o;  // NCCL: this rank's GPU (it would otherwise guess from the rank)
    if (backend_ == "nccl") o.device_ids = {impl_->device.index()};
    impl_->group->barrier(o)->wait();
  } catch (const std::exception& e) {
    fail("barrier", e);
  }
}

#else  // no c10d Gloo in this build

struct Communicator::Impl {};

Communicator::Communicator(const DistributedEnv& env_in, const c10::Device&, std::chrono::milliseconds timeout)
    : env_(env_in), timeout_(timeout) {
  throw ConfigError("this build has no multi-process training: c10d's Gloo headers were not found "
                    "at build time (install libgloo-dev and rebuild)");
}
Communicator::~Communicator() = default;
void Communicator::fail(const std::string& operation, const std::exception& e) const { throw e; }
std::function<void()> Communicator::start_all_reduce(const at::Tensor&) { return [] {}; }
std::vector<double> Communicator::all_reduce_values(const std::vector<double>& v) { return v; }
void Communicator::average(const std::vector<at::Tensor>&) {}
void Communicator::broadcast_from_rank0(const std::vector<at::Tensor>&) {}
std::string Communicator::broadcast_text(const std::string& text) { return text; }
std::vector<at::Tensor> Communicator::all_gather(const at::Tensor& t) { return {t}; }
void Communicator::barrier() {}

#endif

}  // namespace xformer::train
