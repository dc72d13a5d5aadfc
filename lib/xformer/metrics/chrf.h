// Corpus chrF (Popovic 2015) as sacreBLEU computes it by default (signature
// nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.x): character n-grams of orders 1..6
// of each line with all whitespace removed, counted over code points; the hypothesis, reference
// and matched (clipped) counts of every order are summed over the corpus (a line adds nothing to
// an order its reference is too short to have); precision and recall
// are averaged over the orders both sides have, then combined as an F-score with recall
// weighted beta (2) times. 0..100. chrF gives partial credit for partly right words, so it
// separates weak systems that BLEU scores all near zero.
//
// Plain C++17 with no LibTorch dependency, on detokenized UTF-8 strings.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace xformer::metrics {

constexpr int kChrfOrder = 6;

struct ChrfResult {
  double score = 0.0;  // 0..100
  double beta = 2.0;
  // Summed statistics of each order (n = index + 1); they add across shards.
  std::array<int64_t, kChrfOrder> hyp{}, ref{}, match{};
  std::string to_string() const;  // e.g. "chrF2 = 45.67"
};

// One reference per hypothesis; throws std::invalid_argument if the sizes differ.
ChrfResult corpus_chrf(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references,
                       double beta = 2.0);

// The score of summed statistics (see ChrfResult).
double chrf_from_stats(const ChrfResult& stats, double beta = 2.0);

}  // namespace xformer::metrics
