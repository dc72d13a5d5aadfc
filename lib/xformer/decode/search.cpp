#include "xformer/decode/search.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace xformer::decode {

EnsembleDecoder::EnsembleDecoder(std::vector<std::unique_ptr<IncrementalDecoder>> members)
    : members_(std::move(members)) {
  TORCH_CHECK(!members_.empty(), "an ensemble needs at least one member");
}

torch::Tensor EnsembleDecoder::step(const torch::Tensor& tokens) {
  std::vector<torch::Tensor> logits;
  for (auto& m : members_) logits.push_back(m->step(tokens));
  return log_mean_softmax(logits);
}

void EnsembleDecoder::reorder(const torch::Tensor& index) {
  for (auto& m : members_) m->reorder(index);
}

torch::Tensor log_mean_softmax(const std::vector<torch::Tensor>& logits) {
  TORCH_CHECK(!logits.empty(), "log_mean_softmax of no logits");
  if (logits.size() == 1) return torch::log_softmax(logits[0].to(torch::kFloat), -1);
  std::vector<torch::Tensor> log_probs;
  for (const auto& l : logits) log_probs.push_back(torch::log_softmax(l.to(torch::kFloat), -1));
  // (n, ..., V) -> (..., V): log sum_i p_i - log n, without leaving log space.
  return torch::logsumexp(torch::stack(log_probs), 0) - std::log(static_cast<double>(logits.size()));
}

namespace {
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

int64_t longest(const SearchOptions& o, int64_t batch) {
  TORCH_CHECK(static_cast<int64_t>(o.max_len.size()) == batch, "max_len needs one entry per row");
  return *std::max_element(o.max_len.begin(), o.max_len.end());
}

// Log-probabilities (N, V) in fp32 of one decoder step, on the decoder's device: only the few
// numbers a search needs cross to the host each step (on a GPU the whole (N, V) would cost
// more than the step itself).
// `banned`: o.banned as an index on the decoder's device, made at the first step and reused.
torch::Tensor step_log_probs(IncrementalDecoder& decoder, const torch::Tensor& tokens, const SearchOptions& o,
                             torch::Tensor& banned) {
  auto logp = torch::log_softmax(decoder.step(tokens).to(torch::kFloat), -1);
  if (o.banned.empty()) return logp;
  if (!banned.defined()) banned = torch::tensor(o.banned, torch::kLong).to(logp.device());
  return logp.index_fill_(1, banned, -std::numeric_limits<float>::infinity());
}

// Shared loop of greedy and sampling: pick one token per row until EOS or max_len.
// pick: logp (N, V) -> tokens (N), long, on any device.
template <typename Pick>
std::vector<Hypothesis> one_path(IncrementalDecoder& decoder, int64_t batch,
                                 const SearchOptions& o, Pick&& pick) {
  std::vector<Hypothesis> hyps(batch);
  std::vector<bool> done(batch, false);
  auto tokens = torch::full({batch}, o.bos, torch::kLong);
  torch::Tensor banned;
  const int64_t steps = longest(o, batch);
  for (int64_t t = 0; t < steps; ++t) {
    auto logp = step_log_probs(decoder, tokens, o, banned);
    const torch::Tensor picked = pick(logp).to(logp.device());
    // (N, 2) on the host: log-prob of the picked token, and of EOS (forced in the last slot).
    const torch::Tensor chosen = torch::stack({logp.gather(1, picked.unsqueeze(1)).squeeze(1), logp.select(1, o.eos)}, 1)
                      .to(torch::kCPU);
    torch::Tensor next = picked.to(torch::kCPU);
    auto next_a = next.accessor<int64_t, 1>();
    auto chosen_a = chosen.accessor<float, 2>();
    bool all_done = true;
    for (int64_t b = 0; b < batch; ++b) {
      if (done[b]) continue;
      const bool forced_eos = t + 1 >= o.max_len[b];  // the last slot is EOS
      const int64_t tok = forced_eos ? o.eos : next_a[b];
      hyps[b].score += chosen_a[b][forced_eos ? 1 : 0];
      if (tok == o.eos) done[b] = true;
      else hyps[b].tokens.push_back(tok);
      next_a[b] = tok;
      all_done = all_done && done[b];
    }
    if (all_done) break;
    tokens = next;
  }
  for (auto& h : hyps) h.normalized = h.score;
  return hyps;
}
}  // namespace

