// Tests for the sacreBLEU-compatible BLEU: the 13a tokenizer rule by rule, and corpus scores
// whose expected values are worked out by hand in the comments (clipped n-gram counts ->
// precisions -> brevity penalty -> geometric mean).
#include "test_support.h"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "xformer/metrics/bleu.h"

using xformer::metrics::bleu_from_stats;
using xformer::metrics::BleuResult;
using xformer::metrics::corpus_bleu;
using xformer::metrics::sentence_bleu;
using xformer::metrics::tokenize_13a;
using xformer::testing::near;

TEST_CASE("tokenize_13a splits punctuation", "[metrics][bleu]") {
  CHECK(tokenize_13a("Hello, world!") == "Hello , world !");
  CHECK(tokenize_13a("(a) [b] {c} x/y a+b=c @me #tag 50%") ==
        "( a ) [ b ] { c } x / y a + b = c @ me # tag 50 %");
  // The apostrophe is not in the punctuation class.
  CHECK(tokenize_13a("don't") == "don't");
  // Whitespace runs collapse and the ends are trimmed.
  CHECK(tokenize_13a("  a \t b  ") == "a b");
  CHECK(tokenize_13a("") == "");
  CHECK(tokenize_13a("   ") == "");
}

TEST_CASE("tokenize_13a keeps '.' and ',' between digits", "[metrics][bleu]") {
  CHECK(tokenize_13a("It costs $3.5 or 1,000 dollars.") == "It costs $ 3.5 or 1,000 dollars .");
  // A period after a digit is split when no digit follows, and vice versa.
  CHECK(tokenize_13a("version 2.") == "version 2 .");
  CHECK(tokenize_13a("1,a") == "1 , a");
  // A leading ".5" is split: the line is padded with a space, which is not a digit.
  CHECK(tokenize_13a(".5") == ". 5");
  CHECK(tokenize_13a("a.,b") == "a . , b");
  CHECK(tokenize_13a("...") == ". . .");
  CHECK(tokenize_13a("1...") == "1 . . .");
}

TEST_CASE("tokenize_13a unescapes entities in mteval's order", "[metrics][bleu]") {
  CHECK(tokenize_13a("He said &quot;hi&quot; &amp; left &lt;b&gt;") ==
        "He said \" hi \" & left < b >");
  // &quot; is unescaped before &amp;, so "&amp;quot;" only becomes "&quot;" (then split at
  // '&' and ';'), while "&amp;lt;" goes all the way to "<".
  CHECK(tokenize_13a("&amp;quot;") == "& quot ;");
  CHECK(tokenize_13a("&amp;lt;") == "<");
}

TEST_CASE("tokenize_13a dashes, line breaks and <skipped>", "[metrics][bleu]") {
  // Only a dash preceded by a digit is split off.
  CHECK(tokenize_13a("well-known 1990-2000 x-1 2-x a - b") ==
        "well-known 1990 - 2000 x-1 2 - x a - b");
  // "-\n" joins a hyphenated line break; other newlines become spaces.
  CHECK(tokenize_13a("hyphen-\nated line1\nline2") == "hyphenated line1 line2");
  CHECK(tokenize_13a("foo <skipped> bar") == "foo bar");
}

TEST_CASE("tokenize_13a leaves UTF-8 words whole", "[metrics][bleu]") {
  CHECK(tokenize_13a("Grüße, café.") == "Grüße , café .");
  CHECK(tokenize_13a("東京,大阪") == "東京 , 大阪");
  CHECK(tokenize_13a("naïve-ness 日本語。") == "naïve-ness 日本語。");
  // Unicode whitespace (NBSP, ideographic space) separates tokens, as Python's split() does.
  CHECK(tokenize_13a("a\xC2\xA0" "b\xE3\x80\x80" "c") == "a b c");
}

TEST_CASE("corpus_bleu: perfect match is 100", "[metrics][bleu]") {
  // "The cat sat on the mat ." = 7 tokens; every order matches fully: 7/7, 6/6, 5/5, 4/4.
  const BleuResult r = corpus_bleu({"The cat sat on the mat."}, {"The cat sat on the mat."});
  CHECK(r.score == Approx(100.0));
  for (double p : r.precisions) CHECK(p == Approx(100.0));
  CHECK(r.brevity_penalty == 1.0);
  CHECK(r.sys_len == 7);
  CHECK(r.ref_len == 7);
  CHECK(r.to_string() ==
        "BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 1.000 hyp_len = 7 ref_len = 7)");
}

