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

std::vector<int64_t> shuffled_indices(int64_t items, uint64_t seed, int64_t epoch) {
  std::mt19937_64 rng(data::epoch_seed(seed, epoch));
  std::vector<int64_t> order(items);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

int64_t batch_count(int64_t items, int64_t batch_size) {
  const int64_t count = (items + batch_size - 1) / batch_size;
  return count > 1 && items % batch_size == 1 ? count - 1 : count;  // a lone last item joins the batch before
}

std::pair<int64_t, int64_t> batch_range(int64_t index, int64_t batch_size, int64_t items) {
  const bool last = index == batch_count(items, batch_size) - 1;
  return {index * batch_size, last ? items : std::min(items, (index + 1) * batch_size)};
}

void BatchedTask::begin_epoch(int64_t epoch) {
  epoch_ = epoch, position_ = 0;
  batches_ = plan_epoch(epoch);
}

std::optional<Batch> BatchedTask::next_batch() {
  if (position_ >= batches_) return std::nullopt;
  return training_batch(position_++);
}

bool BatchedTask::skip_batch() {
  if (position_ >= batches_) return false;
  ++position_;
  return true;
}

void BatchedTask::load_state(const json& state) {
  begin_epoch(state.at("epoch"));
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

void Task::add_ensemble_member(std::unique_ptr<Task>, const std::string&) {
  throw ConfigError("usage error: this task does not combine runs (--ensemble)");
}

Metrics Task::model_stats() {
  double n = 0;
  for (const auto& p : model()->parameters()) n += static_cast<double>(p.numel());
  return {{"parameters", n}};
}

}  // namespace xformer
