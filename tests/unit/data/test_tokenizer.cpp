// Tests of the SentencePiece tokenizer and of its isolation from LibTorch.
//
// SentencePiece runs in a helper process (xformer_spm), because Debian's libsentencepiece
// (embedded protobuf 3.14) and LibTorch (another protobuf) crash when linked into one process.
// Checked here besides the tokenizer itself: LibTorch works next to running helpers, batches
// of requests agree with single ones, and a missing or failing helper is a clear error. Every
// test case trains or loads by itself, so each one also passes when run alone.
#include "test_support.h"
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "xformer/core/error.h"
#include "xformer/data/tokenizer.h"

namespace {

namespace fs = std::filesystem;
using xformer::data::Tokenizer;
using xformer::data::TokenizerTrainOptions;

// A fresh directory under the system temp dir, removed with everything in it.
class ScratchDir : public xformer::testing::TempDir {
 public:
  ScratchDir() : TempDir("tokenizer") {}
};

const std::vector<std::string>& sample_sentences() {
  static const std::vector<std::string> sentences = {
      "The quick brown fox jumps over the lazy dog.",
      "Der schnelle braune Fuchs springt über den faulen Hund.",
      "Die Straße ist heiß und die Bäume sind grün.",
      "Schöne Grüße aus München, sagte das Mädchen.",
      "We walked along the river in the morning.",
      "Größe, Maß und Fuß: ä ö ü ß Ä Ö Ü.",
      "It was 42 degrees, said the old man.",
  };
  return sentences;
}

// A few hundred English and German lines, generated deterministically; every character of
// sample_sentences() occurs in it (the samples themselves are included).
void write_corpus(const fs::path& file) {
  static const char* const kEnglish[] = {
      "the", "a", "house", "dog", "cat", "runs", "walks", "quickly", "slowly", "over",
      "under", "bridge", "river", "city", "night", "day", "morning", "evening", "quick",
      "brown", "fox", "jumps", "lazy", "we", "walked", "along", "in", "it", "was", "said",
      "old", "man", "degrees", "small", "large", "green", "tree", "water", "and", "with"};
  static const char* const kGerman[] = {
      "der", "die", "das", "Haus", "Hund", "Katze", "läuft", "geht", "schnell", "langsam",
      "über", "unter", "Brücke", "Fluss", "Stadt", "Nacht", "Tag", "Morgen", "Abend",
      "schöne", "Grüße", "aus", "München", "Mädchen", "Straße", "heiß", "Bäume", "grün",
      "Größe", "Maß", "Fuß", "weiß", "süß", "Öl", "Ärger", "Übung", "müde", "fährt", "groß",
      "und", "sind", "ist", "sagte", "braune", "Fuchs", "springt", "den", "faulen"};
  std::mt19937 rng(1234);
  auto pick = [&rng](const auto& words) {
    const size_t n = sizeof(words) / sizeof(words[0]);
    return std::string(words[std::uniform_int_distribution<size_t>(0, n - 1)(rng)]);
  };
  std::ofstream out(file, std::ios::binary);
  for (int i = 0; i < 400; ++i) {
    const bool german = i % 2 == 1;
    const int len = std::uniform_int_distribution<int>(4, 12)(rng);
    std::string line;
    for (int w = 0; w < len; ++w) {
      std::string word = german ? pick(kGerman) : pick(kEnglish);
      if (w == 0) word[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(word[0])));
      if (!line.empty()) line += ' ';
      line += word;
      if (w == len / 2 && i % 5 == 0) line += ',';
    }
    line += i % 7 == 0 ? "?" : ".";
    if (i % 9 == 0) line += " " + std::to_string(i) + " " + std::to_string(i * 7 % 100);
    out << line << '\n';
  }
  for (int rep = 0; rep < 3; ++rep) {
    for (const auto& s : sample_sentences()) out << s << '\n';
  }
  out << "Äpfel, Öfen und Übungen: ÄÖÜ äöü ß.\n";
}

TokenizerTrainOptions small_options(const ScratchDir& dir) {
  const fs::path corpus = dir.path() / "corpus.txt";
  if (!fs::exists(corpus)) write_corpus(corpus);
  TokenizerTrainOptions options;
  options.input_files = {corpus.string()};
  options.model_prefix = (dir.path() / "spm").string();
  options.vocab_size = 200;
  return options;
}

std::string read_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Trains the small model into `dir` and loads it.
Tokenizer train_small(const ScratchDir& dir) {
  const auto options = small_options(dir);
  Tokenizer::train(options);
  return Tokenizer::load(options.model_prefix + ".model");
}

}  // namespace

