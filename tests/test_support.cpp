#include "test_support.h"

#include <unistd.h>

#include <atomic>

namespace xformer::testing {

TempDir::TempDir(const std::string& name) {
  static std::atomic<int> counter{0};
  path_ = std::filesystem::temp_directory_path() /
          ("xformer_test_" + name + "_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace xformer::testing
