#include "xformer/train/run_dir.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>

#include "xformer/core/atomic_file.h"
#include "xformer/core/error.h"
#include "xformer/core/json_file.h"
#include "xformer/core/remove_tree.h"

namespace fs = std::filesystem;

namespace xformer::train {

namespace {
constexpr const char* kLockFile = ".lock";

bool is_temporary_of(const std::string& name, const std::function<bool(const std::string&)>& kept) {
  const std::string target = temporary_target(name);
  return !target.empty() && kept(target);
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// Whether every entry of `folder` is a regular file that `wanted` accepts (or its temporary file).
bool holds_only(const fs::path& folder, const std::function<bool(const std::string&)>& wanted) {
  std::error_code ec;
  for (const auto& inside : fs::directory_iterator(folder, ec)) {
    const std::string name = inside.path().filename().string();
    if (!inside.is_regular_file(ec) || !(wanted(name) || is_temporary_of(name, wanted))) return false;
  }
  return !ec;
}

// checkpoints/: last.pt, best.pt, step_NNNNNNNN.pt (8 digits or more).
bool checkpoint_name(const std::string& name) {
  if (name == "last.pt" || name == "best.pt") return true;
  const size_t digits_end = name.size() - 3;
  return starts_with(name, "step_") && name.size() >= 16 && name.compare(digits_end, 3, ".pt") == 0 &&
         name.find_first_not_of("0123456789", 5) == digits_end;
}

// samples/: evaluation outputs (<split>.*, valid_stepN.*) and samples written without --out
// (sample_*, grid.png, and detection's pictures in detections/).
bool samples_entry(const fs::directory_entry& entry) {
  const std::string name = entry.path().filename().string();
  std::error_code ec;
  if (name == "detections" && entry.is_directory(ec))
    return holds_only(entry.path(), [](const std::string& n) { return fs::path(n).extension() == ".png" || n == "detections.json"; });
  if (!entry.is_regular_file(ec)) return false;
  for (const char* prefix : {"train.", "valid.", "test.", "valid_step", "sample_"})
    if (starts_with(name, prefix)) return true;
  return name == "grid.png" || is_temporary_of(name, [](const std::string& n) { return n == "grid.png"; });
}

// Whether `entry` of a run directory is something xformer writes there, checked inside its
// folders too (a --run-dir mistyped onto a user's folder must lose nothing): the trainer's
// files, the tasks' (tokenizer.model, classes.json), or a temporary file an interrupted write
// left behind.
bool written_by_xformer(const fs::directory_entry& entry) {
  static const std::set<std::string> kFiles = {kLockFile, "config.json", "train.log", "metrics.jsonl",
                                               "tokenizer.model", "classes.json"};
  const std::string name = entry.path().filename().string();
  std::error_code ec;
  if (entry.is_directory(ec)) {
    if (name == "tensorboard")
      return holds_only(entry.path(), [](const std::string& n) { return starts_with(n, "events.out.tfevents."); });
    if (name == "checkpoints") return holds_only(entry.path(), checkpoint_name);
    if (name == "samples") {
      for (const auto& inside : fs::directory_iterator(entry.path(), ec))
        if (!samples_entry(inside)) return false;
      return !ec;
    }
    return false;
  }
  const auto ours = [](const std::string& n) { return kFiles.count(n) > 0; };
  return entry.is_regular_file(ec) && (ours(name) || is_temporary_of(name, ours));
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
                        ((name == "checkpoints" || name == "samples" || name == "tensorboard") && entry.is_directory()
                             ? "' with files in it that xformer did not write"
                             : "', which xformer did not write") +
                        ": --force only empties run directories "
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

std::string default_run_dir(const std::string& config_file) {
  const fs::path config = fs::path(config_file).lexically_normal();
  const fs::path folder = config.parent_path().filename();  // "" for a file in the working directory
  const bool named = !folder.empty() && folder != "." && folder != "..";
  return ((named ? fs::path("runs") / folder : fs::path("runs")) / config.stem()).string();
}

RunDirLock prepare_run_dir(const std::string& dir, bool resume, bool force) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw ConfigError("run directory '" + dir + "' is a file, not a folder");
  if (force && !resume) check_only_run_files(dir);
  const auto last = fs::path(dir) / "checkpoints" / "last.pt";
  auto refuse_resume_without_checkpoint = [&] {
    if (resume && !fs::exists(last, ec))
      throw ConfigError("--resume: run directory '" + dir + "' has no checkpoints/last.pt");
  };
  refuse_resume_without_checkpoint();  // before the lock creates a mistyped directory
  const auto holds_files = [&] {  // false for a folder that does not exist yet
    bool found = false;
    for (const auto& entry : fs::directory_iterator(dir, ec)) found |= entry.path().filename() != kLockFile;
    return found;
  };
  const auto refuse_non_empty = [&] {
    throw ConfigError("run directory '" + dir +
                      "' is not empty: pass --resume to continue it or --force to start over");
  };
  if (!resume && !force && holds_files()) refuse_non_empty();  // before the lock adds .lock
  RunDirLock lock = lock_run_dir(dir);
  const bool non_empty = holds_files();
  if (non_empty && !resume && !force) refuse_non_empty();
  if (non_empty && force && !resume) {
    check_only_run_files(dir);  // again, now that the directory is locked
    for (const auto& entry : fs::directory_iterator(dir))
      if (entry.path().filename() != kLockFile) remove_tree(entry.path().string());
  }
  refuse_resume_without_checkpoint();  // again, now that the directory is locked
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
  if (!config["task"].contains("name") || !config["task"]["name"].is_string())
    throw DataError("'" + path + "' names no task (task.name): it is not a whole run config");
  return config;
}

void write_run_config(const std::string& dir, const nlohmann::json& config) {
  write_file_atomically((fs::path(dir) / "config.json").string(), config.dump(2) + "\n");
}

namespace {

struct KeyDifference {
  std::string key;             // "model.heads"
  nlohmann::json before, now;  // null: unset
};

// The first key that says what a checkpoint was made for whose value differs from `before` to
// `now`: the model's shape (every model key but dropout rates) and what its inputs and outputs
// mean (these task keys). Batching, evaluation and sampling keys may change; keys `before` lacks
// (added by a later xformer) are not compared, nor, with `skip_unset`, keys `now` lacks.
std::optional<KeyDifference> first_identity_difference(const nlohmann::json& before, const nlohmann::json& now,
                                                       bool skip_unset) {
  static const std::set<std::string> kTaskIdentity = {"name",  "train", "vocab_size", "spm_type",
                                                      "spm_model", "piano_range", "include_drums",
                                                      "size",  "scale", "channels",  "classes"};
  for (const char* group : {"task", "model"}) {
    const auto was = before.value(group, nlohmann::json::object());
    const auto is = now.value(group, nlohmann::json::object());
    for (const auto& [key, value] : was.items()) {
      const bool identity = group == std::string("model") ? key.find("dropout") == std::string::npos
                                                          : kTaskIdentity.count(key) > 0;
      if (!identity || (skip_unset && !is.contains(key))) continue;
      const auto after = is.contains(key) ? is.at(key) : nlohmann::json();
      if (after != value) return KeyDifference{std::string(group) + "." + key, value, after};
    }
  }
  return std::nullopt;
}

std::string shown(const nlohmann::json& value) { return value.is_null() ? "unset" : value.dump(); }

}  // namespace

void check_config_fits_checkpoint(const std::string& dir, const nlohmann::json& config, const std::string& option) {
  const auto d = first_identity_difference(read_run_config(dir), config, /*skip_unset=*/false);
  if (!d) return;
  throw ConfigError("config error: " + option + ": " + d->key + " is " + shown(d->before) + " in '" +
                    (fs::path(dir) / "config.json").string() + "' but " + shown(d->now) +
                    " now; the checkpoint was made for the run's model and data" +
                    (option == "--resume" ? " (start a new run in another --run-dir)" : ""));
}

void check_checkpoint_fits_config(const std::string& checkpoint, const nlohmann::json& meta, const nlohmann::json& config) {
  if (!meta.contains("config") || !meta.at("config").is_object()) return;
  const auto d = first_identity_difference(meta.at("config"), config, /*skip_unset=*/true);
  if (!d) return;
  throw ConfigError("config error: checkpoint '" + checkpoint + "' was made with " + d->key + " " + shown(d->before) +
                    ", but the run's config has " + shown(d->now) +
                    " (its config.json edited since, or a checkpoint of another run)");
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
