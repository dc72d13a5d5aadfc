// Logging: spdlog to the console and, once a run directory exists, to its train.log.
#pragma once
#include <string>

namespace xformer {

// Console logger named "xformer" (idempotent). `verbose` lowers the level to debug.
void init_logging(bool verbose = false);
// Also write everything from now on to `path` (appending).
void log_to_file(const std::string& path);

}  // namespace xformer
