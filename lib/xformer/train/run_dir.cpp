#include "xformer/train/run_dir.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "xformer/core/atomic_file.h"
#include "xformer/core/error.h"
#include "xformer/core/json_file.h"

namespace fs = std::filesystem;

namespace xformer::train {

namespace {
constexpr const char* kLockFile = ".lock";

// Whether `name` is something xformer writes in a run directory: the trainer's files, the
// tasks' (tokenizer.model, classes.json), or a temporary file an interrupted write left behind.
bool written_by_xformer(const fs::directory_entry& entry) {
  static const std::set<std::string> kEntries = {kLockFile,       "config.json", "train.log",   "metrics.jsonl",
                                                 "checkpoints",   "samples",     "tensorboard", "tokenizer.model",
                                                 "classes.json"};
  const std::string name = entry.path().filename().string();
  if (name == "tensorboard") {  // a common folder name elsewhere: ours holds only our event files
    std::error_code ec;
    for (const auto& inside : fs::directory_iterator(entry.path(), ec))
      if (inside.path().filename().string().rfind("events.out.tfevents.", 0) != 0 || !inside.is_regular_file(ec))
        return false;
    return !ec;
  }
  if (kEntries.count(name)) return true;
  const auto tmp = name.find(".tmp.");  // NAME.tmp.HOST.PID, a file (core/atomic_file)
  std::error_code ec;
  return tmp != std::string::npos && kEntries.count(name.substr(0, tmp)) && entry.is_regular_file(ec);
}

// --force deletes what is in `dir`: only ever a run directory's own files, so that a mistyped
// --run-dir (a home or project folder, "/") loses nothing. Checked before anything is written.
void check_only_run_files(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!written_by_xformer(entry))
      throw ConfigError("--force: '" + dir + "' holds '" + name +
                        "', which xformer did not write: --force only empties run directories "
                        "(choose another --run-dir, or remove it yourself)");
  }
}

RunDirLock lock_run_dir(const std::string& dir) {
  fs::create_directories(dir);
  const std::string path = (fs::path(dir) / kLockFile).string();
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw DataError("cannot create '" + path + "'");
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    std::string owner;
    std::ifstream(path) >> owner;
    close(fd);
    throw ConfigError("run directory '" + dir + "' is in use by another xformer train (pid " +
                      (owner.empty() ? "unknown" : owner) + ")");
  }
  const std::string pid = std::to_string(getpid()) + "\n";
  if (ftruncate(fd, 0) != 0 || write(fd, pid.data(), pid.size()) < 0) {}  // the pid is informative only
  return RunDirLock(fd);
}
}  // namespace

RunDirLock& RunDirLock::operator=(RunDirLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

RunDirLock::~RunDirLock() {
  if (fd_ >= 0) close(fd_);
}

RunDirLock prepare_run_dir(const std::string& dir, bool resume, bool force) {
  if (force && !resume) check_only_run_files(dir);
  RunDirLock lock = lock_run_dir(dir);
  bool non_empty = false;
  for (const auto& entry : fs::directory_iterator(dir)) non_empty |= entry.path().filename() != kLockFile;
  if (non_empty && !resume && !force)
    throw ConfigError("run directory '" + dir +
                      "' is not empty: pass --resume to continue it or --force to start over");
  if (non_empty && force && !resume) {
    check_only_run_files(dir);  // again, now that the directory is locked
    for (const auto& entry : fs::directory_iterator(dir))
      if (entry.path().filename() != kLockFile) fs::remove_all(entry.path());
  }
  if (resume && !fs::exists(fs::path(dir) / "checkpoints" / "last.pt"))
    throw ConfigError("--resume: run directory '" + dir + "' has no checkpoints/last.pt");
  fs::create_directories(fs::path(dir) / "checkpoints");
  fs::create_directories(fs::path(dir) / "samples");
  return lock;
}

nlohmann::json read_run_config(const std::string& dir) {
  const auto path = (fs::path(dir) / "config.json").string();
  if (!fs::is_regular_file(path)) throw ConfigError("'" + dir + "' is not a run directory (no config.json)");
  auto config = read_json_file(path, "'" + path + "'", kExitFailure);
  // Written whole by train: a missing group means an edit, which defaults must not paper over.
  for (const char* group : {"task", "model", "optim", "train"})
    if (!config.is_object() || !config.contains(group) || !config[group].is_object())
      throw DataError("'" + path + "' has no '" + group + "' group: it is not a whole run config");
  return config;
}

void write_run_config(const std::string& dir, const nlohmann::json& config) {
  write_file_atomically((fs::path(dir) / "config.json").string(), config.dump(2) + "\n");
}

void check_config_fits_checkpoint(const std::string& dir, const nlohmann::json& config, const std::string& option) {
  // What the checkpoint was made for: the model's shape (every model key but dropout rates) and
  // what its inputs and outputs mean (these task keys). Batching, evaluation and sampling keys
  // may change; keys the run's config lacks (added by a later xformer) are not compared.
  static const std::set<std::string> kTaskIdentity = {"name",  "train", "vocab_size", "spm_type",
                                                      "spm_model", "piano_range", "include_drums",
                                                      "size",  "scale", "channels",  "classes"};
  const auto saved = read_run_config(dir);
  for (const char* group : {"task", "model"}) {
    const auto& before = saved.at(group);
    const auto now = config.value(group, nlohmann::json::object());
    for (const auto& [key, value] : before.items()) {
      const bool identity = group == std::string("model") ? key.find("dropout") == std::string::npos
                                                          : kTaskIdentity.count(key) > 0;
      const auto after = now.contains(key) ? now.at(key) : nlohmann::json();
      if (!identity || after == value) continue;
      throw ConfigError("config error: " + option + ": " + std::string(group) + "." + key + " is " + value.dump() +
                        " in '" + (fs::path(dir) / "config.json").string() + "' but " +
                        (after.is_null() ? std::string("unset") : after.dump()) +
                        " now; the checkpoint was made for the run's model and data" +
                        (option == "--resume" ? " (start a new run in another --run-dir)" : ""));
    }
  }
}

void drop_metrics_after(const std::string& dir, int64_t step) {
  const auto path = fs::path(dir) / "metrics.jsonl";
  std::ifstream in(path);
  if (!in) return;
  std::string kept;
  int64_t dropped = 0;
  for (std::string line; std::getline(in, line);) {
    const auto record = nlohmann::json::parse(line, nullptr, false);
    if (record.is_object() && record.contains("step") && record["step"].is_number_integer() &&
        record["step"].get<int64_t>() > step) {
      ++dropped;
      continue;
    }
    kept += line + "\n";
  }
  in.close();
  if (dropped == 0) return;
  write_file_atomically(path.string(), kept);
  spdlog::info("metrics.jsonl: dropped {} lines after step {} (written after the last checkpoint)", dropped, step);
}

void append_metrics(const std::string& dir, const nlohmann::json& record) {
  std::ofstream out(fs::path(dir) / "metrics.jsonl", std::ios::app);
  out << record.dump() << "\n";
}

}  // namespace xformer::train
