#include "xformer/data/idx.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "xformer/core/atomic_file.h"
#include "xformer/core/error.h"

#ifdef XFORMER_HAVE_ZLIB
#include <zlib.h>
#endif

namespace xformer::data {

namespace {

bool gzipped(const std::string& path) { return path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0; }

std::vector<uint8_t> read_bytes(const std::string& path) {
  if (gzipped(path)) {
#ifdef XFORMER_HAVE_ZLIB
    gzFile f = gzopen(path.c_str(), "rb");
    if (!f) throw DataError("cannot read IDX file " + path);
    std::vector<uint8_t> bytes;
    uint8_t buffer[1 << 16];
    int n = 0;
    while ((n = gzread(f, buffer, sizeof buffer)) > 0) bytes.insert(bytes.end(), buffer, buffer + n);
    const bool failed = n < 0;
    gzclose(f);
    if (failed) throw DataError("IDX file " + path + ": corrupt gzip data");
    return bytes;
#else
    throw DataError("IDX file " + path + ": this build has no zlib; gunzip the file first");
#endif
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("cannot read IDX file " + path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

IdxArray read_idx(const std::string& path) {
  const std::vector<uint8_t> bytes = read_bytes(path);
  auto fail = [&](const std::string& why) { throw DataError("IDX file " + path + ": " + why); };
  if (bytes.size() < 4 || bytes[0] != 0 || bytes[1] != 0) fail("not an IDX file (bad magic number)");
  if (bytes[2] != 0x08) fail("element type " + std::to_string(bytes[2]) + ", only unsigned bytes (8) are supported");
  const size_t ndims = bytes[3];
  if (ndims < 1 || bytes.size() < 4 + 4 * ndims) fail("truncated header");
  IdxArray a;
  const size_t header = 4 + 4 * ndims, data_bytes = bytes.size() - header;
  size_t count = 1;
  bool overflow = false;  // a product past 2^64 would wrap to a small count that might match
  for (size_t d = 0; d < ndims; ++d) {
    const uint8_t* p = &bytes[4 + 4 * d];
    const int64_t n = (int64_t{p[0]} << 24) | (int64_t{p[1]} << 16) | (int64_t{p[2]} << 8) | p[3];
    if (n == 0 && d > 0) fail("dimension " + std::to_string(d) + " is 0");
    a.dims.push_back(n);
    overflow = overflow || __builtin_mul_overflow(count, static_cast<size_t>(n), &count);
  }
  if (overflow) fail(std::to_string(data_bytes) + " bytes of data, fewer than the header's dimensions need");
  if (data_bytes != count)
    fail(std::to_string(data_bytes) + " bytes of data, the header says " + std::to_string(count));
  a.values.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return a;
}

void write_idx(const std::string& path, const IdxArray& a) {
  size_t count = 1;
  for (auto d : a.dims) count *= static_cast<size_t>(d);
  if (a.dims.empty() || a.dims.size() > 255 || count != a.values.size())
    throw DataError("cannot write IDX file " + path + ": dimensions do not match the values");
  std::string bytes = {0, 0, 0x08, static_cast<char>(a.dims.size())};  // magic: unsigned bytes, rank
  for (auto d : a.dims)  // each size as a big-endian 32-bit integer
    for (int shift : {24, 16, 8, 0}) bytes += static_cast<char>(d >> shift);
  bytes.append(reinterpret_cast<const char*>(a.values.data()), a.values.size());
  write_file_atomically(path, bytes);
}

}  // namespace xformer::data
