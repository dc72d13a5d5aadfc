// Tests of greedy search, beam search and sampling on toy decoders whose next-token
// distribution is a known function of the prefix, and on a small random Transformer.
#include "test_support.h"

#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <vector>

#include "xformer/decode/search.h"
#include "xformer/models/transformer.h"

namespace {

namespace decode = xformer::decode;
namespace models = xformer::models;
using decode::Hypothesis;
using decode::SearchOptions;

constexpr int64_t kBos = 2, kEos = 3;

// A decoder whose state per row is (batch row, tokens fed so far, BOS included) and whose
// next-token log-probabilities are `fn(row, prefix)`. Because the distribution depends on the
// whole prefix, a search that reorders rows wrongly gets different numbers.
class ToyDecoder : public decode::IncrementalDecoder {
 public:
  using Fn = std::function<std::vector<double>(int64_t row, const std::vector<int64_t>& prefix)>;
  ToyDecoder(int64_t batch, Fn fn) : fn_(std::move(fn)) {
    for (int64_t b = 0; b < batch; ++b) rows_.push_back({b, {}});
  }
  torch::Tensor step(const torch::Tensor& tokens) override {
    REQUIRE(tokens.size(0) == static_cast<int64_t>(rows_.size()));
    std::vector<torch::Tensor> out;
    for (size_t r = 0; r < rows_.size(); ++r) {
      rows_[r].prefix.push_back(tokens[r].item<int64_t>());
      out.push_back(torch::tensor(fn_(rows_[r].row, rows_[r].prefix), torch::kDouble));
    }
    return torch::stack(out).to(torch::kFloat);
  }
  void reorder(const torch::Tensor& index) override {
    std::vector<Row> next;
    for (int64_t i = 0; i < index.size(0); ++i) next.push_back(rows_.at(index[i].item<int64_t>()));
    rows_ = std::move(next);
  }

 private:
  struct Row {
    int64_t row;
    std::vector<int64_t> prefix;
  };
  std::vector<Row> rows_;
  Fn fn_;
};

// Pseudo-random logits over V tokens, a deterministic function of (row, prefix); EOS gets more
// likely as the prefix grows so that hypotheses of different lengths finish.
constexpr int64_t kToyVocab = 6;
std::vector<double> hashed_logits(int64_t row, const std::vector<int64_t>& prefix) {
  uint64_t h = 1469598103934665603ULL ^ static_cast<uint64_t>(row + 1);
  for (auto t : prefix) h = (h ^ static_cast<uint64_t>(t + 7)) * 1099511628211ULL;
  std::mt19937_64 gen(h);
  std::uniform_real_distribution<double> u(-3.0, 3.0);
  std::vector<double> logits(kToyVocab);
  for (auto& x : logits) x = u(gen);
  return logits;
}
std::vector<double> random_logits(int64_t row, const std::vector<int64_t>& prefix) {
  auto logits = hashed_logits(row, prefix);
  logits[kEos] += 0.5 * static_cast<double>(prefix.size()) - 1.0;
  return logits;
}
// The same with EOS unlikely early on (-2 before 3 tokens have been generated, then +1 per
// token): the best hypotheses are long, so a search must get several steps right.
std::vector<double> late_eos_logits(int64_t row, const std::vector<int64_t>& prefix) {
  auto logits = hashed_logits(row, prefix);
  logits[kEos] += prefix.size() <= 3 ? -2.0 : static_cast<double>(prefix.size()) - 3.0;
  return logits;
}

// log_softmax of a toy decoder's logits.
std::vector<double> log_probs(const std::vector<double>& logits) {
  double top = *std::max_element(logits.begin(), logits.end()), z = 0;
  for (double x : logits) z += std::exp(x - top);
  std::vector<double> out;
  for (double x : logits) out.push_back(x - top - std::log(z));
  return out;
}

// Sum of log-probabilities of `tokens` + EOS under a toy function.
double toy_score(const ToyDecoder::Fn& fn, int64_t row, const std::vector<int64_t>& tokens) {
  std::vector<int64_t> prefix{kBos};
  double s = 0;
  for (size_t t = 0; t <= tokens.size(); ++t) {
    auto lp = log_probs(fn(row, prefix));
    const int64_t next = t < tokens.size() ? tokens[t] : kEos;
    s += lp[next];
    prefix.push_back(next);
  }
  return s;
}

// Logits = log of a hand-written distribution for each prefix (anything else: EOS almost
// surely). Tokens: 0 "x", 1 "y", 2 BOS, 3 EOS, 4 "z".
ToyDecoder::Fn table_fn(std::map<std::vector<int64_t>, std::vector<double>> table) {
  return [table](int64_t, const std::vector<int64_t>& prefix) {
    auto it = table.find(prefix);
    std::vector<double> p = it != table.end() ? it->second
                                              : std::vector<double>{0.01, 0.01, 0.01, 0.96, 0.01};
    for (auto& x : p) x = std::log(x);
    return p;
  };
}

SearchOptions options(std::vector<int64_t> max_len, int beam = 1, double lenpen = 1.0) {
  SearchOptions o;
  o.bos = kBos;
  o.eos = kEos;
  o.max_len = std::move(max_len);
  o.beam = beam;
  o.lenpen = lenpen;
  return o;
}

// An untrained model ends most hypotheses at once; this bias on the EOS logit makes them
// several tokens long so that the searches below have something to get wrong.
constexpr double kEosBias = -4.0;

// The incremental decoder that the translation task builds over a Transformer (plus the EOS
// bias).
class TransformerStepper : public decode::IncrementalDecoder {
 public:
  TransformerStepper(models::Transformer model, models::EncoderOut encoder)
      : model_(std::move(model)), encoder_(std::move(encoder)), cache_(model_->make_cache()) {}
  torch::Tensor step(const torch::Tensor& tokens) override {
    auto logits = model_->decode(tokens.unsqueeze(1), encoder_, &cache_).squeeze(1);
    logits.select(1, kEos).add_(kEosBias);
    return logits;
  }
  void reorder(const torch::Tensor& index) override {
    encoder_.reorder(index);
    cache_.reorder(index);
  }

