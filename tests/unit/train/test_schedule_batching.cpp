// Tests of the learning-rate schedules, token-bucketed batching and the parallel-corpus reader.
#include "test_support.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "xformer/core/config.h"
#include "xformer/core/error.h"
#include "xformer/core/registry.h"
#include "xformer/data/batching.h"
#include "xformer/data/parallel_corpus.h"
#include "xformer/train/config_checks.h"
#include "xformer/train/schedule.h"

namespace {

using xformer::json;
using xformer::testing::TempDir;
namespace data = xformer::data;

// A resolved config with the given optim/train overrides.
json config_with(const std::vector<std::string>& overrides) {
  xformer::RawConfig raw;
  for (const auto& o : overrides) xformer::apply_override(raw, o);
  return xformer::resolve(raw);
}

std::vector<data::LengthPair> random_lengths(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<data::LengthPair> out;
  for (int64_t i = 0; i < n; ++i)
    out.push_back({static_cast<int64_t>(rng() % 30) + 1, static_cast<int64_t>(rng() % 30) + 1});
  return out;
}

int64_t longest(const std::vector<data::LengthPair>& lengths, const std::vector<int64_t>& batch) {
  int64_t m = 0;
  for (auto i : batch) m = std::max({m, lengths[i].source, lengths[i].target});
  return m;
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string error_message(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const xformer::Error& e) {
    return e.what();
  }
  FAIL("expected an xformer::Error");
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("inverse_sqrt: linear warmup, then lr * sqrt(warmup / step)", "[train][schedule]") {
  auto c = config_with({"optim.schedule=inverse_sqrt", "optim.lr=1e-3", "optim.warmup_steps=100",
                        "optim.warmup_init_lr=1e-7"});
  using xformer::train::learning_rate;
  // Warmup: init + (lr - init) * step / warmup.
  CHECK(learning_rate(c, 0) == Approx(1e-7));
  CHECK(learning_rate(c, 50) == Approx(1e-7 + (1e-3 - 1e-7) * 0.5));
  CHECK(learning_rate(c, 99) == Approx(1e-7 + (1e-3 - 1e-7) * 0.99));
  // Peak at the end of warmup, then the inverse square root.
  CHECK(learning_rate(c, 100) == Approx(1e-3));
  CHECK(learning_rate(c, 400) == Approx(0.5e-3));
  CHECK(learning_rate(c, 10000) == Approx(1e-4));
  // Monotonic: up during warmup, down after.
  CHECK(learning_rate(c, 10) < learning_rate(c, 20));
  CHECK(learning_rate(c, 200) > learning_rate(c, 300));

  // No warmup: lr * sqrt(1 / step).
  auto nw = config_with({"optim.schedule=inverse_sqrt", "optim.lr=1e-3", "optim.warmup_steps=0"});
  CHECK(learning_rate(nw, 1) == Approx(1e-3));
  CHECK(learning_rate(nw, 4) == Approx(0.5e-3));
}

TEST_CASE("cosine: from lr at the end of warmup to min_lr at max_steps", "[train][schedule]") {
  using xformer::train::learning_rate;
  auto c = config_with({"optim.schedule=cosine", "optim.lr=1e-3", "optim.min_lr=1e-5",
                        "optim.warmup_steps=100", "train.max_steps=1100"});
  CHECK(learning_rate(c, 50) == Approx(0.5e-3));  // warmup from 0
  CHECK(learning_rate(c, 100) == Approx(1e-3));
  // Midpoint (step 600, progress 1/2): cos(pi/2) = 0, halfway between lr and min_lr.
  CHECK(learning_rate(c, 600) == Approx(1e-5 + 0.5 * (1e-3 - 1e-5)));
  // A quarter in: min + (lr - min) * (1 + cos(pi/4)) / 2.
  CHECK(learning_rate(c, 350) == Approx(1e-5 + (1e-3 - 1e-5) * (1 + std::sqrt(0.5)) / 2));
  CHECK(learning_rate(c, 1100) == Approx(1e-5));
  CHECK(learning_rate(c, 5000) == Approx(1e-5));  // stays at min_lr past max_steps

  // Cosine needs a horizon beyond the warmup.
  auto bad = config_with({"optim.schedule=cosine", "optim.warmup_steps=100", "train.max_steps=100"});
  CHECK_THROWS_AS(learning_rate(bad, 200), xformer::Error);
}

TEST_CASE("linear: a straight line from lr at the end of warmup to min_lr at max_steps", "[train][schedule]") {
  using xformer::train::learning_rate;
  auto c = config_with({"optim.schedule=linear", "optim.lr=1e-3", "optim.min_lr=1e-4",
                        "optim.warmup_steps=100", "train.max_steps=1100"});
  CHECK(learning_rate(c, 50) == Approx(0.5e-3));  // warmup from 0
  CHECK(learning_rate(c, 100) == Approx(1e-3));
  CHECK(learning_rate(c, 350) == Approx(1e-3 - 0.25 * (1e-3 - 1e-4)));  // a quarter of the way
  CHECK(learning_rate(c, 600) == Approx(0.55e-3));
  CHECK(learning_rate(c, 1100) == Approx(1e-4));
  CHECK(learning_rate(c, 3000) == Approx(1e-4));  // stays at min_lr past max_steps

  // Both decaying schedules need a horizon beyond the warmup, checked before training.
  using xformer::train::check_schedule;
  for (const char* kind : {"linear", "cosine"}) {
    auto bad = config_with({std::string("optim.schedule=") + kind, "optim.warmup_steps=100", "train.max_steps=0",
                            "train.max_epochs=3"});
    CHECK(contains(error_message([&] { check_schedule(bad); }), "needs train.max_steps (0) > optim.warmup_steps (100)"));
  }
  CHECK_NOTHROW(check_schedule(config_with({"optim.schedule=inverse_sqrt", "train.max_steps=0", "train.max_epochs=3"})));
  // The warmup climbs to lr and the decay comes down from it.
  CHECK(contains(error_message([&] { check_schedule(config_with({"optim.lr=0.005", "optim.warmup_init_lr=5"})); }),
                 "optim.warmup_init_lr (5.0) is above optim.lr (0.005)"));
  CHECK_NOTHROW(check_schedule(config_with({"optim.lr=0.005", "optim.warmup_init_lr=5", "optim.warmup_steps=0"})));
  CHECK(contains(error_message([&] {
                   check_schedule(config_with({"optim.schedule=cosine", "optim.lr=0.005", "optim.min_lr=1",
                                               "optim.warmup_steps=10", "train.max_steps=100"}));
                 }),
                 "optim.min_lr (1.0) is above optim.lr (0.005)"));
  CHECK_NOTHROW(check_schedule(config_with({"optim.schedule=inverse_sqrt", "optim.lr=0.005", "optim.min_lr=1"})));
}

TEST_CASE("a training config needs a step or epoch limit", "[train][schedule]") {
  const auto e = xformer::testing::thrown_error(
      [] { xformer::train::check_training_config(config_with({"train.max_steps=0", "train.max_epochs=0"})); });
  CHECK(e.exit_code() == 2);
  CHECK(contains(e.what(), "set train.max_steps or train.max_epochs (both are 0)"));
  CHECK_NOTHROW(xformer::train::check_training_config(config_with({"train.max_steps=0", "train.max_epochs=1"})));
}

TEST_CASE("constant: lr after warmup", "[train][schedule]") {
  using xformer::train::learning_rate;
  auto c = config_with({"optim.schedule=constant", "optim.lr=2e-4", "optim.warmup_steps=10"});
  CHECK(learning_rate(c, 5) == Approx(1e-4));
  CHECK(learning_rate(c, 10) == Approx(2e-4));
  CHECK(learning_rate(c, 123456) == Approx(2e-4));
}

TEST_CASE("make_batches covers every example once within max_tokens", "[data][batching]") {
  const auto lengths = random_lengths(300, 9);
  const int64_t max_tokens = 100;
  for (bool shuffle : {true, false}) {
    CAPTURE(shuffle);
    auto batches = data::make_batches(lengths, max_tokens, 0, shuffle, 1, 1);
    std::vector<int> seen(lengths.size(), 0);
    for (const auto& b : batches) {
      REQUIRE(!b.empty());
      for (auto i : b) {
        REQUIRE(i >= 0);
        REQUIRE(i < static_cast<int64_t>(lengths.size()));
        ++seen[i];
      }
      // n x (longest source or target) within the budget.
      CHECK(static_cast<int64_t>(b.size()) * longest(lengths, b) <= max_tokens);
    }
    CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
  }

  // An example longer than max_tokens still gets a batch, alone.
  std::vector<data::LengthPair> with_long = {{5, 5}, {50, 10}, {5, 6}, {4, 4}};
  auto batches = data::make_batches(with_long, 20, 0, false, 1, 1);
  int64_t total = 0;
  for (const auto& b : batches) {
    total += b.size();
    if (std::find(b.begin(), b.end(), 1) != b.end()) CHECK(b.size() == 1);
    else CHECK(static_cast<int64_t>(b.size()) * longest(with_long, b) <= 20);
  }
  CHECK(total == 4);

  // max_sentences caps the batch size.
  for (const auto& b : data::make_batches(lengths, 100000, 7, true, 1, 1)) CHECK(b.size() <= 7);
}

TEST_CASE("make_batches is a function of (seed, epoch)", "[data][batching]") {
  const auto lengths = random_lengths(300, 10);
  auto a = data::make_batches(lengths, 120, 0, true, 3, 1);
  CHECK(a == data::make_batches(lengths, 120, 0, true, 3, 1));  // same (seed, epoch)
  CHECK(a != data::make_batches(lengths, 120, 0, true, 3, 2));  // another epoch
  CHECK(a != data::make_batches(lengths, 120, 0, true, 4, 1));  // another seed
  // Shuffling reorders the batches themselves: sorted by target length they would have
  // non-decreasing longest targets.
  std::vector<int64_t> longest_target;
  for (const auto& b : a) {
    int64_t m = 0;
    for (auto i : b) m = std::max(m, lengths[i].target);
    longest_target.push_back(m);
  }
  CHECK(!std::is_sorted(longest_target.begin(), longest_target.end()));
  // ... and breaks ties among equal lengths at random: another epoch groups the examples into
  // different batches, not just the same batches in another order.
  auto as_sets = [](std::vector<std::vector<int64_t>> batches) {
    for (auto& b : batches) std::sort(b.begin(), b.end());
    std::sort(batches.begin(), batches.end());
    return batches;
  };
  CHECK(as_sets(a) != as_sets(data::make_batches(lengths, 120, 0, true, 3, 2)));

  // shuffle = false: batches follow the length order (target, then source) and do not depend
  // on the seed or epoch.
  auto plain = data::make_batches(lengths, 120, 0, false, 3, 1);
  CHECK(plain == data::make_batches(lengths, 120, 0, false, 99, 7));
  std::vector<int64_t> flat;
  for (const auto& b : plain) flat.insert(flat.end(), b.begin(), b.end());
  REQUIRE(flat.size() == lengths.size());
  for (size_t i = 1; i < flat.size(); ++i) {
    const auto& p = lengths[flat[i - 1]];
    const auto& q = lengths[flat[i]];
    CAPTURE(i);
    CHECK((p.target < q.target || (p.target == q.target && p.source <= q.source)));
  }
}

TEST_CASE("batch seeds differ across batches, epochs and seeds", "[data][batching]") {
  std::set<uint64_t> seen;
  size_t drawn = 0;
  for (uint64_t seed : {0ULL, 1ULL, 1000003ULL})
    for (int64_t epoch = 0; epoch < 3; ++epoch)
      for (int64_t index = 0; index < 20000; index += epoch == 0 ? 1 : 7)  // past any small stride
        seen.insert(data::batch_seed(seed, epoch, index)), ++drawn;
  CHECK(seen.size() == drawn);
  CHECK(data::batch_seed(5, 2, 9) == data::batch_seed(5, 2, 9));  // a function of its arguments
}

TEST_CASE("read_parallel_corpus reports malformed lines with file:line", "[data][corpus]") {
  const std::string corrupt = xformer::testing::source_path("tests/data/translation/corrupt.tsv");
  try {
    data::read_parallel_corpus(corrupt);
    FAIL("corrupt.tsv was accepted");
  } catch (const xformer::Error& e) {
    CHECK(e.exit_code() == xformer::kExitFailure);
    CHECK(contains(e.what(), "corrupt.tsv:3"));
    CHECK(contains(e.what(), "no TAB"));
  }
  // The intact fixture reads fully.
  auto valid = data::read_parallel_corpus(xformer::testing::source_path("tests/data/translation/valid.tsv"));
  CHECK(valid.size() == 40);
  CHECK(valid.source.size() == valid.target.size());
  CHECK(valid.skipped_empty == 0);

  TempDir dir("corpus_errors");
  write(dir.str("two_tabs.tsv"), "a\tb\nc\td\te\n");
  CHECK(contains(error_message([&] { data::read_parallel_corpus(dir.str("two_tabs.tsv")); }),
                 "two_tabs.tsv:2"));
  // A line of spaces is blank, not a line without a TAB.
  write(dir.str("spaces.tsv"), "a\tb\n   \nc\td\n");
  CHECK(data::read_parallel_corpus(dir.str("spaces.tsv")).size() == 2);
  write(dir.str("bad_utf8.tsv"), "a\tb\n\n\xff\xfe\tx\n");
  const auto m = error_message([&] { data::read_parallel_corpus(dir.str("bad_utf8.tsv")); });
  CHECK(contains(m, "bad_utf8.tsv:3"));  // blank lines still count
  CHECK(contains(m, "UTF-8"));
  CHECK(contains(error_message([&] { data::read_parallel_corpus(dir.str("nope.tsv")); }), "nope.tsv"));
  // A folder given as input (e.g. sample --input) is named, not read as no lines.
  CHECK(contains(error_message([&] { data::read_lines(dir.str()); }), "(it is a folder)"));
  CHECK(contains(error_message([&] { data::for_each_line(dir.str("nope.txt"), [](const std::string&) {}); }),
                 "cannot open input file '" + dir.str("nope.txt") + "'"));
  // Line ends (\r\n too) are removed; a last line without one counts; blank lines stay.
  write(dir.str("lines.txt"), "one\r\n\ntwo");
  std::vector<std::string> seen;
  data::for_each_line(dir.str("lines.txt"), [&](const std::string& l) { seen.push_back(l); });
  CHECK(seen == std::vector<std::string>{"one", "", "two"});
  CHECK(data::read_lines(dir.str("lines.txt")) == seen);
}

TEST_CASE("read_parallel_corpus: two line-aligned files", "[data][corpus]") {
  TempDir dir("corpus_pair");
  write(dir.str("a.en"), "one\ntwo\nthree\n");
  write(dir.str("a.de"), "eins\nzwei\r\ndrei\n");
  auto c = data::read_parallel_corpus(json::array({dir.str("a.en"), dir.str("a.de")}));
  CHECK(c.source == std::vector<std::string>{"one", "two", "three"});
  CHECK(c.target == std::vector<std::string>{"eins", "zwei", "drei"});  // CR stripped
  CHECK(contains(c.description, "a.en"));
  CHECK(contains(c.description, "a.de"));

  write(dir.str("short.de"), "eins\nzwei\n");
  for (const auto& pair : {json::array({dir.str("a.en"), dir.str("short.de")}),
                           json::array({dir.str("short.de"), dir.str("a.en")})}) {
    CAPTURE(pair.dump());
    const auto m = error_message([&] { data::read_parallel_corpus(pair); });
    CHECK(contains(m, "a.en"));
    CHECK(contains(m, "short.de"));
  }
}

TEST_CASE("read_parallel_corpus skips and counts pairs with an empty side", "[data][corpus]") {
  TempDir dir("corpus_empty");
  // Line 2 has an empty source, line 3 a blank target, line 4 is empty (ignored, not a pair),
  // line 5 has CRLF.
  write(dir.str("c.tsv"), "a b\tx y\n\tonly target\nonly source\t  \n\n c \t d \r\n");
  auto c = data::read_parallel_corpus(dir.str("c.tsv"));
  CHECK(c.source == std::vector<std::string>{"a b", "c"});
  CHECK(c.target == std::vector<std::string>{"x y", "d"});
  CHECK(c.skipped_empty == 2);
  CHECK(c.description == dir.str("c.tsv"));

  write(dir.str("e.en"), "a\n\nc\n");
  write(dir.str("e.de"), "x\ny\n \n");
  auto p = data::read_parallel_corpus(json::array({dir.str("e.en"), dir.str("e.de")}));
  CHECK(p.size() == 1);
  CHECK(p.skipped_empty == 2);
}

TEST_CASE("a UTF-8 byte-order mark does not start the first sentence", "[data][corpus]") {
  TempDir dir("corpus_bom");
  write(dir.str("c.tsv"), "\xEF\xBB\xBFhello\tHallo\nbye\ttsch\xC3\xBCss\n");
  auto c = data::read_parallel_corpus(dir.str("c.tsv"));
  CHECK(c.source == std::vector<std::string>{"hello", "bye"});
  write(dir.str("a.en"), "\xEF\xBB\xBFone\n");
  write(dir.str("a.de"), "\xEF\xBB\xBF" "eins\n");
  auto p = data::read_parallel_corpus(json::array({dir.str("a.en"), dir.str("a.de")}));
  CHECK(p.source == std::vector<std::string>{"one"});
  CHECK(p.target == std::vector<std::string>{"eins"});
  CHECK(data::read_lines(dir.str("a.en")) == std::vector<std::string>{"one"});
  CHECK(contains(error_message([&] { data::read_parallel_corpus(dir.path().string()); }), "is a folder"));
}

TEST_CASE("sample --out may not be its --input, lie inside an input folder or hold an output named as the input", "[data][corpus]") {
  TempDir dir("out_apart");
  std::filesystem::create_directories(dir.str("in"));
  write(dir.str("in/a.txt"), "x\n");
  using data::check_output_apart_from_input;
  auto refused = [&](const std::string& out, const std::string& in) {
    return error_message([&] { check_output_apart_from_input(out, in); });
  };
  CHECK(contains(refused(dir.str("in/a.txt"), dir.str("in/a.txt")), "is the --input file"));
  CHECK(contains(refused(dir.str("in/./a.txt"), dir.str("in/a.txt")), "is the --input file"));
  CHECK(contains(refused(dir.str("in"), dir.str("in")), "is the --input folder"));
  CHECK(contains(refused(dir.str("in/out"), dir.str("in")), "is inside the --input folder"));
  CHECK(contains(refused(dir.str("in/out/deeper"), dir.str("in/")), "is inside the --input folder"));
  CHECK_NOTHROW(check_output_apart_from_input(dir.str("out"), dir.str("in")));
  CHECK_NOTHROW(check_output_apart_from_input(dir.str("in2"), dir.str("in")));  // a sibling sharing a prefix
  CHECK_NOTHROW(check_output_apart_from_input(dir.str("in/b.txt"), dir.str("in/a.txt")));
  // Beside an input file, outputs of other names are fine; one of its name would replace it.
  CHECK_NOTHROW(check_output_apart_from_input(dir.str("in"), dir.str("in/a.txt"), {dir.str("in/b.txt")}));
  const auto e = error_message([&] {
    check_output_apart_from_input(dir.str("in/"), dir.str("in/a.txt"), {dir.str("in/b.txt"), dir.str("in/./a.txt")});
  });
  CHECK(contains(e, "the output '" + dir.str("in/./a.txt") + "' would replace the --input file"));
  CHECK_NOTHROW(check_output_apart_from_input("", dir.str("in")));
  CHECK_NOTHROW(check_output_apart_from_input(dir.str("x"), "-"));
}

TEST_CASE("is_valid_utf8", "[data][corpus]") {
  using data::is_valid_utf8;
  CHECK(is_valid_utf8(""));
  CHECK(is_valid_utf8("plain ascii"));
  CHECK(is_valid_utf8("Gr\xc3\xbc\xc3\x9f" "e"));      // Grüße
  CHECK(is_valid_utf8("\xe6\x97\xa5\xe6\x9c\xac"));    // 日本
  CHECK(is_valid_utf8("\xf0\x9f\x98\x80"));            // U+1F600
  CHECK(is_valid_utf8("\xf4\x8f\xbf\xbf"));            // U+10FFFF, the last code point
  CHECK(is_valid_utf8("\xed\x9f\xbf"));                // U+D7FF, just below the surrogates

  CHECK(!is_valid_utf8("\xff"));
  CHECK(!is_valid_utf8("\x80"));                       // lone continuation byte
  CHECK(!is_valid_utf8("abc\xc3"));                    // truncated at the end
  CHECK(!is_valid_utf8("\xc3\x28"));                   // bad continuation
  CHECK(!is_valid_utf8("\xe6\x97"));                   // truncated 3-byte sequence
  CHECK(!is_valid_utf8("\xf8\x88\x80\x80\x80"));       // 5-byte form
  // Overlong encodings, UTF-16 surrogates and code points past U+10FFFF are not UTF-8
  // (RFC 3629).
  CHECK(!is_valid_utf8("\xc0\xaf"));                   // overlong '/'
  CHECK(!is_valid_utf8("\xc1\xbf"));
  CHECK(!is_valid_utf8("\xe0\x80\xaf"));               // overlong '/' in 3 bytes
  CHECK(!is_valid_utf8("\xf0\x80\x80\xaf"));           // overlong '/' in 4 bytes
  CHECK(!is_valid_utf8("\xed\xa0\x80"));               // U+D800
  CHECK(!is_valid_utf8("\xf4\x90\x80\x80"));           // U+110000
  CHECK(!is_valid_utf8("\xf5\x80\x80\x80"));
}
