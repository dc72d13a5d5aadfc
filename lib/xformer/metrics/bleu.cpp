// sacreBLEU-compatible corpus BLEU (13a tokenizer, 'exp' smoothing, one reference).
//
// Design notes:
// - The 13a tokenizer is specified as a chain of regex substitutions, each applied to the
//   whole line before the next one starts. Every step here is one hand-written left-to-right
//   pass over the bytes that reproduces the regex engine's non-overlapping matching, because
//   the order and the non-overlap are what decide corner cases such as "..." or "&amp;lt;".
//   std::regex would be an order of magnitude slower for no gain.
// - UTF-8: all the patterns look at ASCII bytes only, and no ASCII byte occurs inside a
//   multibyte sequence, so a byte pass gives the same result as Python's code-point pass.
//   Whitespace is the exception: Python's str.split()/rstrip() also treat NBSP, U+2000..U+200A,
//   U+3000 etc. as whitespace, so those code points are recognised explicitly.
// - Counting: the tokenized line is single-space separated, so every n-gram is a contiguous
//   substring of it; n-grams are string_views into the line, never copied.
// - Scoring follows sacreBLEU's floating-point order of operations so the printed score
//   matches to the last digit.
#include "xformer/metrics/bleu.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string_view>

#include "xformer/metrics/python_text.h"

