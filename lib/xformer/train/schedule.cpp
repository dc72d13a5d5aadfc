#include "xformer/train/schedule.h"

#include <algorithm>
#include <cmath>

#include "xformer/core/error.h"

namespace xformer::train {

void check_schedule(const nlohmann::json& config) {
  const auto& o = config.at("optim");
  const std::string kind = o.at("schedule");
  const double lr = o.at("lr"), init = o.at("warmup_init_lr"), min_lr = o.at("min_lr");
  if (o.at("warmup_steps").get<int64_t>() > 0 && init > lr)
    throw ConfigError("config error: optim.warmup_init_lr (" + o.at("warmup_init_lr").dump() +
                      ") is above optim.lr (" + o.at("lr").dump() + "): the warmup climbs from it to lr");
  if (kind != "cosine" && kind != "linear") return;
  if (min_lr > lr)
    throw ConfigError("config error: optim.min_lr (" + o.at("min_lr").dump() + ") is above optim.lr (" +
                      o.at("lr").dump() + "): the '" + kind + "' schedule decays from lr to min_lr");
  const int64_t max_steps = config.at("train").at("max_steps"), warmup = config.at("optim").at("warmup_steps");
  if (max_steps <= warmup)
    throw ConfigError("config error: optim.schedule '" + kind + "' decays to optim.min_lr at train.max_steps, "
                      "so it needs train.max_steps (" + std::to_string(max_steps) + ") > optim.warmup_steps (" +
                      std::to_string(warmup) + ")");
}

double learning_rate(const nlohmann::json& config, int64_t step) {
  const auto& o = config.at("optim");
  const double lr = o.at("lr"), init = o.at("warmup_init_lr");
  const int64_t warmup = o.at("warmup_steps");
  const std::string kind = o.at("schedule");
  if (step < warmup) return init + (lr - init) * static_cast<double>(step) / warmup;
  if (kind == "constant") return lr;
  if (kind == "inverse_sqrt")
    return lr * std::sqrt(static_cast<double>(std::max<int64_t>(warmup, 1)) / static_cast<double>(step));
  // cosine, linear: from lr at the end of warmup to min_lr at max_steps, then min_lr.
  check_schedule(config);
  const int64_t max_steps = config.at("train").at("max_steps");
  const double min_lr = o.at("min_lr");
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / (max_steps - warmup));
  if (kind == "linear") return lr + (min_lr - lr) * progress;
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace xformer::train
