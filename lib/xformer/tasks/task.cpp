#include "xformer/tasks/task.h"

#include <numeric>
#include <random>

#include "xformer/core/error.h"
#include "xformer/core/registry.h"
#include "xformer/tasks/classification.h"
#include "xformer/tasks/detection.h"
#include "xformer/tasks/image.h"
#include "xformer/tasks/music.h"
#include "xformer/tasks/translation.h"

namespace xformer {

void declare_split_folders(Schema& s, const std::string& root, const std::string& what, const std::string& note) {
  s.add("task.train", KeyType::String, root + "/train", "Folder of training " + what + " (searched recursively)." + note);
  s.add("task.valid", KeyType::String, root + "/valid", "Folder of validation " + what + "." + note);
  s.add("task.test", KeyType::String, root + "/test", "Folder of test " + what + "." + note);
}

torch::Tensor to_device(const torch::Tensor& host, const torch::Device& device) {
  if (!device.is_cuda()) return host.to(device);
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

void EpochOrder::begin(int64_t items, uint64_t seed, int64_t epoch) {
  seed_ = seed, epoch_ = epoch, position_ = 0;
  std::mt19937_64 rng(seed * 1000003ULL + static_cast<uint64_t>(epoch));
  order_.resize(items);
  std::iota(order_.begin(), order_.end(), 0);
  std::shuffle(order_.begin(), order_.end(), rng);
}

std::optional<std::vector<int64_t>> EpochOrder::next(int64_t batch_size) {
  const int64_t begin = position_ * batch_size;
  if (begin >= static_cast<int64_t>(order_.size())) return std::nullopt;
  ++position_;
  return std::vector<int64_t>(order_.begin() + begin,
                              order_.begin() + std::min<int64_t>(begin + batch_size, order_.size()));
}

uint64_t EpochOrder::batch_seed() const {
  return (seed_ * 1000003ULL + static_cast<uint64_t>(epoch_)) * 7919ULL + static_cast<uint64_t>(position_ - 1);
}

void EpochOrder::load_state(const json& state, int64_t items, uint64_t seed) {
  begin(items, seed, state.at("epoch"));
  position_ = state.at("position");
}

torch::Tensor pixels_to_input(const torch::Tensor& pixels) { return pixels.to(torch::kFloat).div(127.5).sub_(1.0); }

std::string split_name(Split split) {
  switch (split) {
    case Split::Train: return "train";
    case Split::Valid: return "valid";
    case Split::Test: return "test";
  }
  return "?";
}

Split parse_split(const std::string& name) {
  if (name == "train") return Split::Train;
  if (name == "valid") return Split::Valid;
  if (name == "test") return Split::Test;
  throw ConfigError("usage error: --split must be train, valid or test, got '" + name + "'");
}

void register_builtins() {
  auto& r = Registry::get();
  tasks::register_translation(r);
  tasks::register_music(r);
  tasks::register_image_tasks(r);
  tasks::register_classification(r);
  tasks::register_detection(r);
}

Metrics Task::model_stats() {
  double n = 0;
  for (const auto& p : model()->parameters()) n += static_cast<double>(p.numel());
  return {{"parameters", n}};
}

}  // namespace xformer
