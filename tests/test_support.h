// Shared by the tests: LibTorch before Catch2 (Debian's LibTorch pulls in glog, whose CHECK
// macro would otherwise replace Catch2's), paths of the source tree and the binary, temp dirs.
#pragma once
#include <torch/torch.h>
#undef CHECK
#include <catch2/catch.hpp>

#include <filesystem>
#include <functional>
#include <string>

#include "test_paths.h"
#include "xformer/core/error.h"
#include "xformer/models/transformer.h"

namespace xformer::testing {

// The xformer::Error that `fn` throws (a failed check when it throws none).
inline Error thrown_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e;
  }
  FAIL("expected an xformer::Error");
  return Error("unreachable");
}

inline std::string source_path(const std::string& relative) {
  return std::string(XFORMER_SOURCE_DIR) + "/" + relative;
}

// A fresh empty directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  explicit TempDir(const std::string& name);
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::string str(const std::string& child = "") const {
    return child.empty() ? path_.string() : (path_ / child).string();
  }

 private:
  std::filesystem::path path_;
};

// Writes a CIFAR-10 binary batch of `records` images: record r has label (7 - r) % 10 and the
// value (r * 50 + c * 80 + p) % 256 at pixel p (= 32 y + x) of channel plane c.
void write_cifar10_batch(const std::string& path, int records);

// A TCP port on the loopback interface that was free a moment ago (for TCPStores).
int free_port();

// Max |a - b|, for parity checks.
// Equal up to rounding (1e-12 relative or absolute): a metric computed two ways.
inline Approx near(double x) { return Approx(x).epsilon(1e-12).margin(1e-12); }

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

// A small Transformer for model tests: vocabulary 13 (pad 0), width 16, 2 heads, no dropout.
inline models::TransformerOptions small_transformer_options() {
  models::TransformerOptions o;
  o.src_vocab = o.tgt_vocab = 13;
  o.pad_id = 0;
  o.d_model = 16;
  o.heads = 2;
  o.ffn_dim = 32;
  o.encoder_layers = 1;
  o.decoder_layers = 2;
  o.dropout = 0.0;
  o.max_positions = 32;
  return o;
}

}  // namespace xformer::testing