TEST_CASE("Tokenizer trains a model with fixed special ids", "[data][tokenizer]") {
  ScratchDir dir;
  const auto options = small_options(dir);
  Tokenizer::train(options);
  CHECK(fs::is_regular_file(options.model_prefix + ".model"));
  CHECK(fs::is_regular_file(options.model_prefix + ".vocab"));

  const Tokenizer tok = Tokenizer::load(options.model_prefix + ".model");
  CHECK(tok.vocab_size() == 200);
  CHECK(tok.pad_id() == 0);
  CHECK(tok.unk_id() == 1);
  CHECK(tok.bos_id() == 2);
  CHECK(tok.eos_id() == 3);
  CHECK(tok.id_to_piece(0) == "<pad>");
  CHECK(tok.id_to_piece(1) == "<unk>");
  CHECK(tok.id_to_piece(2) == "<s>");
  CHECK(tok.id_to_piece(3) == "</s>");
  CHECK_FALSE(tok.id_to_piece(4).empty());
  CHECK_THROWS_AS(tok.id_to_piece(200), xformer::Error);
  CHECK_THROWS_AS(tok.id_to_piece(-1), xformer::Error);
}

TEST_CASE("Tokenizer encode/decode round trip, UTF-8 included", "[data][tokenizer]") {
  ScratchDir dir;
  const Tokenizer tok = train_small(dir);

  for (const auto& sentence : sample_sentences()) {
    INFO(sentence);
    const std::vector<int32_t> ids = tok.encode(sentence);
    REQUIRE_FALSE(ids.empty());
    for (const int32_t id : ids) {
      CHECK(id >= 4);  // no special ids (no unk either: every character was in the corpus)
      CHECK(id < tok.vocab_size());
    }
    CHECK(tok.decode(ids) == sentence);

    // pad, bos and eos are dropped by decode.
    std::vector<int32_t> framed = {tok.bos_id()};
    framed.insert(framed.end(), ids.begin(), ids.end());
    framed.push_back(tok.eos_id());
    framed.push_back(tok.pad_id());
    framed.push_back(tok.pad_id());
    CHECK(tok.decode(framed) == sentence);
  }

  // The input is normalized (NFKC, whitespace runs collapsed, ends trimmed) before encoding.
  CHECK(tok.decode(tok.encode("  Die   Straße  ist heiß. ")) == "Die Straße ist heiß.");
  CHECK(tok.encode("").empty());
  CHECK(tok.decode({}).empty());
  CHECK(tok.decode({tok.bos_id(), tok.eos_id()}).empty());

  // A character never seen in training maps to unk.
  const auto unk = tok.encode("\xe2\x82\xac");  // the euro sign
  CHECK(std::find(unk.begin(), unk.end(), tok.unk_id()) != unk.end());

  CHECK_THROWS_AS(tok.decode({5, 100000}), xformer::Error);
  CHECK_THROWS_AS(tok.decode({-7}), xformer::Error);
}

TEST_CASE("LibTorch works in a process that has trained and loaded SentencePiece models",
          "[data][tokenizer][torch]") {
  ScratchDir dir;
  const Tokenizer tok = train_small(dir);
  const std::vector<int32_t> ids = tok.encode(sample_sentences()[1]);
  REQUIRE_FALSE(ids.empty());

  // Token ids into a tensor, then real LibTorch work: matmul, autograd, an nn module.
  const torch::Tensor t =
      torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kLong);
  CHECK(t.size(0) == static_cast<int64_t>(ids.size()));
  CHECK(t.max().item<int64_t>() < tok.vocab_size());

  const torch::Tensor a = torch::arange(6, torch::kFloat32).reshape({2, 3});
  const torch::Tensor b = torch::ones({3, 2});
  const torch::Tensor c = torch::matmul(a, b);
  CHECK(c.sizes().vec() == std::vector<int64_t>{2, 2});
  CHECK(torch::allclose(c, torch::tensor({{3.0f, 3.0f}, {12.0f, 12.0f}})));

  torch::manual_seed(0);
  torch::Tensor x = torch::randn({4, 3}, torch::requires_grad());
  const torch::Tensor loss = (x * x).sum();
  loss.backward();
  CHECK(torch::allclose(x.grad(), 2 * x.detach()));

  torch::nn::Embedding embedding(tok.vocab_size(), 8);
  const torch::Tensor e = embedding(t);
  CHECK(e.sizes().vec() == std::vector<int64_t>{t.size(0), 8});

  // And the tokenizer still works afterwards.
  CHECK(tok.decode(ids) == sample_sentences()[1]);
}

