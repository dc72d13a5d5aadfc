// Corpus BLEU that reproduces sacreBLEU's default score bit for bit where it can
// (signature nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.x), so numbers printed
// by `xformer eval` can be compared with numbers in papers and WMT tables.
//
// Plain C++17 with no LibTorch dependency: it runs on detokenized strings after decoding and
// is unit-tested without a model. Inputs are UTF-8; the tokenizer works on bytes but only
// ever inserts spaces next to ASCII characters, so a multibyte character is never split.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace xformer::metrics {

// The mteval-v13a tokenizer as sacreBLEU's "13a" applies it: drops "<skipped>", joins
// "-\n" line breaks, unescapes &quot; &amp; &lt; &gt;, pads ASCII punctuation with spaces,
// splits '.' and ',' unless they sit between digits, splits '-' after a digit, and collapses
// whitespace (Unicode whitespace included, as Python's str.split() does) to single spaces.
std::string tokenize_13a(const std::string& line);

struct BleuResult {
  double score = 0.0;                          // 0..100
  std::array<double, 4> precisions{};          // percent, after 'exp' smoothing
  double brevity_penalty = 1.0;
  int64_t sys_len = 0, ref_len = 0;            // tokens, summed over the corpus
  // The sufficient statistics (clipped matches and hypothesis n-grams per order); they add
  // across shards, so a sharded evaluation can sum them and rescore with bleu_from_stats.
  std::array<int64_t, 4> counts{}, totals{};

  double ratio() const { return ref_len ? double(sys_len) / double(ref_len) : 0.0; }
  // sacreBLEU's verbose line, e.g.
  // "BLEU = 27.31 60.1/33.2/20.0/12.5 (BP = 1.000 ratio = 1.023 hyp_len = 1234 ref_len = 1206)"
  std::string to_string() const;
};

// One reference per hypothesis; throws std::invalid_argument if the sizes differ. Each line
// gets trailing whitespace stripped and then tokenize_13a, as sacreBLEU does. An empty corpus
// scores 0 (sacreBLEU itself raises on one).
BleuResult corpus_bleu(const std::vector<std::string>& hypotheses,
                       const std::vector<std::string>& references);

// The score from summed statistics. effective_order=false is corpus BLEU; true drops the
// orders the hypothesis is too short to have (sacreBLEU's sentence-level default).
BleuResult bleu_from_stats(const std::array<int64_t, 4>& counts,
                           const std::array<int64_t, 4>& totals, int64_t sys_len,
                           int64_t ref_len, bool effective_order = false);

// sacrebleu.sentence_bleu(hyp, [ref]).score: 'exp' smoothing with effective order.
double sentence_bleu(const std::string& hypothesis, const std::string& reference);

}  // namespace xformer::metrics