double gnmt_length_penalty(int64_t length, double alpha) {
  return std::pow((5.0 + static_cast<double>(length)) / 6.0, alpha);
}

std::vector<Hypothesis> greedy(IncrementalDecoder& decoder, int64_t batch, const SearchOptions& o) {
  return one_path(decoder, batch, o, [](const torch::Tensor& logp) { return logp.argmax(-1); });
}

torch::Tensor top_k_filter(const torch::Tensor& logits, int64_t k) {
  if (k <= 0 || k >= logits.size(-1)) return logits;
  auto kth = std::get<0>(logits.topk(k, -1)).narrow(-1, k - 1, 1);  // (N, 1)
  return logits.masked_fill(logits < kth, -std::numeric_limits<float>::infinity());
}

torch::Tensor top_p_filter(const torch::Tensor& logits, double p) {
  if (p >= 1.0) return logits;
  auto sorted = logits.sort(-1, /*descending=*/true);
  auto values = std::get<0>(sorted), order = std::get<1>(sorted);
  auto cum = values.softmax(-1).cumsum(-1);
  // Drop a token when the mass before it already reaches p; the first token always stays.
  auto drop_sorted = (cum - values.softmax(-1)) >= p;
  auto drop = torch::zeros_like(drop_sorted).scatter(-1, order, drop_sorted);
  return logits.masked_fill(drop, -std::numeric_limits<float>::infinity());
}

torch::Tensor tempered(const torch::Tensor& logits, double temperature) {
  // Divided in double: a temperature beyond float's range (1e-50 rounds to 0 there, 1e39 to inf)
  // would make 0 / 0 or -inf / inf, NaN.
  const auto shifted = logits.to(torch::kDouble) - std::get<0>(logits.max(-1, /*keepdim=*/true)).to(torch::kDouble);
  return (shifted / temperature).to(logits.scalar_type());
}

std::vector<Hypothesis> sample(IncrementalDecoder& decoder, int64_t batch, const SearchOptions& o) {
  TORCH_CHECK(o.temperature > 0, "temperature must be > 0");
  auto gen = at::detail::createCPUGenerator(o.seed);
  // Drawn on the host with a CPU generator: the same seed gives the same samples on any device.
  return one_path(decoder, batch, o, [&](const torch::Tensor& logp) {
    auto logits = top_p_filter(top_k_filter(tempered(logp.to(torch::kCPU), o.temperature), o.top_k), o.top_p);
    return torch::multinomial(logits.softmax(-1), 1, false, gen).squeeze(1);
  });
}

std::vector<Hypothesis> beam_search(IncrementalDecoder& decoder, int64_t batch,
                                    const SearchOptions& o) {
  std::vector<Hypothesis> best(batch);
  auto lists = beam_search_nbest(decoder, batch, o, 1);
  for (int64_t b = 0; b < batch; ++b)
    if (!lists[b].empty()) best[b] = std::move(lists[b][0]);
  return best;
}

