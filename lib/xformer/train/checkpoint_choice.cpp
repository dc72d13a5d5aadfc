#include "xformer/train/checkpoint_choice.h"

#include "xformer/core/error.h"

namespace xformer::train {

int averaged_checkpoint_count(const std::string& which) {
  const std::string prefix = "average:";
  if (which.rfind(prefix, 0) != 0) return 0;
  const std::string count = which.substr(prefix.size());
  if (count.empty() || count.size() > 9 || count.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(count) < 1)
    throw ConfigError("usage error: --checkpoint " + which + ": expected average:N with N >= 1 step checkpoints");
  return std::stoi(count);
}

}  // namespace xformer::train
