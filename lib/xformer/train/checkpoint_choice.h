// The --checkpoint choices of eval and sample ("last", "best", "average:N", a path), parsed where
// no LibTorch is wanted (sweep files are checked with it before anything runs).
#pragma once
#include <string>

namespace xformer::train {

// "average:N" -> N; any other choice -> 0. ConfigError (exit 2) when N is not a whole number >= 1.
int averaged_checkpoint_count(const std::string& which);

}  // namespace xformer::train
