// Reading TFRecord files back in tests (report/tensorboard writes them): the payloads, each
// frame's length and CRCs checked.
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "test_support.h"
#include "xformer/report/tensorboard.h"

namespace xformer::testing {

inline std::vector<std::string> read_tfrecords(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(in)), {});
  std::vector<std::string> payloads;
  auto u32 = [&](size_t at) {
    uint32_t v;
    std::memcpy(&v, file.data() + at, 4);
    return v;
  };
  for (size_t at = 0; at < file.size();) {
    REQUIRE(at + 12 <= file.size());
    uint64_t length;
    std::memcpy(&length, file.data() + at, 8);
    CHECK(u32(at + 8) == report::masked_crc32c(file.substr(at, 8)));
    REQUIRE(at + 12 + length + 4 <= file.size());
    payloads.push_back(file.substr(at + 12, length));
    CHECK(u32(at + 12 + length) == report::masked_crc32c(payloads.back()));
    at += 12 + length + 4;
  }
  return payloads;
}

// An event's wall time (its first field, a double right after the key byte 0x09).
inline double event_wall_time(const std::string& event) {
  REQUIRE(event.size() >= 9);
  REQUIRE(event[0] == 0x09);
  double t;
  std::memcpy(&t, event.data() + 1, 8);
  return t;
}

}  // namespace xformer::testing