namespace xformer::metrics {
namespace {

constexpr int kMaxOrder = 4;

// Python's str.rstrip() with no argument.
std::string_view rstrip(std::string_view s) {
  size_t end = 0;
  for (size_t i = 0; i < s.size();) {
    const size_t w = whitespace_len(s, i);
    if (w) {
      i += w;
    } else {
      ++i;
      end = i;
    }
  }
  return s.substr(0, end);
}

// Python's str.replace: one left-to-right pass, replaced text is not rescanned.
std::string replace_all(const std::string& s, std::string_view from, std::string_view to) {
  size_t pos = s.find(from);
  if (pos == std::string::npos) return s;
  std::string out;
  out.reserve(s.size());
  size_t start = 0;
  while (pos != std::string::npos) {
    out.append(s, start, pos - start);
    out.append(to);
    start = pos + from.size();
    pos = s.find(from, start);
  }
  out.append(s, start, std::string::npos);
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// The first 13a class: { | } ~ [ \ ] ^ _ ` space ! " # $ % & ( ) * + : ; < = > ? @ /
// Notably absent: the apostrophe, '-', '.', ',' and the digits and letters.
bool is_split_punct(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  return (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
         (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == '/';
}

// Splits the tokenized line (single spaces, no leading/trailing space) into token views.
void split_tokens(std::string_view line, std::vector<std::string_view>& tokens) {
  tokens.clear();
  size_t start = 0;
  while (start < line.size()) {
    size_t end = line.find(' ', start);
    if (end == std::string_view::npos) end = line.size();
    tokens.push_back(line.substr(start, end - start));
    start = end + 1;
  }
}

// The n-gram of `n` tokens starting at token i, as a view into the line the tokens came from.
std::string_view ngram(const std::vector<std::string_view>& tok, size_t i, int n) {
  const char* first = tok[i].data();
  const char* last = tok[i + n - 1].data() + tok[i + n - 1].size();
  return std::string_view(first, static_cast<size_t>(last - first));
}

// sacreBLEU's my_log: log(0) is floored to a large negative number instead of -inf, which
// still drives the geometric mean to exactly 0.
double floored_log(double x) { return x == 0.0 ? -9999999999.0 : std::log(x); }

// Accumulates clipped n-gram statistics segment by segment. Per order, the n-grams of each
// side are sorted and the two runs merged: for sentence-length inputs this is cheaper than a
// hash map, and the buffers are reused between segments so steady state does not allocate.
class StatsAccumulator {
 public:
  void add(const std::string& hyp_tok, const std::string& ref_tok) {
    split_tokens(hyp_tok, hyp_);
    split_tokens(ref_tok, ref_);
    sys_len += static_cast<int64_t>(hyp_.size());
    ref_len += static_cast<int64_t>(ref_.size());
    for (int n = 1; n <= kMaxOrder; ++n) {
      if (hyp_.size() < static_cast<size_t>(n)) break;  // no n-grams of this order or above
      collect(hyp_, n, hyp_grams_);
      collect(ref_, n, ref_grams_);
      totals[n - 1] += static_cast<int64_t>(hyp_grams_.size());
      counts[n - 1] += clipped_matches();
    }
  }

  std::array<int64_t, kMaxOrder> counts{}, totals{};
  int64_t sys_len = 0, ref_len = 0;

 private:
  static void collect(const std::vector<std::string_view>& tok, int n,
                      std::vector<std::string_view>& out) {
    out.clear();
    for (size_t i = 0; i + n <= tok.size(); ++i) out.push_back(ngram(tok, i, n));
    std::sort(out.begin(), out.end());
  }

  // Sum over distinct hypothesis n-grams of min(count in hyp, count in ref).
  int64_t clipped_matches() const {
    int64_t matched = 0;
    size_t i = 0, j = 0;
    while (i < hyp_grams_.size()) {
      const std::string_view g = hyp_grams_[i];
      int64_t in_hyp = 0;
      for (; i < hyp_grams_.size() && hyp_grams_[i] == g; ++i) ++in_hyp;
      while (j < ref_grams_.size() && ref_grams_[j] < g) ++j;
      int64_t in_ref = 0;
      for (; j < ref_grams_.size() && ref_grams_[j] == g; ++j) ++in_ref;
      matched += std::min(in_hyp, in_ref);
    }
    return matched;
  }

  std::vector<std::string_view> hyp_, ref_, hyp_grams_, ref_grams_;
};

std::string preprocess(const std::string& line) { return tokenize_13a(std::string(rstrip(line))); }

}  // namespace

std::string tokenize_13a(const std::string& line) {
  // Language-independent part, in mteval's order: "<skipped>" first, then the hyphenated
  // line breaks (so "-\n" joins words), then the remaining newlines become spaces.
  std::string s = replace_all(line, "<skipped>", "");
  s = replace_all(s, "-\n", "");
  std::replace(s.begin(), s.end(), '\n', ' ');
  // Sequential, like the original: "&amp;lt;" becomes "<" but "&amp;quot;" stays "&quot;"
  // because the &quot; pass has already run when &amp; is unescaped.
  if (s.find('&') != std::string::npos) {
    s = replace_all(s, "&quot;", "\"");
    s = replace_all(s, "&amp;", "&");
    s = replace_all(s, "&lt;", "<");
    s = replace_all(s, "&gt;", ">");
  }

  // Step 1: pad the punctuation class with spaces. The line is first padded with one space on
  // each side so that a leading or trailing '.'/',' has a non-digit neighbour in steps 2-3.
  std::string a;
  a.reserve(s.size() * 2 + 2);
  a.push_back(' ');
  for (char c : s) {
    if (is_split_punct(c)) {
      a.push_back(' ');
      a.push_back(c);
      a.push_back(' ');
    } else {
      a.push_back(c);
    }
  }
  a.push_back(' ');

  // Step 2: "X." / "X," with X not a digit -> "X . ". A match consumes both characters, so in
  // "a.," only the '.' is split here (the ',' is left for step 3).
  std::string b;
  b.reserve(a.size() * 2);
  for (size_t i = 0; i < a.size();) {
    if (i + 1 < a.size() && !is_digit(a[i]) && (a[i + 1] == '.' || a[i + 1] == ',')) {
      b.push_back(a[i]);
      b.push_back(' ');
      b.push_back(a[i + 1]);
      b.push_back(' ');
      i += 2;
    } else {
      b.push_back(a[i++]);
    }
  }

  // Step 3: ".Y" / ",Y" with Y not a digit -> " . Y". Together with step 2 this keeps "3.5"
  // and "1,000" whole but splits "3." and ".5" (the latter against the leading pad space).
  std::string c;
  c.reserve(b.size() * 2);
  for (size_t i = 0; i < b.size();) {
    if (i + 1 < b.size() && (b[i] == '.' || b[i] == ',') && !is_digit(b[i + 1])) {
      c.push_back(' ');
      c.push_back(b[i]);
      c.push_back(' ');
      c.push_back(b[i + 1]);
      i += 2;
    } else {
      c.push_back(b[i++]);
    }
  }

  // Step 4: a dash after a digit is split off ("1990-2000" -> "1990 - 2000"); other dashes
  // ("well-known", "x-1") stay inside the word.
  std::string d;
  d.reserve(c.size() * 2);
  for (size_t i = 0; i < c.size();) {
    if (i + 1 < c.size() && is_digit(c[i]) && c[i + 1] == '-') {
      d.push_back(c[i]);
      d.push_back(' ');
      d.push_back('-');
      d.push_back(' ');
      i += 2;
    } else {
      d.push_back(c[i++]);
    }
  }

  // Collapse every whitespace run (Unicode whitespace included) to one space, no padding.
  std::string out;
  out.reserve(d.size());
  bool pending_space = false;
  for (size_t i = 0; i < d.size();) {
    const size_t w = whitespace_len(d, i);
    if (w) {
      pending_space = !out.empty();
      i += w;
    } else {
      if (pending_space) out.push_back(' ');
      pending_space = false;
      out.push_back(d[i++]);
    }
  }
  return out;
}

BleuResult bleu_from_stats(const std::array<int64_t, 4>& counts,
                           const std::array<int64_t, 4>& totals, int64_t sys_len,
                           int64_t ref_len, bool effective_order) {
  BleuResult r;
  r.counts = counts;
  r.totals = totals;
  r.sys_len = sys_len;
  r.ref_len = ref_len;

  // An empty hypothesis side against a non-empty reference gets BP 0 rather than a division
  // by zero.
  r.brevity_penalty = 1.0;
  if (sys_len < ref_len)
    r.brevity_penalty =
        sys_len > 0 ? std::exp(1.0 - static_cast<double>(ref_len) / static_cast<double>(sys_len))
                    : 0.0;

  // No match of any order: score 0 and the precisions are reported unsmoothed (all 0).
  if (std::all_of(counts.begin(), counts.end(), [](int64_t x) { return x == 0; })) return r;

  // 'exp' smoothing (mteval's NIST method): the k-th order with zero matches gets precision
  // 1 / (2^k * total). An order with no hypothesis n-grams at all stops the loop: its
  // precision and those above stay 0, which zeroes corpus BLEU unless effective_order drops
  // them from the mean.
  double smooth = 1.0;
  int eff_order = kMaxOrder;
  for (int n = 0; n < kMaxOrder; ++n) {
    if (totals[n] == 0) break;
    if (effective_order) eff_order = n + 1;
    if (counts[n] == 0) {
      smooth *= 2.0;
      r.precisions[n] = 100.0 / (smooth * static_cast<double>(totals[n]));
    } else {
      r.precisions[n] = 100.0 * static_cast<double>(counts[n]) / static_cast<double>(totals[n]);
    }
  }

  double log_sum = 0.0;
  for (int n = 0; n < eff_order; ++n) log_sum += floored_log(r.precisions[n]);
  r.score = r.brevity_penalty * std::exp(log_sum / eff_order);
  return r;
}

BleuResult corpus_bleu(const std::vector<std::string>& hypotheses,
                       const std::vector<std::string>& references) {
  if (hypotheses.size() != references.size())
    throw std::invalid_argument("corpus_bleu: " + std::to_string(hypotheses.size()) +
                                " hypotheses but " + std::to_string(references.size()) +
                                " references");
  StatsAccumulator acc;
  for (size_t i = 0; i < hypotheses.size(); ++i)
    acc.add(preprocess(hypotheses[i]), preprocess(references[i]));
  return bleu_from_stats(acc.counts, acc.totals, acc.sys_len, acc.ref_len, false);
}

double sentence_bleu(const std::string& hypothesis, const std::string& reference) {
  StatsAccumulator acc;
  acc.add(preprocess(hypothesis), preprocess(reference));
  return bleu_from_stats(acc.counts, acc.totals, acc.sys_len, acc.ref_len, true).score;
}

std::string BleuResult::to_string() const {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "BLEU = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %lld "
                "ref_len = %lld)",
                score, precisions[0], precisions[1], precisions[2], precisions[3],
                brevity_penalty, ratio(), static_cast<long long>(sys_len),
                static_cast<long long>(ref_len));
  return buf;
}

}  // namespace xformer::metrics
