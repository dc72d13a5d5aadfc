// Tests for sacreBLEU-compatible chrF: scores worked out by hand in the comments, sacreBLEU's
// own expected values for its effective-order mode (beta 3), code points rather than bytes,
// and Python's whitespace.
#include "test_support.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "xformer/metrics/chrf.h"

using xformer::metrics::chrf_from_stats;
using xformer::metrics::corpus_chrf;
using xformer::testing::near;

namespace {
double chrf(const std::vector<std::string>& h, const std::vector<std::string>& r, double beta = 2) {
  return corpus_chrf(h, r, beta).score;
}
}  // namespace

TEST_CASE("chrF of small cases worked out by hand", "[metrics][chrf]") {
  // "ab" vs "abc": unigrams P 2/2, R 2/3; bigrams P 1/1, R 1/2; no trigrams in the hypothesis,
  // so 2 effective orders: P = 1, R = 7/12; F2 = 5 P R / (4 P + R) = 7/11.
  const auto r = corpus_chrf({"ab"}, {"abc"});
  CHECK(r.score == near(700.0 / 11));
  CHECK(r.hyp[0] == 2);
  CHECK(r.ref[0] == 3);
  CHECK(r.match[1] == 1);
  CHECK(r.hyp[2] == 0);
  CHECK(r.to_string() == "chrF2 = 63.64");
  // Counts are clipped: "aa" vs "ab" matches one "a" (P = R = 1/2), no bigram; averaged over
  // 2 orders P = R = 1/4 (sacreBLEU's test: 25 with beta 3, as any beta when P = R).
  CHECK(chrf({"aa"}, {"ab"}, 3) == near(25));
  // sacreBLEU's effective-order cases (beta 3).
  CHECK(chrf({"a"}, {"a"}, 3) == near(100));
  CHECK(chrf({"a b c"}, {"abc"}, 3) == near(100));  // whitespace is removed
  CHECK(chrf({"a", "b"}, {"a", "c"}, 3) == near(50));
  CHECK(chrf({""}, {"reference"}, 3) == 0);
  CHECK(chrf({"abcdefg"}, {"hijklmnop"}) == 0);
  CHECK(chrf({}, {}) == 0);
  CHECK_THROWS_AS(corpus_chrf({"a"}, {}), std::invalid_argument);
}

TEST_CASE("chrF counts code points and Python's whitespace", "[metrics][chrf]") {
  // M u-umlaut l l e r vs M u-umlaut l e r (6 and 5 characters, not 7 and 6 bytes):
  // P = (5/6 + 4/5 + 2/4 + 0 + 0) / 5, R = (1 + 1 + 2/3 + 0 + 0) / 5 (no 6-gram in the
  // reference), F2 = 5 P R / (4 P + R) = 0.507936...
  const double p = (5.0 / 6 + 4.0 / 5 + 2.0 / 4) / 5, r = (1 + 1 + 2.0 / 3) / 5;
  CHECK(chrf({"M\xC3\xBCller"}, {"M\xC3\xBCler"}) == near(100 * 5 * p * r / (4 * p + r)));
  // No-break space and the ideographic space are whitespace to Python's str.split().
  CHECK(chrf({"a\xC2\xA0" "b\xE3\x80\x80" "c"}, {"abc"}) == near(100));
  // A stray byte is a character of its own, not a crash.
  CHECK(chrf({"a\xFF" "b"}, {"ab"}) > 0);
}

TEST_CASE("corpus chrF sums the statistics of every line", "[metrics][chrf]") {
  const std::vector<std::string> hyps = {"Das Haus ist klein.", "Ich bin hier"};
  const std::vector<std::string> refs = {"Das Haus ist sehr klein.", "Ich war hier"};
  const auto corpus = corpus_chrf(hyps, refs);
  auto sum = corpus_chrf({hyps[0]}, {refs[0]});
  const auto second = corpus_chrf({hyps[1]}, {refs[1]});
  for (int i = 0; i < xformer::metrics::kChrfOrder; ++i) {
    sum.hyp[i] += second.hyp[i];
    sum.ref[i] += second.ref[i];
    sum.match[i] += second.match[i];
  }
  CHECK(chrf_from_stats(sum) == near(corpus.score));
  // Not the mean of the sentence scores.
  CHECK(corpus.score != near((corpus_chrf({hyps[0]}, {refs[0]}).score + second.score) / 2));
  CHECK(corpus.score == Approx(54.095525112019985).epsilon(1e-12));  // an independent Counter-based script

  // A reference too short for an order adds nothing to it, its hypothesis n-grams included:
  // "abcd" vs "ab" counts for orders 1-2 only (hyp 4 and 3, matches 2 and 1), the identical
  // 7-character line for all six. Orders 1, 2: P = 9/11, 7/9 (R = 1); orders 3-6: P = R = 1;
  // F2 = 5 P / (4 P + 1) with P = (9/11 + 7/9 + 4) / 6 -> 98.58 (not 96.6 with the 3 + 2 + 1
  // hypothesis n-grams of orders 3-5 counted as misses).
  const auto short_ref = corpus_chrf({"abcd", "abcdefg"}, {"ab", "abcdefg"});
  CHECK(short_ref.hyp[2] == 5);
  const double q = (9.0 / 11 + 7.0 / 9 + 4) / 6;
  CHECK(short_ref.score == near(100 * 5 * q / (4 * q + 1)));
  CHECK(corpus_chrf({"ab"}, {"abc"}, 3).to_string().rfind("chrF3 = ", 0) == 0);
}
