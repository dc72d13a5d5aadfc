// Learning-rate schedules, all with linear warmup from optim.warmup_init_lr to optim.lr:
//   inverse_sqrt  lr * sqrt(warmup / step) after warmup (Vaswani et al. 2017, fairseq's form)
//   cosine        half a cosine from lr down to optim.min_lr at train.max_steps
//   linear        a straight line from lr down to optim.min_lr at train.max_steps
//   constant      lr after warmup
#pragma once
#include <nlohmann/json.hpp>

namespace xformer::train {

// ConfigError unless the schedule can run: the warmup climbs (warmup_init_lr <= lr); cosine and
// linear decay (min_lr <= lr) and need train.max_steps beyond the warmup (see config_checks.h).
void check_schedule(const nlohmann::json& config);

// Learning rate of update number `step` (1-based). `config` is the resolved config.
double learning_rate(const nlohmann::json& config, int64_t step);

}  // namespace xformer::train
