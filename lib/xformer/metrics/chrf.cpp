#include "xformer/metrics/chrf.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

#include "xformer/metrics/python_text.h"

namespace xformer::metrics {
namespace {

// The line without whitespace, and the byte offset of each code point in it (plus the end).
struct Characters {
  std::string text;
  std::vector<size_t> starts;
};

Characters characters(std::string_view line) {
  Characters c;
  c.text.reserve(line.size());
  for (size_t i = 0; i < line.size();) {
    if (const size_t w = whitespace_len(line, i)) {
      i += w;
      continue;
    }
    const size_t n = code_point_len(line, i);
    c.starts.push_back(c.text.size());
    c.text.append(line.substr(i, n));
    i += n;
  }
  c.starts.push_back(c.text.size());
  return c;
}

// Counts of the n-grams of one order, as views into the line's text.
using Counts = std::unordered_map<std::string_view, int64_t>;

Counts ngrams(const Characters& c, int n) {
  Counts counts;
  const std::string_view text(c.text);
  const size_t chars = c.starts.size() - 1;
  for (size_t i = 0; i + n <= chars; ++i) ++counts[text.substr(c.starts[i], c.starts[i + n] - c.starts[i])];
  return counts;
}

}  // namespace

std::string ChrfResult::to_string() const {
  char buf[64];
  std::snprintf(buf, sizeof buf, "chrF%g = %.2f", beta, score);
  return buf;
}

double chrf_from_stats(const ChrfResult& s, double beta) {
  double precision = 0, recall = 0;
  int effective_order = 0;  // orders that both sides have: short lines do not count as misses
  for (int i = 0; i < kChrfOrder; ++i) {
    if (s.hyp[i] == 0 || s.ref[i] == 0) continue;
    precision += static_cast<double>(s.match[i]) / static_cast<double>(s.hyp[i]);
    recall += static_cast<double>(s.match[i]) / static_cast<double>(s.ref[i]);
    ++effective_order;
  }
  if (effective_order == 0) return 0.0;
  precision /= effective_order;
  recall /= effective_order;
  if (precision + recall == 0) return 0.0;
  const double b2 = beta * beta;
  return 100 * ((1 + b2) * precision * recall / (b2 * precision + recall));
}

ChrfResult corpus_chrf(const std::vector<std::string>& hypotheses, const std::vector<std::string>& references,
                       double beta) {
  if (hypotheses.size() != references.size())
    throw std::invalid_argument("chrF needs one reference per hypothesis (" + std::to_string(hypotheses.size()) +
                                " hypotheses, " + std::to_string(references.size()) + " references)");
  ChrfResult r;
  r.beta = beta;
  for (size_t line = 0; line < hypotheses.size(); ++line) {
    const auto hyp = characters(hypotheses[line]), ref = characters(references[line]);
    const size_t hyp_chars = hyp.starts.size() - 1, ref_chars = ref.starts.size() - 1;
    for (int n = 1; n <= kChrfOrder; ++n) {
      // A line whose reference is too short for this order adds nothing to it, not even its
      // hypothesis n-grams (as sacreBLEU counts).
      if (ref_chars < static_cast<size_t>(n)) break;
      const auto h = ngrams(hyp, n), g = ngrams(ref, n);
      r.ref[n - 1] += static_cast<int64_t>(ref_chars - n + 1);
      r.hyp[n - 1] += static_cast<int64_t>(hyp_chars >= static_cast<size_t>(n) ? hyp_chars - n + 1 : 0);
      for (const auto& [gram, count] : h)
        if (auto it = g.find(gram); it != g.end()) r.match[n - 1] += std::min(count, it->second);
    }
  }
  r.score = chrf_from_stats(r, beta);
  return r;
}

}  // namespace xformer::metrics
