// TensorBoard event files (report/tensorboard): CRC-32C test vectors, TFRecord framing, and the
// Event protos' bytes worked out by hand from the wire format (key = field << 3 | wire type).
#include "test_support.h"
#include "tfrecord_reader.h"

#include <filesystem>

#include "xformer/report/tensorboard.h"

namespace fs = std::filesystem;
using namespace xformer::testing;
namespace report = xformer::report;

namespace {
std::string bytes(std::initializer_list<int> values) {
  std::string s;
  for (int v : values) s.push_back(static_cast<char>(v));
  return s;
}
}  // namespace

TEST_CASE("crc32c matches the Castagnoli check values", "[report][tensorboard]") {
  CHECK(report::crc32c("") == 0u);
  CHECK(report::crc32c("123456789") == 0xE3069283u);  // the standard check value
  CHECK(report::crc32c(std::string(32, '\0')) == 0x8A9136AAu);  // RFC 3720, 32 bytes of zeros
  CHECK(report::crc32c(std::string(32, '\xFF')) == 0x62A8AB43u);  // RFC 3720, 32 bytes of 0xFF
}

TEST_CASE("a TFRecord frame: length, its masked CRC, the payload, its masked CRC", "[report][tensorboard]") {
  const std::string frame = report::tfrecord("abc");
  REQUIRE(frame.size() == 8 + 4 + 3 + 4);
  CHECK(frame.substr(0, 8) == bytes({3, 0, 0, 0, 0, 0, 0, 0}));
  CHECK(frame.substr(12, 3) == "abc");
  uint32_t crc;
  std::memcpy(&crc, frame.data() + 15, 4);
  CHECK(crc == report::masked_crc32c("abc"));
  // Known values (an independent implementation): CRC-32C of "abc" 0x364B3FB7, masked 0x21F1576E;
  // the masked CRC of the 8-byte length 3 is 0x0E4999B0.
  CHECK(report::crc32c("abc") == 0x364B3FB7u);
  CHECK(crc == 0x21F1576Eu);
  uint32_t length_crc;
  std::memcpy(&length_crc, frame.data() + 8, 4);
  CHECK(length_crc == 0x0E4999B0u);
}

TEST_CASE("Event protos byte for byte", "[report][tensorboard]") {
  // wall_time 0 (field 1, fixed64), no step (0 is left out), file_version (field 3, string).
  CHECK(report::file_version_event(0.0) ==
        bytes({0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0x1A, 13}) + "brain.Event:2");
  // wall_time 1.5 (0x3FF8000000000000), step 3 (field 2, varint), summary (field 5) holding one
  // Value (field 1): tag "a" (field 1), simple_value 2.0f (field 2, fixed32: 0x40000000).
  CHECK(report::scalars_event(1.5, 3, {{"a", 2.0f}}) ==
        bytes({0x09, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F, 0x10, 3, 0x2A, 10, 0x0A, 8, 0x0A, 1, 'a', 0x15, 0, 0, 0, 0x40}));
  // A step of 300 takes two varint bytes (0xAC 0x02); two values follow one another.
  CHECK(report::scalars_event(0.0, 300, {{"x", 1.0f}, {"yz", -1.0f}}) ==
        bytes({0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0xAC, 0x02, 0x2A, 21,
               0x0A, 8, 0x0A, 1, 'x', 0x15, 0, 0, 0x80, 0x3F,
               0x0A, 9, 0x0A, 2, 'y', 'z', 0x15, 0, 0, 0x80, 0xBF}));
  // session_log (field 7) with status START (field 1, varint 1), at step 5, wall_time 2.0.
  CHECK(report::session_start_event(2.0, 5) ==
        bytes({0x09, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x10, 5, 0x3A, 2, 0x08, 1}));
}

TEST_CASE("ScalarEventWriter: a version record, then one event per metrics record", "[report][tensorboard]") {
  TempDir tmp("tensorboard_writer");
  std::string path;
  {
    report::ScalarEventWriter writer(tmp.str("tb"));
    path = writer.path();
    writer.add_metrics({{"step", 10}, {"split", "valid"}, {"loss", 2.5}, {"bleu", 4.25}, {"checkpoint", "c.pt"}});
    writer.add_metrics({{"step", 11}, {"split", "train"}, {"note", "no numbers"}});  // nothing to write
    writer.restart_at(7);
  }
  CHECK(fs::path(path).parent_path() == fs::path(tmp.str("tb")));
  CHECK(fs::path(path).filename().string().rfind("events.out.tfevents.", 0) == 0);
  const auto events = read_tfrecords(path);
  REQUIRE(events.size() == 3);
  CHECK(events[0] == report::file_version_event(event_wall_time(events[0])));
  // Numbers only, the step left out, tags "<split>/<key>" (in the record's key order).
  CHECK(events[1] == report::scalars_event(event_wall_time(events[1]), 10, {{"valid/bleu", 4.25f}, {"valid/loss", 2.5f}}));
  CHECK(events[2] == report::session_start_event(event_wall_time(events[2]), 7));
  CHECK(event_wall_time(events[1]) > 1.7e9);  // seconds since 1970, now
}

TEST_CASE("ScalarEventWriter: a later file sorts after the earlier ones, even within one second", "[report][tensorboard]") {
  TempDir tmp("tensorboard_order");
  std::vector<std::string> names;
  for (int i = 0; i < 3; ++i) names.push_back(fs::path(report::ScalarEventWriter(tmp.str()).path()).filename().string());
  CHECK(names[0] < names[1]);
  CHECK(names[1] < names[2]);
  // Beside a file from the far future, too (TensorBoard orders by name, not by time).
  std::ofstream(tmp.str("events.out.tfevents.99999999999.elsewhere.1")) << "";
  CHECK(fs::path(report::ScalarEventWriter(tmp.str()).path()).filename().string() >
        "events.out.tfevents.99999999999.elsewhere.1");
}
