// Training progress on the console: a one-line bar with rate and ETA, redrawn in place, when
// stderr is a terminal; nothing otherwise (periodic log lines carry the same facts).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace xformer {

class ProgressBar {
 public:
  // total <= 0: unknown (no ETA); show = false: never drawn (e.g. on ranks other than 0)
  explicit ProgressBar(int64_t total, bool show = true);
  void update(int64_t done, const std::string& status);
  void clear();  // erase the bar before a log line
  bool enabled() const { return enabled_; }

 private:
  int64_t total_;
  bool enabled_;
  bool drawn_ = false;
  int64_t start_done_ = -1;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace xformer
