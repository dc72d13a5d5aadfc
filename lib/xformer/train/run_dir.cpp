#include "xformer/train/run_dir.h"

#include <filesystem>
#include <fstream>

#include "xformer/core/error.h"

namespace fs = std::filesystem;

namespace xformer::train {

void prepare_run_dir(const std::string& dir, bool resume, bool force) {
  const bool non_empty = fs::exists(dir) && !fs::is_empty(dir);
  if (non_empty && !resume && !force)
    throw ConfigError("run directory '" + dir +
                      "' is not empty: pass --resume to continue it or --force to start over");
  if (non_empty && force && !resume) {
    for (const auto& entry : fs::directory_iterator(dir)) fs::remove_all(entry.path());
  }
  if (resume && !fs::exists(fs::path(dir) / "checkpoints" / "last.pt"))
    throw ConfigError("--resume: run directory '" + dir + "' has no checkpoints/last.pt");
  fs::create_directories(fs::path(dir) / "checkpoints");
  fs::create_directories(fs::path(dir) / "samples");
}

nlohmann::json read_run_config(const std::string& dir) {
  const auto path = (fs::path(dir) / "config.json").string();
  std::ifstream in(path);
  if (!in) throw ConfigError("'" + dir + "' is not a run directory (no config.json)");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw DataError("'" + path + "' is corrupt: " + e.what());
  }
}

void write_run_config(const std::string& dir, const nlohmann::json& config) {
  const auto path = fs::path(dir) / "config.json";
  const auto tmp = fs::path(dir) / "config.json.tmp";
  {
    std::ofstream out(tmp);
    out << config.dump(2) << "\n";
    if (!out) throw DataError("cannot write '" + tmp.string() + "'");
  }
  fs::rename(tmp, path);
}

void append_metrics(const std::string& dir, const nlohmann::json& record) {
  std::ofstream out(fs::path(dir) / "metrics.jsonl", std::ios::app);
  out << record.dump() << "\n";
}

}  // namespace xformer::train
