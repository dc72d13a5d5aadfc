// The epoch walk every built-in task shares (tasks/task.h, BatchedTask): batches cover the
// epoch once, and a task restored from state() or moved on with skip_batch() continues with
// exactly the batches of an uninterrupted one.
#include "test_support.h"

#include <cmath>
#include <set>

#include "xformer/core/config.h"
#include "xformer/core/registry.h"
#include "xformer/tasks/task.h"

namespace {

using xformer::Batch;
using xformer::json;

// Batch i of an epoch holds the items of shuffled_indices over `items` that batch_range names.
class CountingTask : public xformer::BatchedTask {
 public:
  explicit CountingTask(int64_t items) : items_(items) {}
  std::shared_ptr<torch::nn::Module> model() override { return nullptr; }
  xformer::LossOut loss(const Batch&) override { return {}; }
  xformer::Metrics evaluate(xformer::Split, const std::string&) override { return {}; }
  void sample(const xformer::SampleOptions&) override {}
  int64_t built = 0;  // batches built (skipped ones are not)

 protected:
  int64_t plan_epoch(int64_t epoch) override {
    order_ = xformer::shuffled_indices(items_, /*seed=*/7, epoch);
    return xformer::batch_count(items_, kBatchSize);
  }
  Batch training_batch(int64_t index) override {
    ++built;
    const auto [begin, end] = xformer::batch_range(index, kBatchSize, items_);
    Batch b;
    b.tensors["items"] = torch::tensor(std::vector<int64_t>(order_.begin() + begin, order_.begin() + end));
    b.n_items = end - begin;
    return b;
  }