 private:
  models::Transformer model_;
  models::EncoderOut encoder_;
  models::DecoderCache cache_;
};

models::Transformer random_transformer() {
  auto o = xformer::testing::small_transformer_options();
  torch::manual_seed(11);
  models::Transformer model(o);
  model->eval();
  return model;
}

torch::Tensor random_source() {
  return torch::tensor({4, 5, 6, 7, 3, 8, 9, 3, 0, 0, 10, 11, 12, 3, 0, 6, 3, 0, 0, 0}, torch::kLong)
      .view({4, 5});
}

// Sum of log-probabilities of row b's `tokens` + EOS by a full (uncached) decoder pass.
double transformer_score(models::Transformer& model, const torch::Tensor& src, int64_t b,
                         const std::vector<int64_t>& tokens) {
  std::vector<int64_t> prev{kBos};
  prev.insert(prev.end(), tokens.begin(), tokens.end());
  auto enc = model->encode(src.narrow(0, b, 1));
  auto logits = model->decode(torch::tensor(prev).view({1, -1}), enc);
  logits.select(2, kEos).add_(kEosBias);
  auto logp = torch::log_softmax(logits, -1)[0];
  double s = 0;
  for (size_t t = 0; t < prev.size(); ++t)
    s += logp[t][t + 1 < prev.size() ? prev[t + 1] : kEos].item<double>();
  return s;
}

void check_same(const std::vector<Hypothesis>& a, const std::vector<Hypothesis>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t r = 0; r < a.size(); ++r) {
    CAPTURE(r);
    CHECK(a[r].tokens == b[r].tokens);
    CHECK(a[r].score == Approx(b[r].score).margin(1e-4));
  }
}

}  // namespace

TEST_CASE("GNMT length penalty", "[decode]") {
  // ((5 + |Y|) / 6)^alpha
  CHECK(decode::gnmt_length_penalty(1, 0.6) == Approx(1.0));
  CHECK(decode::gnmt_length_penalty(7, 1.0) == Approx(2.0));
  CHECK(decode::gnmt_length_penalty(7, 0.5) == Approx(std::sqrt(2.0)));
  CHECK(decode::gnmt_length_penalty(13, 2.0) == Approx(9.0));
  CHECK(decode::gnmt_length_penalty(10, 0.0) == Approx(1.0));
  CHECK(decode::gnmt_length_penalty(4, 0.6) == Approx(std::pow(1.5, 0.6)));
}

