#include "xformer/sweep/sweep_state.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "xformer/core/atomic_file.h"
#include "xformer/core/error.h"
#include "xformer/core/json_file.h"

namespace fs = std::filesystem;

namespace xformer::sweep {

std::string plan_path(const std::string& output) { return (fs::path(output) / "sweep.json").string(); }
std::string status_path(const std::string& output, const std::string& trial) {
  return (fs::path(output) / "trials" / (trial + ".json")).string();
}
std::string log_path(const std::string& output, const std::string& trial) {
  return (fs::path(output) / "logs" / (trial + ".log")).string();
}
std::string run_path(const std::string& output, const std::string& trial) {
  return (fs::path(output) / trial).string();
}

namespace {
nlohmann::json read_json(const std::string& path) {
  return read_json_file(path, "'" + path + "'", kExitFailure);
}
}  // namespace

nlohmann::json plan_json(const SweepSpec& spec) {
  nlohmann::json trials = nlohmann::json::array();
  for (const auto& t : spec.trials) {
    nlohmann::json settings = nlohmann::json::array();
    for (const auto& [key, value] : t.settings) settings.push_back({key, value});
    trials.push_back({{"index", t.index}, {"name", t.name}, {"settings", settings},
                      {"overrides", trial_overrides(spec, t)}});
  }
  std::error_code ec;
  const fs::path abs = fs::absolute(spec.file, ec);
  return {{"format", 1},
          {"sweep_file", ec ? spec.file : abs.lexically_normal().string()},
          {"name", spec.name},
          {"base", spec.base},
          {"axes", spec.axes},
          {"metric", spec.metric},
          {"mode", spec.mode},
          {"eval", {{"enabled", spec.eval.enabled}, {"split", spec.eval.split}, {"checkpoint", spec.eval.checkpoint}}},
          {"retries", spec.retries},
          {"trials", trials}};
}

void write_plan(const SweepSpec& spec) {
  write_file_atomically(plan_path(spec.output), plan_json(spec).dump(2) + "\n");
}

nlohmann::json read_plan(const std::string& output) {
  const std::string path = plan_path(output);
  if (!fs::exists(path))
    throw ConfigError("'" + output + "' is not a sweep directory (no sweep.json; run `xformer sweep --config FILE` first)");
  return read_json(path);
}

nlohmann::json read_status(const std::string& output, const std::string& trial) {
  const std::string path = status_path(output, trial);
  if (!fs::exists(path)) return {{"name", trial}, {"status", kPending}, {"attempts", 0}};
  // A status file is only ever renamed into place, so a bad one is damage from outside: the
  // trial counts as not done (it is then run again, resuming from its checkpoint).
  nlohmann::json status;
  try {
    status = read_json(path);
  } catch (const Error&) {
  }
  const bool sound = status.is_object() && status.value("status", nlohmann::json()).is_string() &&
                     status.value("attempts", nlohmann::json(0)).is_number_integer() &&
                     status.value("exit_codes", nlohmann::json::array()).is_array();
  if (sound) return status;
  spdlog::warn("sweep: '{}' is damaged; trial {} counts as not done", path, trial);
  return {{"name", trial}, {"status", kPending}, {"attempts", 0}};
}

void write_status(const std::string& output, const std::string& trial, const nlohmann::json& status) {
  write_file_atomically(status_path(output, trial), status.dump(2) + "\n");
}

}  // namespace xformer::sweep
