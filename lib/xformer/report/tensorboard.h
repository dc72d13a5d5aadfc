// Training curves for TensorBoard: an event file that `tensorboard --logdir runs` reads, holding
// the same numbers as metrics.jsonl. The format is TFRecord framing (length, masked CRC-32C,
// payload, masked CRC-32C) around tensorboard.Event protos; the handful of fields used are
// encoded here by hand (field numbers in the .cpp), since xformer needs neither protobuf nor
// TensorFlow for anything else.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace xformer::report {

// CRC-32C (Castagnoli), and the masked form TFRecord frames store (rotated right by 15 bits, plus
// a constant).
uint32_t crc32c(const std::string& bytes);
uint32_t masked_crc32c(const std::string& bytes);

// One record of a TFRecord file: the framing around `payload`.
std::string tfrecord(const std::string& payload);

// Serialized tensorboard.Event protos.
std::string file_version_event(double wall_time);
std::string scalars_event(double wall_time, int64_t step, const std::vector<std::pair<std::string, float>>& scalars);
std::string session_start_event(double wall_time, int64_t step);

class ScalarEventWriter {
 public:
  // Starts a new event file in `dir` (created if missing): events.out.tfevents.<unix time>.<host>.<pid>,
  // or the last existing event file's name + ".<pid>" where that would not sort after it.
  // DataError naming the file when it cannot be written.
  explicit ScalarEventWriter(const std::string& dir);

  // TensorBoard is to drop the points that earlier files hold at steps >= step. Its Python loader
  // does (a SessionLog START event); its Rust loader ignores that event but drops a curve's later
  // points once the same curve goes back to an earlier step.
  void restart_at(int64_t step);

  // One metrics.jsonl record ({"step": S, "split": "valid", "bleu": 4.2, ...}): each number but the
  // step as the scalar "<split>/<key>" at step S. Flushed, so that TensorBoard sees it at once. A
  // failed write (a full disk) is a warning, once, not an error: training goes on.
  void add_metrics(const nlohmann::json& record);

  const std::string& path() const { return path_; }

 private:
  void write(const std::string& event);

  std::string path_;
  std::ofstream out_;
  bool failed_ = false;  // a write failed: warned once, nothing more is written
};

}  // namespace xformer::report