TEST_CASE("greedy on a toy decoder picks the argmax and respects max_len", "[decode]") {
  const int64_t B = 5;
  auto o = options({1, 2, 4, 6, 9});
  ToyDecoder dec(B, random_logits);
  auto hyps = decode::greedy(dec, B, o);
  REQUIRE(hyps.size() == B);
  for (int64_t b = 0; b < B; ++b) {
    CAPTURE(b);
    const auto& h = hyps[b];
    // At most max_len tokens, EOS included: the last slot is EOS.
    CHECK(static_cast<int64_t>(h.tokens.size()) <= o.max_len[b] - 1);
    CHECK(h.score == Approx(toy_score(random_logits, b, h.tokens)).margin(1e-4));
    CHECK(h.normalized == h.score);
    // Every token was the argmax of its step (EOS unless the row was cut at max_len).
    std::vector<int64_t> prefix{kBos};
    for (size_t t = 0; t <= h.tokens.size(); ++t) {
      auto lp = random_logits(b, prefix);
      const int64_t argmax = std::max_element(lp.begin(), lp.end()) - lp.begin();
      if (t < h.tokens.size()) {
        CHECK(h.tokens[t] == argmax);
        prefix.push_back(h.tokens[t]);
      } else if (static_cast<int64_t>(h.tokens.size()) < o.max_len[b] - 1) {
        CHECK(argmax == kEos);  // stopped early: EOS was the argmax
      }
    }
  }
  // max_len 1: nothing but the forced EOS.
  CHECK(hyps[0].tokens.empty());
}

TEST_CASE("no search generates a banned token, and scores stay the model's", "[decode]") {
  // Token 0 is the most likely continuation of every prefix (and EOS unlikely for two steps);
  // banned (as padding is), greedy, beam search and sampling take other tokens, scored with the
  // model's own log-probabilities.
  auto pad_first = [](int64_t row, const std::vector<int64_t>& prefix) {
    auto logits = random_logits(row, prefix);
    logits[0] = 10;
    if (prefix.size() < 3) logits[kEos] = -10;
    return logits;
  };
  const int64_t B = 3;
  auto o = options({5, 6, 7}, 3);
  o.banned = {0, kBos};
  auto check = [&](const std::vector<decode::Hypothesis>& hyps) {
    for (int64_t b = 0; b < B; ++b) {
      CAPTURE(b);
      CHECK(hyps[b].tokens.size() >= 2);
      for (auto t : hyps[b].tokens) CHECK((t != 0 && t != kBos));
      CHECK(hyps[b].score == Approx(toy_score(pad_first, b, hyps[b].tokens)).margin(1e-4));
    }
  };
  ToyDecoder g(B, pad_first), beam(B, pad_first), sampled(B, pad_first);
  check(decode::greedy(g, B, o));
  check(decode::beam_search(beam, B, o));
  check(decode::sample(sampled, B, o));
  // Without the ban, greedy takes token 0.
  ToyDecoder free(B, pad_first);
  o.banned.clear();
  CHECK(decode::greedy(free, B, o)[0].tokens[0] == 0);
}

TEST_CASE("beam search with beam 1 equals greedy", "[decode]") {
  SECTION("toy decoder") {
    const int64_t B = 6;
    auto o = options({3, 5, 8, 8, 2, 10}, /*beam=*/1);
    ToyDecoder g(B, random_logits), s(B, random_logits);
    check_same(decode::beam_search(s, B, o), decode::greedy(g, B, o));
  }
  SECTION("random Transformer, batch of 4 with padded sources") {
    auto model = random_transformer();
    torch::NoGradGuard no_grad;
    auto src = random_source();
    auto o = options({6, 9, 4, 12}, /*beam=*/1);
    TransformerStepper g(model, model->encode(src)), s(model, model->encode(src));
    auto greedy = decode::greedy(g, 4, o);
    auto beam = decode::beam_search(s, 4, o);
    check_same(beam, greedy);
    // The scores are the model's: rescore each output with a full decoder pass.
    for (int64_t b = 0; b < 4; ++b) {
      CAPTURE(b);
      CHECK(greedy[b].score == Approx(transformer_score(model, src, b, greedy[b].tokens)).margin(1e-4));
      CHECK(static_cast<int64_t>(greedy[b].tokens.size()) <= o.max_len[b] - 1);
    }
  }
}

TEST_CASE("beam search finds a sequence that greedy misses", "[decode]") {
  // After BOS: x 0.5, y 0.4. After "x": EOS 0.4 (x, y 0.25 each). After "y": EOS 0.9.
  // Greedy: x EOS, p = 0.5 * 0.4 = 0.2. Beam 2 also keeps y: y EOS, p = 0.4 * 0.9 = 0.36.
  auto fn = table_fn({{{kBos}, {0.5, 0.4, 0.02, 0.04, 0.04}},
                      {{kBos, 0}, {0.25, 0.25, 0.02, 0.4, 0.08}},
                      {{kBos, 1}, {0.02, 0.02, 0.02, 0.9, 0.04}}});
  auto o = options({10}, /*beam=*/2, /*lenpen=*/1.0);
  ToyDecoder g(1, fn), s(1, fn);
  auto greedy = decode::greedy(g, 1, o);
  auto beam = decode::beam_search(s, 1, o);
  CHECK(greedy[0].tokens == std::vector<int64_t>{0});
  CHECK(greedy[0].score == Approx(std::log(0.2)).margin(1e-5));
  CHECK(beam[0].tokens == std::vector<int64_t>{1});
  CHECK(beam[0].score == Approx(std::log(0.4) + std::log(0.9)).margin(1e-5));
  // normalized = score / ((5 + |Y|) / 6)^alpha with |Y| = 2 (y and EOS).
  CHECK(beam[0].normalized == Approx(beam[0].score / decode::gnmt_length_penalty(2, 1.0)).margin(1e-6));
}