TEST_CASE("Tokenizer training is deterministic", "[data][tokenizer]") {
  ScratchDir dir;
  auto options = small_options(dir);
  Tokenizer::train(options);
  const std::string first = read_bytes(options.model_prefix + ".model");
  const std::string first_vocab = read_bytes(options.model_prefix + ".vocab");
  REQUIRE_FALSE(first.empty());
  Tokenizer::train(options);
  CHECK(read_bytes(options.model_prefix + ".model") == first);
  CHECK(read_bytes(options.model_prefix + ".vocab") == first_vocab);

  // Sampling a subset of the lines is seeded too; so are bpe models.
  options.input_sentence_size = 150;
  Tokenizer::train(options);
  const std::string sampled = read_bytes(options.model_prefix + ".model");
  Tokenizer::train(options);
  CHECK(read_bytes(options.model_prefix + ".model") == sampled);

  options.input_sentence_size = 0;
  options.model_type = "bpe";
  Tokenizer::train(options);
  const std::string bpe = read_bytes(options.model_prefix + ".model");
  Tokenizer::train(options);
  CHECK(read_bytes(options.model_prefix + ".model") == bpe);
  const Tokenizer tok = Tokenizer::load(options.model_prefix + ".model");
  CHECK(tok.decode(tok.encode(sample_sentences()[2])) == sample_sentences()[2]);
}

TEST_CASE("Tokenizer can encode from several threads at once", "[data][tokenizer]") {
  ScratchDir dir;
  const Tokenizer tok = train_small(dir);
  std::vector<std::vector<int32_t>> expected;
  for (const auto& s : sample_sentences()) expected.push_back(tok.encode(s));

  constexpr int kThreads = 4;
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 200; ++rep) {
        const size_t i = static_cast<size_t>(rep + t) % sample_sentences().size();
        if (tok.encode(sample_sentences()[i]) != expected[i]) ++mismatches;
        if (tok.decode(expected[i]) != sample_sentences()[i]) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(mismatches.load() == 0);
}

TEST_CASE("Tokenizer is move-only and owns its model", "[data][tokenizer]") {
  ScratchDir dir;
  Tokenizer a = train_small(dir);
  const auto ids = a.encode(sample_sentences()[0]);
  Tokenizer b = std::move(a);
  CHECK(b.decode(ids) == sample_sentences()[0]);
  CHECK_THROWS_AS(a.encode("x"), std::logic_error);  // NOLINT(bugprone-use-after-move)
  a = Tokenizer::load(b.model_path());
  CHECK(a.encode(sample_sentences()[0]) == ids);
  b = std::move(a);
  CHECK(b.decode(ids) == sample_sentences()[0]);
}

TEST_CASE("Tokenizer reports missing or corrupt models and bad options", "[data][tokenizer]") {
  ScratchDir dir;
  const std::string missing = (dir.path() / "no_such_dir" / "missing.model").string();
  try {
    Tokenizer::load(missing);
    FAIL("loading a missing model must throw");
  } catch (const xformer::Error& e) {
    CHECK_THAT(e.what(), Catch::Contains(missing));
    CHECK(e.exit_code() == xformer::kExitFailure);
  }

  const fs::path corrupt = dir.path() / "corrupt.model";
  std::ofstream(corrupt, std::ios::binary) << "this is not a sentencepiece model\n";
  try {
    Tokenizer::load(corrupt.string());
    FAIL("loading a corrupt model must throw");
  } catch (const xformer::Error& e) {
    CHECK_THAT(e.what(), Catch::Contains(corrupt.string()));
  }

  auto options = small_options(dir);
  options.vocab_size = 3;
  try {
    Tokenizer::train(options);
    FAIL("vocab_size 3 must be refused");
  } catch (const xformer::Error& e) {
    CHECK(e.exit_code() == xformer::kExitUsage);
  }

  options = small_options(dir);
  options.character_coverage = 0.5;
  CHECK_THROWS_AS(Tokenizer::train(options), xformer::Error);

  options = small_options(dir);
  options.model_type = "wordpiece";
  CHECK_THROWS_AS(Tokenizer::train(options), xformer::Error);

  options = small_options(dir);
  const std::string no_input = (dir.path() / "absent.txt").string();
  options.input_files = {no_input};
  try {
    Tokenizer::train(options);
    FAIL("a missing input file must throw");
  } catch (const xformer::Error& e) {
    CHECK_THAT(e.what(), Catch::Contains(no_input));
  }

  // SentencePiece's own refusal (vocabulary larger than the corpus allows) arrives as an Error.
  options = small_options(dir);
  options.vocab_size = 50000;
  try {
    Tokenizer::train(options);
    FAIL("an oversized vocabulary must throw");
  } catch (const xformer::Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("Vocabulary size"));
  }
}

