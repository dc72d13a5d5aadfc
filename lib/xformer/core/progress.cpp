#include "xformer/core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace xformer {

ProgressBar::ProgressBar(int64_t total, bool show)
    : total_(total), enabled_(show && isatty(STDERR_FILENO)), start_(std::chrono::steady_clock::now()) {}

void ProgressBar::update(int64_t done, const std::string& status) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (start_done_ < 0) start_done_ = done, start_ = now;
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(200)) return;
  last_draw_ = now;
  const double secs = std::chrono::duration<double>(now - start_).count();
  const double rate = secs > 0 ? (done - start_done_) / secs : 0;
  char line[256];
  if (total_ > 0) {
    const int width = 30;
    int filled = static_cast<int>(width * std::min<double>(1.0, double(done) / total_));
    std::string bar(filled, '#');
    bar.resize(width, '.');
    const double eta = rate > 0 ? (total_ - done) / rate : 0;
    std::snprintf(line, sizeof line, "\r[%s] %lld/%lld  %.2f it/s  ETA %02d:%02d  %s", bar.c_str(),
                  (long long)done, (long long)total_, rate, int(eta) / 60, int(eta) % 60,
                  status.c_str());
  } else {
    std::snprintf(line, sizeof line, "\r%lld  %.2f it/s  %s", (long long)done, rate, status.c_str());
  }
  std::fputs(line, stderr);
  std::fputs("\033[K", stderr);
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::clear() {
  if (enabled_ && drawn_) {
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
    drawn_ = false;
  }
}

}  // namespace xformer
