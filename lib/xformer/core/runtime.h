// Process-wide runtime settings: device choice, CPU thread counts, interrupt handling.
#pragma once
#include <c10/core/Device.h>
#include <cstdint>
#include <string>

namespace xformer {

// Call first in main(). Debian 12's OpenBLAS (0.3.21) does not recognise some recent CPUs and
// falls back to its Prescott (SSE3) kernels, ~4x slower on sgemm than its AVX-512 ones on the
// same core. When that happened on a CPU with AVX-512 (or AVX2), the process restarts itself
// once with OPENBLAS_CORETYPE set (OpenBLAS reads it when loaded, before main). A value the
// user set is never changed.
void ensure_fast_blas_kernels(char** argv);

// Call early in main(). Keeps memory freed by one training step in the process for the next
// (glibc otherwise maps blocks above a few MB fresh each time and pays a page fault per 4 KB
// on first touch): blocks up to 32 MB come from the heap, and up to 1 GB of free heap is
// kept. Measured +4-7% training throughput on the benchmark model (docs/performance.md).
// Skipped when the user tunes malloc through GLIBC_TUNABLES.
void keep_freed_memory_for_reuse();

// The OpenBLAS kernel family in use ("SkylakeX", "Haswell", ...), or "" if not OpenBLAS.
std::string blas_core_name();

// "auto" -> CUDA when available, else CPU. ConfigError for "cuda" without a GPU.
c10::Device resolve_device(const std::string& name);

// The GPU of local rank `local_rank` (one per rank, shared round-robin when there are fewer),
// made the current device so that every CUDA call of the process (NCCL's included) uses it;
// `device` itself when it is not CUDA.
c10::Device device_for_local_rank(const c10::Device& device, int local_rank);

// The cores this process may run on (its CPU affinity, which Slurm and taskset restrict),
// at least 1.
int available_cores();

// Sets LibTorch intra-op threads and OpenBLAS threads (0 = the defaults chosen in
// docs/performance.md). Returns a one-line description for the log.
std::string configure_threads(int64_t torch_threads, int64_t blas_threads);

// SIGINT/SIGTERM set a flag instead of killing the process; the trainer polls it after each
// update, saves a checkpoint and exits with 130. A second signal exits at once.
void install_interrupt_handler();
bool interrupt_requested();
void reset_interrupt();  // tests

}  // namespace xformer