TEST_CASE("corpus_bleu: partial match with brevity penalty", "[metrics][bleu]") {
  // hyp "the cat sat on mat" (5 tokens), ref "the cat sat on the mat" (6 tokens)
  //   1-grams: the cat sat on mat            -> 5/5 = 100%
  //   2-grams: the-cat cat-sat sat-on on-mat -> 3/4 = 75%   (on-mat is not in ref)
  //   3-grams: the-cat-sat cat-sat-on sat-on-mat -> 2/3 = 66.67%
  //   4-grams: the-cat-sat-on cat-sat-on-mat     -> 1/2 = 50%
  //   BP = exp(1 - 6/5) = exp(-0.2) = 0.818731
  //   BLEU = 100 * BP * (1 * 3/4 * 2/3 * 1/2)^(1/4) = 100 * exp(-0.2) * 0.25^(1/4)
  //        = 100 * 0.818731 * 0.707107 = 57.893
  const BleuResult r = corpus_bleu({"the cat sat on mat"}, {"the cat sat on the mat"});
  CHECK(r.score == Approx(100.0 * std::exp(-0.2) * std::sqrt(0.5)).epsilon(1e-12));
  CHECK(r.precisions[0] == near(100.0));
  CHECK(r.precisions[1] == near(75.0));
  CHECK(r.precisions[2] == near(200.0 / 3.0));
  CHECK(r.precisions[3] == near(50.0));
  CHECK(r.brevity_penalty == near(std::exp(-0.2)));
  CHECK(r.brevity_penalty < 1.0);
  CHECK(r.counts == std::array<int64_t, 4>{5, 3, 2, 1});
  CHECK(r.totals == std::array<int64_t, 4>{5, 4, 3, 2});
  CHECK(r.to_string() ==
        "BLEU = 57.89 100.0/75.0/66.7/50.0 (BP = 0.819 ratio = 0.833 hyp_len = 5 ref_len = 6)");
}

TEST_CASE("corpus_bleu: longer hypothesis has no brevity penalty", "[metrics][bleu]") {
  // hyp "the cat sat on a mat today" (7), ref "the cat sat on the mat" (6)
  //   1-grams: the cat sat on mat match, a today do not -> 5/7
  //   2-grams: the-cat cat-sat sat-on                   -> 3/6
  //   3-grams: the-cat-sat cat-sat-on                   -> 2/5
  //   4-grams: the-cat-sat-on                           -> 1/4
  //   BP = 1 (7 >= 6); BLEU = 100 * (5/7 * 1/2 * 2/5 * 1/4)^(1/4) = 100 * (1/28)^(1/4) = 43.472
  const BleuResult r = corpus_bleu({"the cat sat on a mat today"}, {"the cat sat on the mat"});
  CHECK(r.brevity_penalty == 1.0);
  CHECK(r.score == Approx(100.0 * std::pow(1.0 / 28.0, 0.25)).epsilon(1e-12));
  CHECK(r.precisions[0] == near(500.0 / 7.0));
}

TEST_CASE("corpus_bleu: clipping and 'exp' smoothing of zero-match orders", "[metrics][bleu]") {
  // hyp "the the the the", ref "the cat"
  //   1-grams: "the" x4 clipped to its 1 occurrence in ref -> 1/4 = 25%
  //   2-grams: the-the x3, none in ref -> 0/3: 1st zero order -> 100 / (2 * 3) = 16.667%
  //   3-grams: 0/2: 2nd zero order -> 100 / (4 * 2) = 12.5%
  //   4-grams: 0/1: 3rd zero order -> 100 / (8 * 1) = 12.5%
  //   BP = 1 (4 >= 2); BLEU = (25 * 50/3 * 12.5 * 12.5)^(1/4) = 65104.17^(1/4) = 15.974
  const BleuResult r = corpus_bleu({"the the the the"}, {"the cat"});
  CHECK(r.counts == std::array<int64_t, 4>{1, 0, 0, 0});
  CHECK(r.precisions[0] == near(25.0));
  CHECK(r.precisions[1] == near(100.0 / 6.0));
  CHECK(r.precisions[2] == near(12.5));
  CHECK(r.precisions[3] == near(12.5));
  CHECK(r.brevity_penalty == 1.0);
  CHECK(r.score == Approx(std::pow(25.0 * (50.0 / 3.0) * 12.5 * 12.5, 0.25)).epsilon(1e-12));
  CHECK(r.to_string() ==
        "BLEU = 15.97 25.0/16.7/12.5/12.5 (BP = 1.000 ratio = 2.000 hyp_len = 4 ref_len = 2)");
}

