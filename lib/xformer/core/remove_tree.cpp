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

std::string failed(const std::string& what, const std::string& path) {
  return "cannot " + what + " " + path + ": " + std::strerror(errno);
}

// Removes entry `name` of the folder open as `dir` (`where` names the entry in errors), with all
// it holds when it is a folder; links are removed, not followed. An entry that is gone already
// is no failure. Returns "" or the failure.
std::string remove_entry(int dir, const std::string& name, const std::string& where) {
  struct stat st;
  if (fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? "" : failed("inspect", where);
  if (S_ISDIR(st.st_mode)) {
    const int sub = openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) return errno == ENOENT ? "" : failed("open folder", where);
    const std::unique_ptr<DIR, int (*)(DIR*)> stream(fdopendir(sub), closedir);  // closes `sub` too
    if (stream == nullptr) {
      const std::string failure = failed("read folder", where);
      close(sub);
      return failure;
    }
    // Names first, removal after: a folder is not changed while it is being read.
    std::vector<std::string> names;
    errno = 0;
    while (const dirent* entry = readdir(stream.get()))
      if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0) names.push_back(entry->d_name);
    if (errno != 0) return failed("read folder", where);
    for (const auto& child : names)
      if (auto failure = remove_entry(sub, child, where + "/" + child); !failure.empty()) return failure;
  }
  if (unlinkat(dir, name.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0 && errno != ENOENT)
    return failed("remove", where);
  return "";
}

std::string remove_path(std::string path) {
  // "link/" would name the folder a link points to: the link itself is what goes.
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  const std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const std::string name = path.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") return "cannot remove " + path + ": name a file or folder by its own name";
  const int dir = open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return errno == ENOENT ? "" : failed("remove", path);
  std::string failure = remove_entry(dir, name, path);
  close(dir);
  return failure;
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
