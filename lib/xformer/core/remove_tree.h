// Removing a folder with everything in it, without std::filesystem::remove_all.
//
// PyTorch 2.x wheels' libtorch_cpu.so exports copies of parts of libstdc++'s std::filesystem;
// where a program's calls bind to those, std::filesystem::remove_all crashes (docs/gpu.md). This
// is the same operation on plain POSIX calls, so that no run-directory or test cleanup depends
// on which copy the dynamic linker picked.
#pragma once
#include <string>

namespace xformer {

// Removes `path` and, when it is a folder, everything inside it (symbolic links are removed,
// never followed). A path that does not exist is not an error. DataError naming the entry that
// could not be removed, and why.
void remove_tree(const std::string& path);

// As remove_tree, but reports failure by returning false: for destructors and cleanup paths.
bool remove_tree_noexcept(const std::string& path) noexcept;

}  // namespace xformer
