#include "xformer/core/remove_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "xformer/core/error.h"

namespace xformer {
namespace {

// Removes what folder `dir` (an open descriptor, closed here) holds; `where` names it in errors.
// Returns "" or the failure.
std::string remove_contents(int dir, const std::string& where) {
  const std::unique_ptr<DIR, int (*)(DIR*)> stream(fdopendir(dir), closedir);  // closes `dir` too
  if (stream == nullptr) {
    const std::string why = std::strerror(errno);
    close(dir);
    return "cannot read folder " + where + ": " + why;
  }
  // Names first, removal after: a folder is not changed while it is being read.
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* entry = readdir(stream.get())) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  std::string failure = errno != 0 ? "cannot read folder " + where + ": " + std::strerror(errno) : "";
  for (size_t i = 0; failure.empty() && i < names.size(); ++i) {
    const std::string& name = names[i];
    const std::string child = where + "/" + name;
    struct stat st;
    if (fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) failure = "cannot inspect " + child + ": " + std::strerror(errno);
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      const int sub = openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) {
        if (errno != ENOENT) failure = "cannot open folder " + child + ": " + std::strerror(errno);
        continue;
      }
      failure = remove_contents(sub, child);
    }
    if (failure.empty() && unlinkat(dir, name.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0 &&
        errno != ENOENT)
      failure = "cannot remove " + child + ": " + std::strerror(errno);
  }
  return failure;
}

std::string remove_path(std::string path) {
  // "link/" would name the folder a link points to: the link itself is what goes.
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  struct stat st;
  if (lstat(path.c_str(), &st) != 0)
    return errno == ENOENT ? "" : "cannot inspect " + path + ": " + std::strerror(errno);
  if (S_ISDIR(st.st_mode)) {
    const int dir = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir < 0) return "cannot open folder " + path + ": " + std::strerror(errno);
    std::string failure = remove_contents(dir, path);
    if (!failure.empty()) return failure;
    if (rmdir(path.c_str()) != 0 && errno != ENOENT) return "cannot remove " + path + ": " + std::strerror(errno);
    return "";
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return "cannot remove " + path + ": " + std::strerror(errno);
  return "";
}

}  // namespace

void remove_tree(const std::string& path) {
  const std::string failure = remove_path(path);
  if (!failure.empty()) throw DataError(failure);
}

bool remove_tree_noexcept(const std::string& path) noexcept {
  try {
    return remove_path(path).empty();
  } catch (...) {  // std::bad_alloc building a message
    return false;
  }
}

}  // namespace xformer