TEST_CASE("Tokenizer encodes and decodes a batch as each text alone, across several requests",
          "[data][tokenizer]") {
  ScratchDir dir;
  const Tokenizer tok = train_small(dir);
  // More texts than one request carries (spm_protocol::kBatchEntries), with empty ones.
  std::vector<std::string> texts;
  for (int i = 0; i < 20000; ++i)
    texts.push_back(i % 997 == 0 ? std::string() : sample_sentences()[static_cast<size_t>(i) % sample_sentences().size()]);
  const auto batch = tok.encode_batch(texts);
  REQUIRE(batch.size() == texts.size());
  std::vector<std::vector<int32_t>> single;
  for (const auto& s : sample_sentences()) single.push_back(tok.encode(s));
  size_t mismatches = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto& expected = i % 997 == 0 ? std::vector<int32_t>() : single[i % sample_sentences().size()];
    mismatches += batch[i] != expected;
  }
  CHECK(mismatches == 0);
  const auto texts_back = tok.decode_batch(batch);
  REQUIRE(texts_back.size() == texts.size());
  CHECK(texts_back == texts);
  CHECK(tok.encode_batch({}).empty());
  CHECK(tok.decode_batch({}).empty());
  CHECK_THROWS_AS(tok.decode_batch({{5}, {5, tok.vocab_size()}}), xformer::Error);
  // One text longer than a request's byte budget still travels, alone.
  std::string longer;
  while (longer.size() < (5u << 20)) longer += sample_sentences()[0] + " ";
  const auto pieces = tok.encode_batch({sample_sentences()[1], longer, sample_sentences()[2]});
  REQUIRE(pieces.size() == 3);
  CHECK(pieces[0] == single[1]);
  CHECK(pieces[1].size() > 100000);
  CHECK(pieces[2] == single[2]);
}

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) setenv(name_, old_->c_str(), 1);
    else unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST_CASE("Tokenizer reports a missing or failing SentencePiece helper", "[data][tokenizer]") {
  ScratchDir dir;
  const auto options = small_options(dir);
  Tokenizer::train(options);
  const std::string model = options.model_prefix + ".model";
  {
    const std::string absent = (dir.path() / "no_helper").string();
    ScopedEnv env("XFORMER_SPM_HELPER", absent);
    try {
      Tokenizer::load(model);
      FAIL("a missing helper must throw");
    } catch (const xformer::Error& e) {
      CHECK_THAT(e.what(), Catch::Contains(absent) && Catch::Contains("does not exist"));
    }
  }
  {
    // A helper that ends without answering: the error says how it ended.
    const fs::path script = dir.path() / "dies.sh";
    std::ofstream(script) << "#!/bin/sh\nexit 7\n";
    fs::permissions(script, fs::perms::owner_all);
    ScopedEnv env("XFORMER_SPM_HELPER", script.string());
    try {
      Tokenizer::load(model);
      FAIL("a helper that exits must throw");
    } catch (const xformer::Error& e) {
      CHECK_THAT(e.what(), Catch::Contains(model) && Catch::Contains("exited with code 7"));
    }
    try {
      Tokenizer::train(options);
      FAIL("training with a helper that exits must throw");
    } catch (const xformer::Error& e) {
      CHECK_THAT(e.what(), Catch::Contains("exited with code 7"));
    }
  }
  {
    // A helper that dies while its model is loaded: the next request says how it ended.
    auto helpers = [] {  // pids of our children named xformer_spm
      std::set<pid_t> pids;
      for (const auto& entry : fs::directory_iterator("/proc")) {
        std::ifstream stat(entry.path() / "stat");
        std::string pid, comm, state;
        pid_t ppid = 0;
        if (stat >> pid >> comm >> state >> ppid && ppid == getpid() && comm == "(xformer_spm)")
          pids.insert(std::stoi(pid));
      }
      return pids;
    };
    const auto before = helpers();
    Tokenizer doomed = Tokenizer::load(model);
    const auto ids = doomed.encode(sample_sentences()[0]);
    std::vector<pid_t> started;  // this tokenizer's helper: the one that was not there before
    for (const pid_t p : helpers())
      if (!before.count(p)) started.push_back(p);
    REQUIRE(started.size() == 1);
    REQUIRE(kill(started[0], SIGKILL) == 0);
    try {
      doomed.decode(ids);
      FAIL("a request to a killed helper must throw");
    } catch (const xformer::Error& e) {
      CHECK_THAT(e.what(), Catch::Contains(model) && Catch::Contains("was killed by signal 9"));
    }
    CHECK_THROWS_WITH(doomed.encode("x"), Catch::Contains("has stopped"));
  }
  // With the real helper back, the model loads and works.
  const Tokenizer tok = Tokenizer::load(model);
  CHECK(tok.decode(tok.encode(sample_sentences()[0])) == sample_sentences()[0]);
}
