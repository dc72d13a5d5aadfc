// The task plugin interface. A task owns its data, builds its model from config.model, and
// knows how to turn a batch into a loss, how to evaluate, and how to sample. The trainer and the
// verbs (train/eval/sample) only ever talk to this interface.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "xformer/core/config.h"
#include "xformer/data/batching.h"

namespace xformer {

enum class Split { Train, Valid, Test };
std::string split_name(Split split);
Split parse_split(const std::string& name);  // ConfigError on anything but train|valid|test

// Declares task.train, task.valid and task.test: folders of `what` (e.g. "MIDI files"),
// defaulting to ROOT/train, ROOT/valid and ROOT/test; `note` is appended to each key's help.
void declare_split_folders(Schema& schema, const std::string& root, const std::string& what,
                           const std::string& note = "");

// The data a task evaluates, by split, from `load(split)`. The validation split is loaded once
// and kept, as a run evaluates it again and again; a training run loads it with its training
// data (`load_valid`), so that bad validation data stops the run before it trains rather than
// at its first evaluation. Another split is loaded when asked for.
template <typename Data>
class EvalSplits {
 public:
  explicit EvalSplits(std::function<Data(Split)> load) : load_(std::move(load)) {}
  void load_valid() { get(Split::Valid); }
  const Data& get(Split split) {
    if (split != Split::Valid) return other_.emplace(load_(split));
    if (!valid_) valid_.emplace(load_(split));
    return *valid_;
  }

 private:
  std::function<Data(Split)> load_;
  std::optional<Data> valid_, other_;
};

// A host tensor on `device`: to a GPU through pinned memory without waiting for the copy (it
// queues ahead of the kernels that read it); unchanged on the CPU.
torch::Tensor to_device(const torch::Tensor& host, const torch::Device& device);

// A permutation of 0 .. items-1 drawn from data::epoch_seed(seed, epoch).
std::vector<int64_t> shuffled_indices(int64_t items, uint64_t seed, int64_t epoch);
// How many batches of batch_size items cover `items`, and which items [begin, end) batch `index`
// of them holds. The last batch may be short, but never a single item when there is a batch
// before it: that item joins the batch before (batch_size + 1 items). A batch of one gives
// batch norm one value per channel on a 1x1 map (LibTorch refuses it in training) and a
// one-sample update.
int64_t batch_count(int64_t items, int64_t batch_size);
std::pair<int64_t, int64_t> batch_range(int64_t index, int64_t batch_size, int64_t items);

// Image pixels (uint8 or float 0..255) -> the networks' input: floats in [-1, 1].
torch::Tensor pixels_to_input(const torch::Tensor& pixels);

// Named tensors of one batch, already on the task's device.
struct Batch {
  std::map<std::string, torch::Tensor> tensors;
  int64_t n_items = 0;   // sentences, images, pieces
  int64_t n_tokens = 0;  // target tokens (the unit of sample_size for sequence tasks)
};

struct LossOut {
  torch::Tensor loss;                   // scalar, SUMMED over the batch (not averaged)
  double sample_size = 0;               // what the summed loss is normalised by (e.g. tokens)
  // Extra statistics summed over the batch (e.g. "nll"): scalars on the loss's device, so that
  // the trainer copies them to the host once per update rather than waiting for each batch.
  std::map<std::string, torch::Tensor> sums;
};

using Metrics = std::map<std::string, double>;

struct SampleOptions {
  std::string input;         // file, "-" for stdin, "" for the task's default
  bool stream = false;       // answer each input line as soon as it is read (translation)
  bool scores = false;       // print each output's log-probability under the model (translation)
  bool score_pairs = false;  // score given source<TAB>target lines instead of translating (translation)
  std::string out;           // file or folder, "" for stdout / the run's samples/
  int beam = 0;              // > 0: beam search of this width; 0: the task's own search (config)
  std::optional<double> lenpen;  // GNMT length-penalty alpha for beam search; unset: the config's
  std::optional<double> temperature;  // set: sampling
  int top_k = 0;
  double top_p = 1.0;
  int num = 1;               // samples per input
  uint64_t seed = 1;
  int64_t length = 0;        // tokens/events to generate, 0 = the task's default
  std::string primer;        // a prefix to continue (e.g. a .mid file for music)
  std::string attention;     // write the first sample's attention weights here (HTML), "" = no
  int attention_layer = -1;  // which layer's weights; negative counts from the last
  bool wav = false;          // also render audio where the task produces music
};

// What a task needs to know about the run it is part of.
struct RunContext {
  std::string run_dir;     // where the task may write (tokenizer model, hypotheses, samples)
  torch::Device device = torch::kCPU;
  bool for_training = true;  // false for eval/sample: no training data needed
};

class Task {
 public:
  virtual ~Task() = default;

  virtual std::shared_ptr<torch::nn::Module> model() = 0;

  // Training data: begin_epoch builds the epoch's batch order from (seed, epoch); next_batch
  // walks it and returns nullopt at its end. state()/load_state() save and restore the position.
  virtual void begin_epoch(int64_t epoch) = 0;
  virtual std::optional<Batch> next_batch() = 0;
  // Moves past the next batch without building it (another rank computes it in multi-process
  // training); false at the epoch's end, like next_batch. The default builds and drops it.
  virtual bool skip_batch() { return next_batch().has_value(); }
  virtual json state() const = 0;
  virtual void load_state(const json& state) = 0;

  virtual LossOut loss(const Batch& batch) = 0;

  // Metrics on a split (the model in eval mode). `out_prefix`, when not empty, is where the task
  // may write what it produced (e.g. hypotheses) as out_prefix + ".<ext>".
  virtual Metrics evaluate(Split split, const std::string& out_prefix) = 0;

  virtual void sample(const SampleOptions& options) = 0;

  // `xformer info --model-stats`: at least "parameters"; tasks that know their input size add
  // "flops" per item (2 per multiply-add) and the size they assume.
  virtual Metrics model_stats();

  // eval/sample --ensemble: `member` is this task built for another run (`member_run`), its
  // weights loaded; from now on evaluation and decoding average the models' next-token
  // distributions. Only tasks registered with TaskEntry::ensembles are asked; a ConfigError
  // when the two runs cannot be combined (e.g. different vocabularies).
  virtual void add_ensemble_member(std::unique_ptr<Task> member, const std::string& member_run);
};

// The way every built-in task walks its training data: plan_epoch lays out the epoch's batches
// from (seed, epoch) and training_batch builds one of them on demand. This base keeps the
// position (epoch, batches taken), which is all a checkpoint needs for an exact resume, and lets
// a rank skip the batches that other ranks compute without building them.
class BatchedTask : public Task {
 public:
  void begin_epoch(int64_t epoch) final;
  std::optional<Batch> next_batch() final;
  bool skip_batch() final;
  json state() const final { return {{"epoch", epoch_}, {"position", position_}}; }
  void load_state(const json& state) final;

 protected:
  // Lays out the training batches of `epoch` and returns how many there are.
  virtual int64_t plan_epoch(int64_t epoch) = 0;
  // Builds batch `index` (0 <= index < the count plan_epoch returned) of the current epoch.
  virtual Batch training_batch(int64_t index) = 0;
  int64_t epoch() const { return epoch_; }

 private:
  int64_t epoch_ = 0, position_ = 0, batches_ = 0;
};

}  // namespace xformer
