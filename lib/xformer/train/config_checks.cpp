#include "xformer/train/config_checks.h"

#include <filesystem>

#include "xformer/core/error.h"
#include "xformer/core/registry.h"
#include "xformer/train/schedule.h"

namespace fs = std::filesystem;

namespace xformer::train {

void check_data_paths_exist(const nlohmann::json& config, const std::vector<std::string>& splits) {
  const auto& task = config.at("task");
  for (const std::string& split : splits) {
    if (!task.contains(split)) continue;
    const auto& value = task.at(split);
    for (const auto& entry : value.is_array() ? value : nlohmann::json::array({value})) {
      if (!entry.is_string()) continue;
      if (entry.get<std::string>().empty()) {
        if (split == "train") throw ConfigError("config error: 'task.train' is empty; it names the training data");
        continue;
      }
      fs::path path = entry.get<std::string>();
      // A file-name pattern (data_batch_[45].bin): its folder must exist.
      if (path.filename().string().find_first_of("*?[") != std::string::npos) path = path.parent_path();
      std::error_code ec;
      if (!path.empty() && !fs::exists(path, ec))
        throw ConfigError("config error: 'task." + split + "' names '" + path.string() +
                          "', which does not exist" +
                          (path.is_relative() ? " in " + fs::current_path().string() : ""));
    }
  }
}

void check_training_config(const nlohmann::json& config) {
  const auto& t = config.at("train");
  if (t.at("max_steps").get<int64_t>() <= 0 && t.at("max_epochs").get<int64_t>() <= 0)
    throw ConfigError("config error: set train.max_steps or train.max_epochs (both are 0)");
  check_best_metric(config);
  check_recompute_activations(config);
  check_schedule(config);
}

}  // namespace xformer::train