TEST_CASE("the length penalty decides between a short and a long hypothesis", "[decode]") {
  // After BOS: EOS 0.44, x 0.55. After "x": EOS 0.78.
  // Short "EOS": log 0.44 = -0.821. Long "x EOS": log 0.429 = -0.846.
  // alpha = 0: the short one wins. alpha = 1: -0.821 / 1 < -0.846 / (7/6) = -0.725: long wins.
  auto fn = table_fn({{{kBos}, {0.55, 0.005, 0.001, 0.44, 0.004}},
                      {{kBos, 0}, {0.1, 0.05, 0.01, 0.78, 0.06}}});
  ToyDecoder a(1, fn), b(1, fn);
  auto short_wins = decode::beam_search(a, 1, options({10}, 2, /*lenpen=*/0.0));
  auto long_wins = decode::beam_search(b, 1, options({10}, 2, /*lenpen=*/1.0));
  CHECK(short_wins[0].tokens.empty());
  CHECK(short_wins[0].score == Approx(std::log(0.44)).margin(1e-5));
  CHECK(long_wins[0].tokens == std::vector<int64_t>{0});
  CHECK(long_wins[0].score == Approx(std::log(0.55 * 0.78)).margin(1e-5));
  CHECK(long_wins[0].normalized == Approx(std::log(0.55 * 0.78) / (7.0 / 6.0)).margin(1e-5));
}

