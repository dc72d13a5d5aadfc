#include "xformer/core/atomic_file.h"

#include <fcntl.h>

#include <cerrno>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "xformer/core/error.h"

namespace fs = std::filesystem;

namespace xformer {

std::string temp_path_for(const std::string& path) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return path + ".tmp." + host + "." + std::to_string(::getpid());
}

std::string temporary_target(const std::string& name) {
  const auto tmp = name.find(".tmp.");
  return tmp == std::string::npos ? "" : name.substr(0, tmp);
}

void write_file_atomically(const std::string& path, const std::string& text) {
  const fs::path target(path);
  std::error_code ec;
  if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
  const std::string tmp = temp_path_for(path);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw DataError("cannot write '" + tmp + "'");
  }
  commit_file(tmp, path);
}

namespace {
// fsync of a file or folder; false when it cannot be opened or synced. A filesystem that
// does not sync (some FUSE, 9p or read-only mounts: EINVAL, ENOTSUP, EROFS) counts as synced.
bool sync(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0 || errno == EINVAL || errno == ENOTSUP || errno == EROFS;
  ::close(fd);
  return ok;
}
}  // namespace

void commit_file(const std::string& tmp, const std::string& path) {
  std::error_code ec;
  const char* failed = nullptr;
  if (!sync(tmp, O_RDONLY)) failed = "syncing";
  else if (fs::rename(tmp, path, ec); ec) failed = "renaming";
  if (failed) {
    fs::remove(tmp, ec);
    throw DataError("cannot write '" + path + "' (" + failed + " its temporary file failed)");
  }
  // The folder's entry: best effort (some filesystems do not sync folders).
  const fs::path parent = fs::path(path).parent_path();
  sync(parent.empty() ? "." : parent.string(), O_RDONLY | O_DIRECTORY);
}

}  // namespace xformer