 private:
  static constexpr int64_t kBatchSize = 3;
  int64_t items_;
  std::vector<int64_t> order_;
};

std::vector<int64_t> items_of(const Batch& b) {
  auto t = b.tensors.at("items");
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

bool same_batch(const Batch& a, const Batch& b) {
  if (a.n_items != b.n_items || a.n_tokens != b.n_tokens || a.tensors.size() != b.tensors.size()) return false;
  for (const auto& [name, t] : a.tensors) {
    auto other = b.tensors.find(name);
    if (other == b.tensors.end() || !torch::equal(t.cpu(), other->second.cpu())) return false;
  }
  return true;
}

// Paths under tests/data/ in a config's task group made absolute (the tests run elsewhere).
void rebase_paths(json& value) {
  if (value.is_string() && value.get<std::string>().rfind("tests/data/", 0) == 0)
    value = xformer::testing::source_path(value.get<std::string>());
  if (value.is_structured())
    for (auto& v : value) rebase_paths(v);
}

}  // namespace

TEST_CASE("BatchedTask: an epoch's batches cover every item once, then end", "[tasks]") {
  CountingTask task(10);
  task.begin_epoch(1);
  std::multiset<int64_t> seen;
  std::vector<int64_t> sizes;
  while (auto b = task.next_batch()) {
    for (int64_t i : items_of(*b)) seen.insert(i);
    sizes.push_back(b->n_items);
  }
  CHECK(sizes == std::vector<int64_t>{3, 3, 4});  // the lone 10th item joins the last batch
  CHECK(seen == std::multiset<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK_FALSE(task.next_batch().has_value());
  CHECK_FALSE(task.skip_batch());
  task.begin_epoch(2);  // another epoch, another order
  CountingTask again(10);
  again.begin_epoch(1);
  CHECK(items_of(*task.next_batch()) != items_of(*again.next_batch()));
}

TEST_CASE("batch_count/batch_range: a lone last item joins the batch before it", "[tasks]") {
  using xformer::batch_count, xformer::batch_range;
  using Range = std::pair<int64_t, int64_t>;
  CHECK(batch_count(9, 3) == 3);
  CHECK(batch_range(2, 3, 9) == Range{6, 9});
  CHECK(batch_count(11, 3) == 4);  // 3 3 3 2: a short batch of two stays
  CHECK(batch_range(3, 3, 11) == Range{9, 11});
  CHECK(batch_count(7, 2) == 3);  // 2 2 3
  CHECK(batch_range(2, 2, 7) == Range{4, 7});
  CHECK(batch_count(1, 4) == 1);  // a single item alone is still a batch
  CHECK(batch_range(0, 4, 1) == Range{0, 1});
  CHECK(batch_count(5, 1) == 5);
  CHECK(batch_range(4, 1, 5) == Range{4, 5});
}

TEST_CASE("BatchedTask: state()/load_state() and skip_batch() continue with the same batches", "[tasks]") {
  CountingTask walked(10);
  walked.begin_epoch(3);
  walked.next_batch();
  walked.next_batch();
  const json state = walked.state();
  CHECK(state == json{{"epoch", 3}, {"position", 2}});

  CountingTask restored(10);
  restored.load_state(state);
  CountingTask skipping(10);
  skipping.begin_epoch(3);
  CHECK(skipping.skip_batch());
  CHECK(skipping.skip_batch());
  CHECK(skipping.built == 0);  // skipped batches are not built
  const auto expected = items_of(*walked.next_batch());
  CHECK(items_of(*restored.next_batch()) == expected);
  CHECK(items_of(*skipping.next_batch()) == expected);
  CHECK(restored.state() == walked.state());
}

TEST_CASE("every built-in task resumes mid-epoch with the batch an uninterrupted run takes next", "[tasks][resume]") {
  for (const std::string name : {"translation", "music", "super_resolution", "image_generation", "classification", "detection"}) {
    DYNAMIC_SECTION(name) {
      auto raw = xformer::load_config_file(xformer::testing::source_path("configs/" + name + "/tiny.json"));
      rebase_paths(raw.value["task"]);
      // Small batches, so that the tiny training sets make several of them.
      xformer::testing::TempDir dir("batched_task_" + name);
      if (name == "translation") {
        raw.value["task"]["max_sentences"] = 2;
        raw.value["task"]["spm_cache"] = dir.str("spm");  // not the working directory's .cache
      } else {
        raw.value["task"]["batch_size"] = 2;
      }
      const json config = xformer::resolve(raw);
      xformer::RunContext ctx;
      ctx.run_dir = dir.str();
      const auto& entry = xformer::Registry::get().task(name);
      auto walked = entry.create(config, ctx);
      walked->begin_epoch(2);
      auto first = walked->next_batch();
      REQUIRE(first.has_value());
      REQUIRE(walked->next_batch().has_value());
      const json state = walked->state();
      auto expected = walked->next_batch();
      REQUIRE(expected.has_value());
      CHECK_FALSE(same_batch(*first, *expected));  // batches differ, so the checks below can fail

      auto restored = entry.create(config, ctx);
      restored->load_state(state);
      auto resumed = restored->next_batch();
      REQUIRE(resumed.has_value());
      CHECK(same_batch(*resumed, *expected));

      auto skipping = entry.create(config, ctx);
      skipping->begin_epoch(2);
      REQUIRE(skipping->skip_batch());
      REQUIRE(skipping->skip_batch());
      auto after_skips = skipping->next_batch();
      REQUIRE(after_skips.has_value());
      CHECK(same_batch(*after_skips, *expected));
    }
  }
}

TEST_CASE("detection: horizontal_flip mirrors an image and its boxes together", "[tasks][detection]") {
  auto raw = xformer::load_config_file(xformer::testing::source_path("configs/detection/tiny.json"));
  rebase_paths(raw.value["task"]);
  xformer::testing::TempDir dir("detection_flip");
  xformer::RunContext ctx;
  ctx.run_dir = dir.str();
  const auto& entry = xformer::Registry::get().task("detection");
  raw.value["task"]["horizontal_flip"] = false;
  auto plain = entry.create(xformer::resolve(raw), ctx);
  raw.value["task"]["horizontal_flip"] = true;
  auto flipping = entry.create(xformer::resolve(raw), ctx);
  plain->begin_epoch(1);
  flipping->begin_epoch(1);
  int flipped = 0, kept = 0;
  for (int batch = 0; batch < 3; ++batch) {
    auto p = plain->next_batch(), f = flipping->next_batch();
    REQUIRE((p && f));
    const auto &pi = p->tensors.at("images"), &fi = f->tensors.at("images");  // (B, C, H, W)
    const auto &pb = p->tensors.at("boxes"), &fb = f->tensors.at("boxes");    // (B, objects, 4)
    const auto& labels = p->tensors.at("labels");
    REQUIRE(torch::equal(labels, f->tensors.at("labels")));  // the same items, in the same order
    const int64_t W = pi.size(3);
    for (int64_t b = 0; b < pi.size(0); ++b) {
      if (torch::equal(fi[b], pi[b])) {  // not flipped: boxes as they were
        CHECK(torch::equal(fb[b], pb[b]));
        ++kept;
        continue;
      }
      REQUIRE(torch::equal(fi[b], pi[b].flip({2})));
      ++flipped;
      for (int64_t k = 0; k < labels.size(1); ++k) {
        if (labels[b][k].item<int64_t>() < 0) continue;  // padding
        // The ink inside the box: the flipped image's crop at the flipped box is the original
        // crop, mirrored.
        const auto box = pb[b][k], fbox = fb[b][k];
        const int64_t x1 = std::lround(box[0].item<double>()), x2 = std::lround(box[2].item<double>());
        const int64_t y1 = std::lround(box[1].item<double>()), y2 = std::lround(box[3].item<double>());
        const int64_t fx1 = std::lround(fbox[0].item<double>()), fx2 = std::lround(fbox[2].item<double>());
        CHECK(fx1 == W - x2);
        CHECK(fx2 == W - x1);
        CHECK(fbox[1].item<double>() == box[1].item<double>());
        CHECK(fbox[3].item<double>() == box[3].item<double>());
        const auto crop = pi[b].narrow(1, y1, y2 - y1).narrow(2, x1, x2 - x1);
        const auto fcrop = fi[b].narrow(1, y1, y2 - y1).narrow(2, fx1, fx2 - fx1);
        CHECK(torch::equal(fcrop, crop.flip({2})));
      }
    }
  }
  CHECK(flipped > 0);  // both cases seen
  CHECK(kept > 0);
}
