// Token-bucketed batching (as fairseq's max_tokens): examples are sorted by length so that a
// batch holds similar lengths (little padding), packed while
//   (number of examples) x (longest source or target in the batch) <= max_tokens,
// and the batches are shuffled. Both the tie-breaking of the sort and the batch order depend
// only on (seed, epoch), so an epoch's batches can be rebuilt exactly on resume.
#pragma once
#include <cstdint>
#include <vector>

namespace xformer::data {

// Seeds of random streams that are functions of (seed, epoch) and of (seed, epoch, batch): an
// epoch's order and a batch's augmentation, the same again after a resume.
uint64_t epoch_seed(uint64_t seed, int64_t epoch);
uint64_t batch_seed(uint64_t seed, int64_t epoch, int64_t index);

struct LengthPair {
  int64_t source = 0, target = 0;  // tokens, including the EOS/BOS that the batch will hold
};

// Returns batches of example indices. max_sentences <= 0: no cap. shuffle=false keeps the
// length order and uses no randomness (evaluation).
std::vector<std::vector<int64_t>> make_batches(const std::vector<LengthPair>& lengths,
                                               int64_t max_tokens, int64_t max_sentences,
                                               bool shuffle, uint64_t seed, int64_t epoch);

}  // namespace xformer::data
