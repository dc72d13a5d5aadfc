#include "xformer/data/batching.h"

#include <algorithm>
#include <numeric>
#include <random>

namespace xformer::data {

namespace {
// Fisher-Yates with our own index draw: std::shuffle's algorithm is not specified by the
// standard, and batches must be the same with every standard library.
template <typename T>
void shuffle_in_place(std::vector<T>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng() % i]);
}
}  // namespace

uint64_t epoch_seed(uint64_t seed, int64_t epoch) { return seed * 1000003ULL + static_cast<uint64_t>(epoch); }

namespace {
// splitmix64's finaliser: every input bit moves every output bit.
uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
}  // namespace

// Hashed, not linear: with epoch_seed * K + index, batch K + i of one epoch had the seed of
// batch i of the next (the same augmentation) once an epoch held more than K batches.
uint64_t batch_seed(uint64_t seed, int64_t epoch, int64_t index) {
  return mix64(mix64(epoch_seed(seed, epoch)) + static_cast<uint64_t>(index));
}

std::vector<std::vector<int64_t>> make_batches(const std::vector<LengthPair>& lengths,
                                               int64_t max_tokens, int64_t max_sentences,
                                               bool shuffle, uint64_t seed, int64_t epoch) {
  std::mt19937_64 rng(epoch_seed(seed, epoch));
  std::vector<int64_t> order(lengths.size());
  std::iota(order.begin(), order.end(), 0);
  if (shuffle) shuffle_in_place(order, rng);  // random tie-breaking among equal lengths
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    if (lengths[a].target != lengths[b].target) return lengths[a].target < lengths[b].target;
    return lengths[a].source < lengths[b].source;
  });
  std::vector<std::vector<int64_t>> batches;
  std::vector<int64_t> cur;
  int64_t longest = 0;
  for (int64_t i : order) {
    const int64_t len = std::max(lengths[i].source, lengths[i].target);
    const int64_t new_longest = std::max(longest, len);
    const bool full = !cur.empty() && ((static_cast<int64_t>(cur.size()) + 1) * new_longest > max_tokens ||
                                       (max_sentences > 0 && static_cast<int64_t>(cur.size()) >= max_sentences));
    if (full) {
      batches.push_back(std::move(cur));
      cur.clear();
      longest = 0;
    }
    cur.push_back(i);
    longest = std::max(longest, len);
  }
  if (!cur.empty()) batches.push_back(std::move(cur));
  if (shuffle) shuffle_in_place(batches, rng);
  return batches;
}

}  // namespace xformer::data
