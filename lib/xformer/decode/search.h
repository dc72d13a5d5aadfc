// Autoregressive decoding written once for every task: greedy, beam search with the GNMT length
// penalty, and sampling with temperature / top-k / top-p. All of them drive an
// IncrementalDecoder, which a task implements over its model's key/value cache, one token per
// call, for a batch of N rows.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <vector>

namespace xformer::decode {

class IncrementalDecoder {
 public:
  virtual ~IncrementalDecoder() = default;
  // tokens (N) = the last token of each row -> next-token logits (N, V) (float).
  virtual torch::Tensor step(const torch::Tensor& tokens) = 0;
  // Keep rows `index` (N') of the decoder state (beam search, expanding a batch to N*K rows).
  virtual void reorder(const torch::Tensor& index) = 0;
};

// Several models decoding as one (an ensemble): every member sees the same tokens and reorders,
// and a step returns the log of their averaged next-token distributions,
// log(mean_i softmax(logits_i)) (N, V) in float, which the searches take as logits.
class EnsembleDecoder : public IncrementalDecoder {
 public:
  explicit EnsembleDecoder(std::vector<std::unique_ptr<IncrementalDecoder>> members);
  torch::Tensor step(const torch::Tensor& tokens) override;
  void reorder(const torch::Tensor& index) override;

 private:
  std::vector<std::unique_ptr<IncrementalDecoder>> members_;
};

// log(mean_i softmax(logits_i)) over the last dimension, in float: the members' logits, all of
// one shape (..., V). One member: its log_softmax.
torch::Tensor log_mean_softmax(const std::vector<torch::Tensor>& logits);

struct SearchOptions {
  int64_t bos = 2, eos = 3;
  std::vector<int64_t> max_len;  // per batch row: most tokens generated, EOS included
  // Tokens no search ever generates (padding, BOS): their log-probability is taken as -inf, the
  // others' left as the model gives them, so scores stay the model's.
  std::vector<int64_t> banned;
  int beam = 1;
  double lenpen = 1.0;           // GNMT alpha: score / ((5 + |Y|) / 6)^alpha
  // Sampling (used by sample()):
  double temperature = 1.0;
  int64_t top_k = 0;     // 0 = off
  double top_p = 1.0;    // 1 = off
  uint64_t seed = 1;
};

struct Hypothesis {
  std::vector<int64_t> tokens;  // without BOS, without EOS
  double score = 0;             // sum of log-probabilities (EOS included)
  double normalized = 0;        // score after the length penalty (beam) or score (others)
};

// Argmax at every step. One hypothesis per batch row.
std::vector<Hypothesis> greedy(IncrementalDecoder& decoder, int64_t batch, const SearchOptions& o);

// Beam search of width o.beam: the best finished hypothesis per batch row by normalized score.
// A row stops once o.beam hypotheses have finished or its max_len is reached.
std::vector<Hypothesis> beam_search(IncrementalDecoder& decoder, int64_t batch,
                                    const SearchOptions& o);

// The same search, returning per batch row its n best finished hypotheses (1 <= n <= o.beam),
// best first; a row has fewer only when fewer finished (every candidate impossible).
std::vector<std::vector<Hypothesis>> beam_search_nbest(IncrementalDecoder& decoder, int64_t batch,
                                                       const SearchOptions& o, int64_t n);

// Ancestral sampling from softmax(logits / temperature), optionally restricted to the top-k
// tokens and/or the smallest set whose probability reaches top_p. Deterministic for a seed.
std::vector<Hypothesis> sample(IncrementalDecoder& decoder, int64_t batch, const SearchOptions& o);

// Keeps the k largest logits per row and any tied with the k-th (no arbitrary choice between
// equal logits), the others -inf; k <= 0 keeps all. logits (N, V).
torch::Tensor top_k_filter(const torch::Tensor& logits, int64_t k);
// logits / temperature over the last dimension, each row shifted to a largest value of 0
// first: a tiny temperature then sharpens towards the greedy choice instead of overflowing
// to inf (whose softmax is NaN).
torch::Tensor tempered(const torch::Tensor& logits, double temperature);
// Keeps the smallest set of tokens whose probability mass reaches p (at least one). (N, V).
torch::Tensor top_p_filter(const torch::Tensor& logits, double p);

double gnmt_length_penalty(int64_t length, double alpha);

}  // namespace xformer::decode
