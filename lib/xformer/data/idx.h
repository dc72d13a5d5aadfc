// IDX files (the format of MNIST and Fashion-MNIST): a big-endian header (two zero bytes, the
// element type, the number of dimensions, each dimension as 4 bytes) and the unsigned bytes.
// No LibTorch here.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace xformer::data {

struct IdxArray {
  std::vector<int64_t> dims;  // e.g. (60000, 28, 28) images or (60000) labels
  std::vector<uint8_t> values;
};

// Reads an unsigned-byte IDX file, gzipped when its name ends in .gz (as MNIST and
// Fashion-MNIST are distributed). DataError naming the file on a bad header (magic, element
// type other than unsigned byte) or a size that does not match the header.
IdxArray read_idx(const std::string& path);

// Writes one (header + values), atomically. DataError on failure.
void write_idx(const std::string& path, const IdxArray& array);

}  // namespace xformer::data
