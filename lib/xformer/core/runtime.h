// Process-wide runtime settings: device choice, CPU thread counts, interrupt handling.
#pragma once
#include <torch/torch.h>

#include <string>

namespace xformer {

// "auto" -> CUDA when available, else CPU. ConfigError for "cuda" without a GPU.
torch::Device resolve_device(const std::string& name);

// Sets LibTorch intra-op threads and OpenBLAS threads (0 = the defaults chosen in
// docs/performance.md). Returns a one-line description for the log.
std::string configure_threads(int64_t torch_threads, int64_t blas_threads);

// SIGINT/SIGTERM set a flag instead of killing the process; the trainer polls it after each
// update, saves a checkpoint and exits with 130. A second signal exits at once.
void install_interrupt_handler();
bool interrupt_requested();
void reset_interrupt();  // tests

}  // namespace xformer
