#include "xformer/report/tensorboard.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "xformer/core/error.h"

namespace xformer::report {

namespace {

// Protocol-buffer wire format, the parts used: a field's key is (number << 3 | wire type).
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_key(std::string& out, uint32_t field, WireType type) { put_varint(out, (field << 3) | type); }

template <typename T>
void put_little_endian(std::string& out, T value) {  // the host is little-endian (x86-64, aarch64)
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out += bytes;
}

// tensorboard.Event: wall_time = 1 (double), step = 2 (int64), and one of file_version = 3
// (string), summary = 5 (Summary), session_log = 7 (SessionLog).
std::string event(double wall_time, int64_t step) {
  std::string e;
  put_key(e, 1, kFixed64);
  put_little_endian(e, wall_time);
  if (step != 0) {  // proto3 leaves zero values out
    put_key(e, 2, kVarint);
    put_varint(e, static_cast<uint64_t>(step));
  }
  return e;
}

double now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const std::string& bytes) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // reflected polynomial
      t[i] = c;
    }
    return t;
  }();
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char b : bytes) crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const std::string& bytes) {
  const uint32_t crc = crc32c(bytes);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string tfrecord(const std::string& payload) {
  std::string length;
  put_little_endian(length, static_cast<uint64_t>(payload.size()));
  std::string record = length;
  put_little_endian(record, masked_crc32c(length));
  record += payload;
  put_little_endian(record, masked_crc32c(payload));
  return record;
}

std::string file_version_event(double wall_time) {
  std::string e = event(wall_time, 0);
  put_bytes(e, 3, "brain.Event:2");
  return e;
}

std::string scalars_event(double wall_time, int64_t step, const std::vector<std::pair<std::string, float>>& scalars) {
  std::string summary;  // Summary: repeated Value value = 1; Value: tag = 1, simple_value = 2 (float)
  for (const auto& [tag, value] : scalars) {
    std::string v;
    put_bytes(v, 1, tag);
    put_key(v, 2, kFixed32);
    put_little_endian(v, value);
    put_bytes(summary, 1, v);
  }
  std::string e = event(wall_time, step);
  put_bytes(e, 5, summary);
  return e;
}

std::string session_start_event(double wall_time, int64_t step) {
  std::string log;  // SessionLog: status = 1 (START = 1)
  put_key(log, 1, kVarint);
  put_varint(log, 1);
  std::string e = event(wall_time, step);
  put_bytes(e, 7, log);
  return e;
}

ScalarEventWriter::ScalarEventWriter(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw DataError("cannot create '" + dir + "': " + ec.message());
  // TensorBoard reads a folder's event files in name order: a later file must sort last (so that
  // its restart event comes after the points it replaces), also when started within the same
  // second as the last one, or beside files with other names.
  const std::string prefix = "events.out.tfevents.";
  std::string last;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && entry.is_regular_file(ec)) last = std::max(last, name);
  }
  char host[256] = "host";
  gethostname(host, sizeof(host) - 1);
  std::string name = prefix + std::to_string(static_cast<int64_t>(now())) + "." + host + "." + std::to_string(getpid());
  if (name <= last) name = last + "." + std::to_string(getpid());
  path_ = (fs::path(dir) / name).string();
  out_.open(path_, std::ios::binary | std::ios::app);
  if (!out_) throw DataError("cannot write '" + path_ + "'");
  write(file_version_event(now()));
}

void ScalarEventWriter::restart_at(int64_t step) { write(session_start_event(now(), step)); }

void ScalarEventWriter::add_metrics(const nlohmann::json& record) {
  const std::string split = record.value("split", "");
  std::vector<std::pair<std::string, float>> scalars;
  for (const auto& [key, value] : record.items())
    if (key != "step" && value.is_number()) scalars.emplace_back(split + "/" + key, value.get<float>());
  if (!scalars.empty()) write(scalars_event(now(), record.value("step", int64_t{0}), scalars));
}

void ScalarEventWriter::write(const std::string& event) {
  if (failed_) return;
  out_ << tfrecord(event);
  out_.flush();
  if (!out_) {  // e.g. a full disk: say so once; training goes on (metrics.jsonl has the numbers)
    spdlog::warn("cannot write '{}': no more TensorBoard events for this run", path_);
    failed_ = true;
  }
}

}  // namespace xformer::report
