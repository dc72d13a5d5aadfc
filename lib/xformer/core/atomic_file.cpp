#include "xformer/core/atomic_file.h"

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
  fs::rename(tmp, target, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw DataError("cannot write '" + path + "' (renaming its temporary file failed)");
  }
}

}  // namespace xformer