TEST_CASE("a beam wider than the search space is exhaustive search", "[decode]") {
  // 6 tokens, max_len 4: at most 3 tokens + EOS, 1 + 5 + 25 + 125 = 156 hypotheses per row.
  // With a beam of 200 nothing is pruned, so the result must be the best of all of them by
  // normalized score. Four rows with different distributions also check the row bookkeeping
  // and the reordering of the decoder state.
  const int64_t B = 4;
  std::vector<std::vector<int64_t>> all{{}};
  for (int64_t x = 0; x < kToyVocab; ++x) {
    if (x == kEos) continue;
    all.push_back({x});
    for (int64_t y = 0; y < kToyVocab; ++y) {
      if (y == kEos) continue;
      all.push_back({x, y});
      for (int64_t z = 0; z < kToyVocab; ++z)
        if (z != kEos) all.push_back({x, y, z});
    }
  }
  REQUIRE(all.size() == 156);
  std::vector<int> best_lengths(4, 0);

  for (double alpha : {0.0, 0.6, 2.0}) {
    using LogitsFn = std::vector<double> (*)(int64_t, const std::vector<int64_t>&);
    for (LogitsFn fn : {&random_logits, &late_eos_logits}) {
      CAPTURE(alpha, fn == &random_logits ? "random_logits" : "late_eos_logits");
      auto o = options({4, 4, 4, 4}, /*beam=*/200, alpha);
      ToyDecoder dec(B, fn);
      auto beam = decode::beam_search(dec, B, o);
      for (int64_t b = 0; b < B; ++b) {
        CAPTURE(b);
        std::vector<int64_t> best;
        double best_norm = -1e300;
        for (const auto& seq : all) {
          const double norm = toy_score(fn, b, seq) /
                              decode::gnmt_length_penalty(static_cast<int64_t>(seq.size()) + 1, alpha);
          if (norm > best_norm) best_norm = norm, best = seq;
        }
        CHECK(beam[b].tokens == best);
        CHECK(beam[b].normalized == Approx(best_norm).margin(1e-4));
        CHECK(beam[b].score == Approx(toy_score(fn, b, beam[b].tokens)).margin(1e-4));
        ++best_lengths[best.size()];
      }
    }
  }
  // The cases cover both hypotheses that chose EOS early and full-length ones that max_len
  // cut (found only if the decoder state was reordered right at every step).
  CAPTURE(best_lengths);
  CHECK(best_lengths[3] >= 4);
  CHECK(best_lengths[0] + best_lengths[1] + best_lengths[2] >= 4);

  // The n-best lists of the same exhaustive search are the n best of all hypotheses, in order.
  const double alpha = 0.6;
  auto o = options({4, 4, 4, 4}, /*beam=*/200, alpha);
  ToyDecoder dec(B, &random_logits);
  const auto lists = decode::beam_search_nbest(dec, B, o, 5);
  for (int64_t b = 0; b < B; ++b) {
    CAPTURE(b);
    std::vector<std::pair<double, std::vector<int64_t>>> ranked;
    for (const auto& seq : all)
      ranked.emplace_back(toy_score(&random_logits, b, seq) /
                              decode::gnmt_length_penalty(static_cast<int64_t>(seq.size()) + 1, alpha),
                          seq);
    std::sort(ranked.begin(), ranked.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
    REQUIRE(lists[b].size() == 5);
    for (size_t j = 0; j < 5; ++j) {
      CHECK(lists[b][j].tokens == ranked[j].second);
      CHECK(lists[b][j].normalized == Approx(ranked[j].first).margin(1e-4));
    }
  }
}

TEST_CASE("beam search on a random Transformer respects max_len and scores its outputs", "[decode]") {
  auto model = random_transformer();
  torch::NoGradGuard no_grad;
  auto src = random_source();
  auto o = options({5, 8, 3, 10}, /*beam=*/4, /*lenpen=*/0.6);
  TransformerStepper s(model, model->encode(src));
  auto hyps = decode::beam_search(s, 4, o);
  REQUIRE(hyps.size() == 4);
  for (int64_t b = 0; b < 4; ++b) {
    CAPTURE(b);
    const auto& h = hyps[b];
    CHECK(static_cast<int64_t>(h.tokens.size()) <= o.max_len[b] - 1);
    CHECK(h.score == Approx(transformer_score(model, src, b, h.tokens)).margin(1e-4));
    CHECK(h.normalized ==
          Approx(h.score / decode::gnmt_length_penalty(h.tokens.size() + 1, 0.6)).margin(1e-5));
    CHECK(!h.tokens.empty());  // the EOS bias makes every row generate something
  }
  // Row 2 (max_len 3) is cut: EOS forced after two tokens.
  CHECK(hyps[2].tokens.size() == 2);
}

TEST_CASE("a Transformer decodes as many outputs as it has positions", "[decode]") {
  // max_len = model.max_positions (the translation task's cap): the last step reads the last
  // position, and with EOS banned every row runs to it. Learned positions: one past the table
  // would fail.
  auto o = xformer::testing::small_transformer_options();
  o.max_positions = 6;
  o.learned_positions = true;
  torch::manual_seed(3);
  models::Transformer model(o);
  model->eval();
  torch::NoGradGuard no_grad;
  auto src = random_source();
  for (int beam : {1, 3}) {
    CAPTURE(beam);
    auto search = options({6, 6, 6, 6}, beam);
    search.banned = {kEos};
    TransformerStepper s(model, model->encode(src));
    auto hyps = beam == 1 ? decode::greedy(s, 4, search) : decode::beam_search(s, 4, search);
    for (const auto& h : hyps) CHECK(h.tokens.size() == 5);  // 5 tokens, then the forced EOS
    // One output more would read past the positions.
    auto longer = options({7, 7, 7, 7}, beam);
    TransformerStepper t(model, model->encode(src));
    CHECK_THROWS_WITH(beam == 1 ? decode::greedy(t, 4, longer) : decode::beam_search(t, 4, longer),
                      Catch::Contains("exceeds max_positions 6"));
  }
}

TEST_CASE("max_len forces EOS into the last slot", "[decode]") {
  // A decoder that never wants to stop: EOS has probability 1e-6 everywhere.
  auto never_stop = [](int64_t, const std::vector<int64_t>&) {
    return std::vector<double>{std::log(0.7), std::log(0.3 - 1e-6), -100.0, std::log(1e-6), -100.0};
  };
  auto o = options({1, 4, 7});
  for (int beam : {1, 3}) {
    CAPTURE(beam);
    o.beam = beam;
    ToyDecoder g(3, never_stop), s(3, never_stop);
    auto hyps = beam == 1 ? decode::greedy(g, 3, o) : decode::beam_search(s, 3, o);
    for (int64_t b = 0; b < 3; ++b) {
      CAPTURE(b);
      // max_len counts EOS: max_len - 1 real tokens, then the forced EOS.
      CHECK(static_cast<int64_t>(hyps[b].tokens.size()) == o.max_len[b] - 1);
      const double expected = toy_score(never_stop, b, hyps[b].tokens);
      CHECK(hyps[b].score == Approx(expected).margin(1e-4));
    }
    if (beam == 1) CHECK(hyps[2].tokens == std::vector<int64_t>(6, 0));
  }
}

TEST_CASE("top_k_filter keeps exactly the k largest logits", "[decode]") {
  const float inf = std::numeric_limits<float>::infinity();
  auto logits = torch::tensor({1.0f, 4.0f, -2.0f, 3.0f, 0.5f, 2.0f, 2.0f, 2.0f, -1.0f, 5.0f}).view({2, 5});
  auto kept = [&](const torch::Tensor& filtered) { return filtered.isfinite(); };

  auto k2 = decode::top_k_filter(logits, 2);
  // Row 0 (1, 4, -2, 3, 0.5): the two largest are 4 and 3.
  CHECK(kept(k2)[0].equal(torch::tensor({0, 1, 0, 1, 0}, torch::kBool)));
  // Row 1 (2, 2, 2, -1, 5): 5 and then a three-way tie at 2. Ties with the k-th value are all
  // kept (no arbitrary choice among equal logits).
  CHECK(kept(k2)[1].equal(torch::tensor({1, 1, 1, 0, 1}, torch::kBool)));
  // Kept logits are unchanged, the others are -inf.
  CHECK(k2[0][1].item<float>() == 4.0f);
  CHECK(k2[0][0].item<float>() == -inf);

  auto k1 = decode::top_k_filter(logits, 1);
  CHECK(kept(k1).equal(torch::tensor({0, 1, 0, 0, 0, 0, 0, 0, 0, 1}, torch::kBool).view({2, 5})));
  // k <= 0 or k >= V: everything stays.
  CHECK(decode::top_k_filter(logits, 0).equal(logits));
  CHECK(decode::top_k_filter(logits, 5).equal(logits));
  CHECK(decode::top_k_filter(logits, 9).equal(logits));
}

TEST_CASE("top_p_filter keeps the smallest set reaching p", "[decode]") {
  // Probabilities (0.5, 0.3, 0.15, 0.05) in a shuffled order, as logits.
  auto probs = torch::tensor({0.15, 0.5, 0.05, 0.3});
  auto logits = probs.log().to(torch::kFloat).view({1, 4});
  auto kept = [&](double p) { return decode::top_p_filter(logits, p).isfinite()[0]; };
  auto mask = [](std::vector<int> m) { return torch::tensor(m, torch::kBool); };

  CHECK(kept(0.3).equal(mask({0, 1, 0, 0})));    // 0.5 alone reaches 0.3
  CHECK(kept(0.5 - 1e-4).equal(mask({0, 1, 0, 0})));
  CHECK(kept(0.5 + 1e-4).equal(mask({0, 1, 0, 1})));  // needs 0.5 + 0.3
  CHECK(kept(0.8 - 1e-4).equal(mask({0, 1, 0, 1})));
  CHECK(kept(0.8 + 1e-4).equal(mask({1, 1, 0, 1})));  // needs + 0.15
  CHECK(kept(0.99).equal(mask({1, 1, 1, 1})));
  CHECK(kept(1e-9).equal(mask({0, 1, 0, 0})));  // at least one token stays
  CHECK(decode::top_p_filter(logits, 1.0).equal(logits));  // p = 1: off

  // The exact boundary, on a uniform row (probabilities exactly 0.25 in float): mass 0.5 is
  // reached by 2 tokens, so p = 0.5 keeps 2 and anything above keeps 3.
  auto uniform = torch::zeros({1, 4});
  CHECK(decode::top_p_filter(uniform, 0.5).isfinite().sum().item<int64_t>() == 2);
  CHECK(decode::top_p_filter(uniform, 0.25).isfinite().sum().item<int64_t>() == 1);
  CHECK(decode::top_p_filter(uniform, 0.5001).isfinite().sum().item<int64_t>() == 3);
  CHECK(decode::top_p_filter(uniform, 0.75).isfinite().sum().item<int64_t>() == 3);

  // Rows are independent; a row already filtered by top-k (with -inf) still works.
  auto two = torch::cat({logits, torch::tensor({{0.0f, -std::numeric_limits<float>::infinity(),
                                                 0.0f, 0.0f}})});
  auto f = decode::top_p_filter(two, 0.6);
  CHECK(f.isfinite()[0].equal(mask({0, 1, 0, 1})));
  CHECK(f.isfinite()[1].sum().item<int64_t>() == 2);  // 1/3 + 1/3 reaches 0.6
  CHECK(!f.isfinite()[1][1].item<bool>());
}

TEST_CASE("a tiny temperature sharpens towards the greedy choice instead of overflowing", "[decode]") {
  const float inf = std::numeric_limits<float>::infinity();
  auto logits = torch::tensor({{10.0f, 9.5f, -3.0f}, {-2.0f, -inf, -1.0f}});
  // Divided as they are, 10 / 1e-40 overflows: softmax of inf is NaN.
  CHECK(!(logits / 1e-40).softmax(-1).isfinite().all().item<bool>());
  for (double tiny : {1e-40, 1e-50, 1e-320}) {  // the last two are 0 in float
    auto p = decode::tempered(logits, tiny).softmax(-1);
    CHECK(p.equal(torch::tensor({{1.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 1.0f}})));
  }
  // A huge one (inf in float): uniform over the tokens that are not masked.
  for (double huge : {1e39, 1e308}) {
    auto p = decode::tempered(logits, huge).softmax(-1);
    CHECK(torch::allclose(p, torch::tensor({{1 / 3.0f, 1 / 3.0f, 1 / 3.0f}, {0.5f, 0.0f, 0.5f}})));
  }
  // Other temperatures give the plain distribution; a masked token stays masked.
  for (double t : {0.3, 1.0, 7.0})
    CHECK(torch::allclose(decode::tempered(logits, t).softmax(-1), (logits / t).softmax(-1), 1e-6, 1e-7));
  CHECK(decode::tempered(logits, 0.5)[1][1].item<float>() == -inf);
}

TEST_CASE("sampling is deterministic for a seed and reduces to greedy", "[decode]") {
  const int64_t B = 8;
  auto o = options({8, 8, 8, 8, 6, 6, 6, 6});
  auto run_sample = [&](const SearchOptions& opts) {
    ToyDecoder d(B, random_logits);
    return decode::sample(d, B, opts);
  };
  ToyDecoder g(B, random_logits);
  auto greedy = decode::greedy(g, B, o);

  o.seed = 42;
  auto a = run_sample(o), b = run_sample(o);
  check_same(a, b);
  // Another seed gives another set of samples (64 draws from 6 tokens: a collision of all of
  // them is practically impossible, and the outcome is fixed by the seeds anyway).
  o.seed = 43;
  auto c = run_sample(o);
  bool any_differs = false;
  for (int64_t r = 0; r < B; ++r) any_differs = any_differs || a[r].tokens != c[r].tokens;
  CHECK(any_differs);
  // Sampled scores are the model's log-probabilities of the sampled tokens.
  for (int64_t r = 0; r < B; ++r)
    CHECK(a[r].score == Approx(toy_score(random_logits, r, a[r].tokens)).margin(1e-4));

  SECTION("top_k = 1 is greedy") {
    auto k1 = o;
    k1.top_k = 1;
    check_same(run_sample(k1), greedy);
  }
  SECTION("a tiny top_p is greedy") {
    auto p = o;
    p.top_p = 1e-9;
    check_same(run_sample(p), greedy);
  }
  SECTION("temperature -> 0 is greedy") {
    auto t = o;
    t.temperature = 1e-5;
    check_same(run_sample(t), greedy);
  }
}

TEST_CASE("sampling follows the filtered, tempered distribution", "[decode]") {
  // One free step: x 0.5, y 0.3, z 0.12, EOS 0.08, then max_len forces EOS. 4000 rows give
  // frequencies within 0.04 (about five standard deviations) of the target distribution.
  auto fn = table_fn({{{kBos}, {0.5, 0.3, 1e-9, 0.08, 0.12}}});
  const int64_t N = 4000;
  auto o = options(std::vector<int64_t>(N, 2));
  auto frequencies = [&](const SearchOptions& opts) {
    ToyDecoder d(N, fn);
    auto hyps = decode::sample(d, N, opts);
    std::vector<double> f(5, 0.0);
    for (const auto& h : hyps) f[h.tokens.empty() ? kEos : h.tokens[0]] += 1.0 / N;
    return f;
  };
  SECTION("plain") {
    auto f = frequencies(o);
    CHECK(f[0] == Approx(0.5).margin(0.04));
    CHECK(f[1] == Approx(0.3).margin(0.04));
    CHECK(f[4] == Approx(0.12).margin(0.04));
    CHECK(f[kEos] == Approx(0.08).margin(0.04));
  }
  SECTION("top_k = 2 renormalizes over x and y") {
    o.top_k = 2;
    auto f = frequencies(o);
    CHECK(f[0] == Approx(0.5 / 0.8).margin(0.04));
    CHECK(f[1] == Approx(0.3 / 0.8).margin(0.04));
    CHECK(f[4] == 0.0);
    CHECK(f[kEos] == 0.0);
  }
  SECTION("top_p = 0.75 keeps x and y") {
    o.top_p = 0.75;
    auto f = frequencies(o);
    CHECK(f[0] == Approx(0.5 / 0.8).margin(0.04));
    CHECK(f[4] + f[kEos] == 0.0);
  }
  SECTION("temperature 0.5 squares the probabilities") {
    o.temperature = 0.5;
    const double z = 0.25 + 0.09 + 0.0144 + 0.0064;
    auto f = frequencies(o);
    CHECK(f[0] == Approx(0.25 / z).margin(0.04));
    CHECK(f[1] == Approx(0.09 / z).margin(0.04));
  }
  SECTION("top_p applies to the tempered distribution") {
    // At temperature 0.5, x has 0.25 / 0.3608 = 0.69 >= 0.6 on its own; without the
    // temperature (0.5 < 0.6) y would stay too.
    o.temperature = 0.5;
    o.top_p = 0.6;
    CHECK(frequencies(o)[0] == Approx(1.0));
  }
}

TEST_CASE("log_mean_softmax is the log of the averaged distributions", "[decode][ensemble]") {
  torch::manual_seed(3);
  auto a = torch::randn({4, 7}), b = torch::randn({4, 7}) * 3, c = torch::randn({4, 7});
  CHECK(xformer::testing::max_abs_diff(decode::log_mean_softmax({a}), torch::log_softmax(a, -1)) < 1e-6);
  auto naive = torch::log((torch::softmax(a, -1) + torch::softmax(b, -1) + torch::softmax(c, -1)) / 3);
  CHECK(xformer::testing::max_abs_diff(decode::log_mean_softmax({a, b, c}), naive) < 1e-6);
  // Logits far apart (a softmax that underflows in float) stay finite in log space.
  auto far = decode::log_mean_softmax({a * 1000, b * 1000});
  CHECK(torch::isfinite(far).all().item<bool>());
  CHECK(xformer::testing::max_abs_diff(far.exp().sum(-1), torch::ones({4})) < 1e-5);
}

TEST_CASE("an ensemble decodes from the averaged distribution and reorders every member", "[decode][ensemble]") {
  SECTION("two copies of one decoder search as the decoder alone") {
    // The toy distributions depend on the whole prefix: a member left unreordered by beam
    // search would score other prefixes.
    const int64_t B = 5;
    auto o = options({4, 7, 9, 3, 8}, /*beam=*/3, /*lenpen=*/0.6);
    ToyDecoder alone(B, late_eos_logits);
    std::vector<std::unique_ptr<decode::IncrementalDecoder>> members;
    members.push_back(std::make_unique<ToyDecoder>(B, late_eos_logits));
    members.push_back(std::make_unique<ToyDecoder>(B, late_eos_logits));
    decode::EnsembleDecoder ensemble(std::move(members));
    const auto expected = decode::beam_search(alone, B, o);
    const auto got = decode::beam_search(ensemble, B, o);
    REQUIRE(got.size() == expected.size());
    for (int64_t b = 0; b < B; ++b) {
      CAPTURE(b);
      CHECK(got[b].tokens == expected[b].tokens);
      CHECK(got[b].score == Approx(expected[b].score).margin(1e-5));
    }
  }
  SECTION("two different decoders: the argmax of the mean, not of either") {
    // After BOS, A: x 0.55, y 0.05, z 0.38; B: x 0.05, y 0.55, z 0.38. A alone takes x, B alone
    // y; their mean (x 0.30, y 0.30, z 0.38) takes z, then EOS (0.96 under both): log 0.38 + log 0.96.
    auto a = table_fn({{{kBos}, {0.55, 0.05, 0.01, 0.01, 0.38}}});
    auto b = table_fn({{{kBos}, {0.05, 0.55, 0.01, 0.01, 0.38}}});
    std::vector<std::unique_ptr<decode::IncrementalDecoder>> members;
    members.push_back(std::make_unique<ToyDecoder>(1, a));
    members.push_back(std::make_unique<ToyDecoder>(1, b));
    decode::EnsembleDecoder ensemble(std::move(members));
    const auto hyps = decode::greedy(ensemble, 1, options({5}));
    CHECK(hyps[0].tokens == std::vector<int64_t>{4});
    CHECK(hyps[0].score == Approx(std::log(0.38) + std::log(0.96)).margin(1e-5));
  }
}