std::vector<std::vector<Hypothesis>> beam_search_nbest(IncrementalDecoder& decoder, int64_t batch,
                                                       const SearchOptions& o, int64_t n) {
  const int64_t K = o.beam;
  TORCH_CHECK(n >= 1 && n <= K, "n-best needs 1 <= n <= beam");
  TORCH_CHECK(K >= 1, "beam must be >= 1");
  const int64_t N = batch * K;
  const int64_t steps = longest(o, batch);
  decoder.reorder(torch::arange(batch).repeat_interleave(K));

  // Live beams of each row: their tokens and summed log-probabilities. Only beam 0 starts
  // alive so the first step does not pick K copies of the same token.
  std::vector<std::vector<int64_t>> seqs(N);
  std::vector<double> scores(N, kNegInf);
  for (int64_t b = 0; b < batch; ++b) scores[b * K] = 0;
  std::vector<std::vector<Hypothesis>> finished(batch);
  std::vector<bool> done(batch, false);
  auto tokens = torch::full({N}, o.bos, torch::kLong);
  torch::Tensor banned;

  for (int64_t t = 0; t < steps; ++t) {
    auto logp = step_log_probs(decoder, tokens, o, banned);
    const int64_t V = logp.size(1);
    // Candidates: every (beam, token) of a row, by accumulated score; 2K of them suffice to
    // find K that do not end in EOS. Ranked on the decoder's device; the host gets (batch, 2K).
    auto beam_scores = torch::tensor(scores, torch::kDouble).to(logp.device(), torch::kFloat);
    auto top = (logp + beam_scores.unsqueeze(1)).view({batch, K * V}).topk(std::min<int64_t>(2 * K, K * V), -1);
    auto top_scores_t = std::get<0>(top).to(torch::kCPU), top_ids_t = std::get<1>(top).to(torch::kCPU);
    auto eos_logp_t = logp.select(1, o.eos).to(torch::kCPU);  // (N): ending every beam at max_len
    auto top_scores = top_scores_t.accessor<float, 2>();
    auto top_ids = top_ids_t.accessor<int64_t, 2>();
    auto eos_logp = eos_logp_t.accessor<float, 1>();

    std::vector<int64_t> source(N, 0), next(N, o.eos);
    std::vector<std::vector<int64_t>> new_seqs(N);
    std::vector<double> new_scores(N, kNegInf);
    bool all_done = true;
    for (int64_t b = 0; b < batch; ++b) {
      int64_t filled = 0;
      if (!done[b]) {
        const bool last = t + 1 >= o.max_len[b];
        if (last) {
          // Out of room: every live beam ends here with EOS.
          for (int64_t k = 0; k < K; ++k) {
            int64_t row = b * K + k;
            if (scores[row] == kNegInf) continue;
            double s = scores[row] + eos_logp[row];
            finished[b].push_back({seqs[row], s, s / gnmt_length_penalty(seqs[row].size() + 1, o.lenpen)});
          }
          done[b] = true;
        } else {
          for (int64_t c = 0; c < top_ids.size(1) && filled < K; ++c) {
            double s = top_scores[b][c];
            if (s == kNegInf) break;
            int64_t row = b * K + top_ids[b][c] / V, tok = top_ids[b][c] % V;
            if (tok == o.eos) {
              if (static_cast<int64_t>(finished[b].size()) < K)
                finished[b].push_back({seqs[row], s, s / gnmt_length_penalty(seqs[row].size() + 1, o.lenpen)});
              continue;
            }
            int64_t dst = b * K + filled++;
            source[dst] = row, next[dst] = tok, new_scores[dst] = s;
            new_seqs[dst] = seqs[row];
            new_seqs[dst].push_back(tok);
          }
          if (static_cast<int64_t>(finished[b].size()) >= K || filled == 0) done[b] = true;
        }
      }
      if (done[b]) {  // keep the rows in place (cheap); their scores stay -inf
        for (int64_t k = 0; k < K; ++k) source[b * K + k] = b * K + k;
      }
      all_done = all_done && done[b];
    }
    if (all_done) break;
    seqs = std::move(new_seqs);
    scores = std::move(new_scores);
    auto index = torch::tensor(source, torch::kLong);
    decoder.reorder(index);
    tokens = torch::tensor(next, torch::kLong);
  }

  for (auto& f : finished) {
    std::stable_sort(f.begin(), f.end(),
                     [](const Hypothesis& x, const Hypothesis& y) { return x.normalized > y.normalized; });
    if (static_cast<int64_t>(f.size()) > n) f.resize(n);
  }
  return finished;
}

}  // namespace xformer::decode