TEST_CASE("corpus_bleu: statistics add over segments before scoring", "[metrics][bleu]") {
  // Segment 1 as in the brevity-penalty case: counts 5,3,2,1 / totals 5,4,3,2, lengths 5 vs 6.
  // Segment 2 "hello world" = ref: counts 2,1,0,0 / totals 2,1,0,0, lengths 2 vs 2.
  //   sums: 7/7, 4/5, 2/3, 1/2 -> 100%, 80%, 66.67%, 50%; lengths 7 vs 8
  //   BP = exp(1 - 8/7) = exp(-1/7) = 0.866878
  //   BLEU = 100 * exp(-1/7) * (4/5 * 2/3 * 1/2)^(1/4) = 100 * 0.866878 * (4/15)^(1/4) = 62.295
  const std::vector<std::string> hyps = {"the cat sat on mat", "hello world"};
  const std::vector<std::string> refs = {"the cat sat on the mat", "hello world"};
  const BleuResult r = corpus_bleu(hyps, refs);
  CHECK(r.sys_len == 7);
  CHECK(r.ref_len == 8);
  CHECK(r.score == Approx(100.0 * std::exp(-1.0 / 7.0) * std::pow(4.0 / 15.0, 0.25)).epsilon(1e-12));

  // Summing per-shard statistics and rescoring reproduces the corpus score exactly.
  const BleuResult a = corpus_bleu({hyps[0]}, {refs[0]});
  const BleuResult b = corpus_bleu({hyps[1]}, {refs[1]});
  std::array<int64_t, 4> counts{}, totals{};
  for (int n = 0; n < 4; ++n) {
    counts[n] = a.counts[n] + b.counts[n];
    totals[n] = a.totals[n] + b.totals[n];
  }
  const BleuResult merged =
      bleu_from_stats(counts, totals, a.sys_len + b.sys_len, a.ref_len + b.ref_len);
  CHECK(merged.score == r.score);
}

TEST_CASE("corpus_bleu: an order with no hypothesis n-grams zeroes the score",
          "[metrics][bleu]") {
  // hyp = ref = "the cat": counts 2/2, 1/1, totals 0 and 0 for orders 3 and 4. sacreBLEU stops
  // at the first zero total, leaving those precisions at 0 (no smoothing), and log(0) is
  // floored to -9999999999, so corpus BLEU is exactly 0 despite a perfect match.
  const BleuResult r = corpus_bleu({"the cat"}, {"the cat"});
  CHECK(r.score == 0.0);
  CHECK(r.precisions[0] == near(100.0));
  CHECK(r.precisions[1] == near(100.0));
  CHECK(r.precisions[2] == 0.0);
  CHECK(r.precisions[3] == 0.0);
  // Sentence BLEU uses the effective order (only orders 1-2 here): (100 * 100)^(1/2) = 100.
  CHECK(sentence_bleu("the cat", "the cat") == Approx(100.0));
  // With all four orders present, sentence BLEU equals the one-segment corpus BLEU.
  CHECK(sentence_bleu("the cat sat on mat", "the cat sat on the mat") ==
        Approx(100.0 * std::exp(-0.2) * std::sqrt(0.5)).epsilon(1e-12));
}

TEST_CASE("corpus_bleu: no matches at all gives 0", "[metrics][bleu]") {
  // No order has a match: the score is 0 and the precisions are reported unsmoothed.
  const BleuResult r = corpus_bleu({"a b c d", "e f g h"}, {"w x y z", "s t u v"});
  CHECK(r.score == 0.0);
  for (double p : r.precisions) CHECK(p == 0.0);
  CHECK(r.brevity_penalty == 1.0);
  CHECK(r.to_string() ==
        "BLEU = 0.00 0.0/0.0/0.0/0.0 (BP = 1.000 ratio = 1.000 hyp_len = 8 ref_len = 8)");
}

TEST_CASE("corpus_bleu: empty hypotheses and empty corpus", "[metrics][bleu]") {
  // An empty hypothesis line: sys_len 0 < ref_len 2, so BP = 0 (not a division by zero).
  const BleuResult e = corpus_bleu({""}, {"the cat"});
  CHECK(e.score == 0.0);
  CHECK(e.sys_len == 0);
  CHECK(e.ref_len == 2);
  CHECK(e.brevity_penalty == 0.0);
  CHECK(e.to_string() ==
        "BLEU = 0.00 0.0/0.0/0.0/0.0 (BP = 0.000 ratio = 0.000 hyp_len = 0 ref_len = 2)");

  // An empty corpus: all statistics 0, BP 1, ratio reported as 0.
  const BleuResult z = corpus_bleu({}, {});
  CHECK(z.score == 0.0);
  CHECK(z.sys_len == 0);
  CHECK(z.ref_len == 0);
  CHECK(z.to_string() ==
        "BLEU = 0.00 0.0/0.0/0.0/0.0 (BP = 1.000 ratio = 0.000 hyp_len = 0 ref_len = 0)");

  CHECK(sentence_bleu("", "") == 0.0);
}

TEST_CASE("corpus_bleu: trailing whitespace is stripped before tokenizing", "[metrics][bleu]") {
  // sacreBLEU rstrip()s each line first, so a trailing "-\n" loses its newline and the dash
  // stays: "word-\n" scores as the token "word-", whereas tokenize_13a alone joins it away.
  CHECK(tokenize_13a("word-\n") == "word");
  const BleuResult r = corpus_bleu({"word-\n"}, {"word-"});
  CHECK(r.sys_len == 1);
  CHECK(r.counts[0] == 1);
  // Unicode trailing whitespace (NBSP) is stripped too.
  CHECK(corpus_bleu({"x\xC2\xA0"}, {"x"}).sys_len == 1);
}

TEST_CASE("corpus_bleu: mismatched sizes throw", "[metrics][bleu]") {
  CHECK_THROWS_AS(corpus_bleu({"a", "b"}, {"a"}), std::invalid_argument);
}
