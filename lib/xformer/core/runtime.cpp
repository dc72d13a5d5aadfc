#include "xformer/core/runtime.h"

#include <c10/core/impl/VirtualGuardImpl.h>

#include <dlfcn.h>
#include <sched.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <csignal>
#include <thread>
#include <unistd.h>

#include "xformer/core/error.h"

namespace xformer {

torch::Device resolve_device(const std::string& name) {
  const bool cuda = torch::cuda::is_available();
  if (name == "cuda" && !cuda)
    throw ConfigError("config error: train.device is 'cuda' but no CUDA device is available");
  if (name == "cuda" || (name == "auto" && cuda)) return torch::Device(torch::kCUDA);
  return torch::Device(torch::kCPU);
}

torch::Device device_for_local_rank(const torch::Device& device, int local_rank) {
  if (!device.is_cuda()) return device;
  const auto count = std::max<int64_t>(1, static_cast<int64_t>(torch::cuda::device_count()));
  const torch::Device mine(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % count));
  c10::impl::VirtualGuardImpl(torch::kCUDA).setDevice(mine);
  return mine;
}

std::string blas_core_name() {
  using CoreFn = char* (*)();
  auto fn = reinterpret_cast<CoreFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return fn ? std::string(fn()) : std::string();
}

void ensure_fast_blas_kernels(char** argv) {
  if (getenv("OPENBLAS_CORETYPE") || getenv("XFORMER_BLAS_RESTARTED")) return;
  std::string core = blas_core_name();
  std::transform(core.begin(), core.end(), core.begin(), ::tolower);
  if (core != "prescott") return;
  const char* better = __builtin_cpu_supports("avx512f") ? "SkylakeX"
                       : __builtin_cpu_supports("avx2")  ? "Haswell"
                                                         : nullptr;
  if (!better) return;
  setenv("OPENBLAS_CORETYPE", better, 1);
  setenv("XFORMER_BLAS_RESTARTED", "1", 1);  // never loop
  execv("/proc/self/exe", argv);             // returns only on failure: go on as we are
}

namespace {
// OpenBLAS is whatever libblas LibTorch loaded; reach its thread setter without linking it.
bool set_blas_threads(int n) {
  using SetFn = void (*)(int);
  auto fn = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (!fn) return false;
  fn(n);
  return true;
}
}  // namespace

void keep_freed_memory_for_reuse() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables && std::string(tunables).find("malloc") != std::string::npos) return;
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

std::string configure_threads(int64_t torch_threads, int64_t blas_threads) {
  // Local ranks of a multi-process job (LOCAL_WORLD_SIZE, set by torchrun and --nproc) share
  // the cores out.
  const char* local_ranks = std::getenv("LOCAL_WORLD_SIZE");
  const int64_t sharing = std::max<int64_t>(1, local_ranks ? std::atoll(local_ranks) : 1);
  const int64_t cores = std::max<int64_t>(1, available_cores() / sharing);
  // Defaults measured on a 2-core machine (docs/performance.md): GEMMs dominate, and LibTorch's
  // OpenMP pool spinning next to OpenBLAS's own threads slows both, so LibTorch gets one
  // thread and OpenBLAS one per core.
  const int64_t t = torch_threads > 0 ? torch_threads : 1;
  const int64_t b = blas_threads > 0 ? blas_threads : cores;
  torch::set_num_threads(t);
  bool blas = set_blas_threads(static_cast<int>(b));
  return "threads: torch " + std::to_string(t) + ", blas " +
         (blas ? std::to_string(b) + " (OpenBLAS " + blas_core_name() + ")"
               : std::string("n/a (not OpenBLAS)")) +
         ", " + std::to_string(cores) + " cores";
}

namespace {
std::atomic<int> g_signals{0};
extern "C" void on_signal(int) {
  if (g_signals.fetch_add(1) >= 1) _exit(kExitInterrupted);  // second signal: leave now
  // Said at once (write is async-signal-safe): the update under way may take a while to finish.
  static const char kNote[] = "\ninterrupt: stopping after the current update with a checkpoint (interrupt again to quit at once, without one)\n";
  if (write(STDERR_FILENO, kNote, sizeof(kNote) - 1) < 0) {}
}
}  // namespace

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool interrupt_requested() { return g_signals.load() > 0; }
void reset_interrupt() { g_signals.store(0); }

}  // namespace xformer
