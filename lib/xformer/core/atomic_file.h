// Files that are never seen half-written: written under a temporary name, then renamed.
#pragma once
#include <string>

namespace xformer {

// `path` + ".tmp.<host>.<pid>": a temporary name no other process uses, here or on another
// host sharing the filesystem (Slurm array tasks, parallel trials).
std::string temp_path_for(const std::string& path);

// The file name a temporary file name of temp_path_for stands for ("last.pt.tmp.host.42" ->
// "last.pt"), or "" when `name` is no such name: what an interrupted write left behind.
std::string temporary_target(const std::string& name);

// Gives the finished temporary file `tmp` its real name `path`: its data reaches the disk
// first (fsync), then the rename, then the folder's entry; so after a power cut or an OS crash
// `path` holds the old file or the new one, never a file without its data. Removes `tmp` and
// throws DataError naming `path` on failure.
void commit_file(const std::string& tmp, const std::string& path);

// Writes `text` to `path` through temp_path_for(path) and commit_file, creating the parent
// folder. DataError naming the file on failure.
void write_file_atomically(const std::string& path, const std::string& text);

}  // namespace xformer
