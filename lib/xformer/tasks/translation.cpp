#include "xformer/tasks/translation.h"

#include <spdlog/spdlog.h>

#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <set>

#include <unistd.h>  // isatty

#include "xformer/core/atomic_file.h"
#include "xformer/core/error.h"
#include "xformer/data/batching.h"
#include "xformer/data/parallel_corpus.h"
#include "xformer/data/tokenizer.h"
#include "xformer/decode/search.h"
#include "xformer/metrics/bleu.h"
#include "xformer/metrics/chrf.h"
#include "xformer/models/transformer.h"
#include "xformer/nn/loss.h"
#include "xformer/tasks/task.h"

namespace fs = std::filesystem;

namespace xformer::tasks {

namespace {

void declare_translation_keys(Schema& s) {
  s.add("task.train", KeyType::PathOrPair, "data/translation/en-de/train.tsv",
        "Training corpus: a TSV of source<TAB>target, or [source_file, target_file].");
  s.add("task.valid", KeyType::PathOrPair, "data/translation/en-de/valid.tsv", "Validation corpus.");
  s.add("task.test", KeyType::PathOrPair, "data/translation/en-de/test.tsv", "Test corpus.");
  s.add("task.spm_model", KeyType::String, "",
        "A SentencePiece .model to use; empty = train one on the training split.");
  s.add("task.vocab_size", KeyType::Int, 8000, "Joint vocabulary size of a trained SentencePiece model.")
      .at_least(8);
  s.add("task.spm_type", KeyType::String, "unigram", "SentencePiece model type.",
        {"unigram", "bpe", "char", "word"});
  s.add("task.spm_cache", KeyType::String, ".cache/xformer/spm",
        "Folder where trained SentencePiece models are cached (keyed by data and options).");
  s.add("task.max_tokens", KeyType::Int, 4096,
        "Batch size in tokens: sentences x longest sentence (padding included).").at_least(1);
  s.add("task.max_sentences", KeyType::Int, 0, "Cap on sentences per batch; 0 = none.").at_least(0);
  s.add("task.label_smoothing", KeyType::Float, 0.1, "Label smoothing epsilon.").at_least(0).below(1);
  s.add("task.beam", KeyType::Int, 4, "Beam width for evaluation.").at_least(1);
  s.add("task.lenpen", KeyType::Float, 0.6, "GNMT length penalty alpha for evaluation.").at_least(0);
  s.add("task.max_len_a", KeyType::Float, 1.2, "Longest output, EOS included: max_len_a * (source tokens + EOS) + max_len_b, at most model.max_positions.")
      .at_least(0);
  s.add("task.max_len_b", KeyType::Int, 10, "See max_len_a.").at_least(0);
  s.add("task.eval_bleu", KeyType::Bool, true, "Decode the split and report BLEU and chrF when evaluating.");
  s.add("task.eval_bleu_sentences", KeyType::Int, 0,
        "While training, decode at most this many valid sentences for BLEU (0 = all); "
        "`xformer eval` always decodes the whole split.").at_least(0);
  s.add("task.decode_batch", KeyType::Int, 64, "Sentences decoded together.").at_least(1);
}

// One training/eval example as token ids, without BOS/EOS.
struct Example {
  std::vector<int32_t> source, target;
};

class TranslationTask : public BatchedTask {
 public:
  TranslationTask(const json& config, const RunContext& ctx)
      : t_(config.at("task")), ctx_(ctx),
        seed_(config.at("train").at("seed").get<uint64_t>()) {
    tokenizer_ = std::make_unique<data::Tokenizer>(load_tokenizer());
    if (t_.at("beam").get<int64_t>() > tokenizer_->vocab_size())
      throw ConfigError("config error: task.beam " + t_.at("beam").dump() + " is wider than the vocabulary (" +
                        std::to_string(tokenizer_->vocab_size()) + " pieces)");
    auto o = models::TransformerOptions::from_config(config.at("model"));
    o.src_vocab = o.tgt_vocab = tokenizer_->vocab_size();
    o.pad_id = tokenizer_->pad_id();
    max_len_ = o.max_positions;
    torch::manual_seed(seed_);
    model_ = models::Transformer(o);
    model_->to(ctx_.device);
    if (ctx_.for_training) {
      train_ = encode_split(Split::Train, /*skip_long=*/true).examples;
      lengths_.reserve(train_.size());
      for (const auto& e : train_)
        lengths_.push_back({static_cast<int64_t>(e.source.size()) + 1,
                            static_cast<int64_t>(e.target.size()) + 1});
      const int64_t max_tokens = t_.at("max_tokens");
      const auto over = std::count_if(lengths_.begin(), lengths_.end(), [&](const data::LengthPair& l) {
        return std::max(l.source, l.target) > max_tokens;
      });
      if (over > 0)
        spdlog::warn("train: {} pairs are longer than task.max_tokens ({}): each of them is a batch of its own, "
                     "of more tokens than that", over, max_tokens);
      eval_splits_.load_valid();
    }
  }

  std::shared_ptr<torch::nn::Module> model() override { return model_.ptr(); }

  int64_t plan_epoch(int64_t epoch) override {
    batches_ = data::make_batches(lengths_, t_.at("max_tokens"), t_.at("max_sentences"),
                                  /*shuffle=*/true, seed_, epoch);
    return static_cast<int64_t>(batches_.size());
  }

  Batch training_batch(int64_t index) override { return collate(train_, batches_[index]); }

  LossOut loss(const Batch& batch) override {
    return transformer_loss(model_, batch, t_.at("label_smoothing"), tokenizer_->pad_id());
  }

  Metrics evaluate(Split split, const std::string& out_prefix) override {
    const auto& [examples, references] = eval_splits_.get(split);
    std::vector<data::LengthPair> lengths;
    for (const auto& e : examples)
      lengths.push_back({static_cast<int64_t>(e.source.size()) + 1, static_cast<int64_t>(e.target.size()) + 1});
    double loss = 0, nll = 0, tokens = 0;
    for (const auto& idx : data::make_batches(lengths, t_.at("max_tokens"), t_.at("max_sentences"), false, 0, 0)) {
      auto batch = collate(examples, idx);
      auto out = members_.empty() ? this->loss(batch) : ensemble_loss(batch);
      loss += out.loss.item<double>();
      nll += out.sums.at("nll").item<double>();
      tokens += out.sample_size;
    }
    Metrics m;
    m["loss"] = loss / std::max(tokens, 1.0);
    m["nll"] = nll / std::max(tokens, 1.0);
    m["ppl"] = std::exp(m["nll"]);
    if (t_.at("eval_bleu").get<bool>()) {
      int64_t n = static_cast<int64_t>(examples.size());
      const int64_t cap = t_.at("eval_bleu_sentences");  // a quicker look while training
      if (cap > 0 && ctx_.for_training) n = std::min(n, cap);
      std::vector<std::vector<int32_t>> sources;  // the pieces already encoded for the loss
      for (int64_t i = 0; i < n; ++i) sources.push_back(examples[i].source);
      std::vector<std::string> refs(references.begin(), references.begin() + n);
      decode::SearchOptions o = search_options();
      o.beam = t_.at("beam");
      o.lenpen = t_.at("lenpen");
      std::vector<std::string> hyps;
      for (auto& t : translate(std::move(sources), o)) hyps.push_back(std::move(t.text));
      auto bleu = metrics::corpus_bleu(hyps, refs);
      m["bleu"] = bleu.score;
      m["chrf"] = metrics::corpus_chrf(hyps, refs).score;
      spdlog::info("{} BLEU on {} sentences: {}; chrF2 {:.2f}", split_name(split), n, bleu.to_string(), m["chrf"]);
      if (!out_prefix.empty()) {
        fs::create_directories(fs::path(out_prefix).parent_path());
        std::ofstream out(out_prefix + ".hyp");
        for (const auto& h : hyps) out << h << "\n";
      }
    }
    return m;
  }

  void sample(const SampleOptions& opts) override {
    if (opts.score_pairs && (opts.beam > 0 || opts.lenpen || opts.temperature || opts.top_k > 0 || opts.top_p < 1 ||
                             opts.num > 1 || opts.scores))
      throw ConfigError("usage error: --score-pairs scores the translations it is given; it takes none of --beam, "
                        "--lenpen, --temperature, --top-k, --top-p, --num, --scores");
    if (!opts.temperature && (opts.top_k > 0 || opts.top_p < 1))
      throw ConfigError("usage error: --top-k and --top-p need --temperature (sampling)");
    // Without --beam, the search `eval` uses: the run's task.beam and task.lenpen.
    const int64_t run_beam = t_.at("beam"), beam = opts.beam > 0 ? opts.beam : run_beam;
    if (!opts.temperature && opts.num > beam && opts.num > 1)
      throw ConfigError("usage error: --num " + std::to_string(opts.num) +
                        " translations per line need --beam " + std::to_string(opts.num) +
                        " or wider (the n-best list; the run's task.beam is " + std::to_string(run_beam) +
                        ") or --temperature (samples)");
    const std::string input = opts.input.empty() ? "-" : opts.input;
    decode::SearchOptions o = search_options();
    if (beam > tokenizer_->vocab_size())
      throw ConfigError("usage error: --beam " + std::to_string(beam) + " is wider than the vocabulary (" +
                        std::to_string(tokenizer_->vocab_size()) + " pieces)");
    o.beam = beam;
    o.lenpen = opts.lenpen.value_or(t_.at("lenpen").get<double>());
    if (opts.temperature) {
      o.temperature = *opts.temperature;
      o.top_k = opts.top_k;
      o.top_p = opts.top_p;
      o.seed = opts.seed;
    }
    // The input is checked before --out is opened, so that a missing input leaves an existing
    // file as it was, and an unwritable --out is refused before anything is translated.
    data::check_input_file(input);
    data::check_output_apart_from_input(opts.out, input);
    // --out is tried now (without truncating it) and opened at the first answer: input that
    // turns out malformed leaves an existing file as it was.
    if (!opts.out.empty()) {  // writable (an existing file, or a new one in a writable folder), yet untouched
      std::error_code ec;
      const fs::path out_path(opts.out), folder = out_path.has_parent_path() ? out_path.parent_path() : fs::path(".");
      const bool ok = fs::exists(out_path, ec) ? !fs::is_directory(out_path, ec) && access(opts.out.c_str(), W_OK) == 0
                                               : access(folder.c_str(), W_OK) == 0;
      if (!ok) throw DataError("cannot write '" + opts.out + "'");
    }
    std::ofstream file;
    auto output = [&]() -> std::ostream& {
      if (opts.out.empty()) return std::cout;
      if (!file.is_open()) file.open(opts.out);
      return file;
    };
    auto flush = [&] {
      if (!output().flush())
        throw DataError("cannot write " + (opts.out.empty() ? std::string("to standard output") : "'" + opts.out + "'"));
    };
    // --num N: N samples of each line, or its N best beam hypotheses (best first).
    const int64_t nbest = opts.temperature ? 1 : opts.num;
    uint64_t batches = 0;
    int64_t lines_read = 0;
    auto where_line = [&](int64_t line) { return (input == "-" ? std::string("stdin") : input) + ":" + std::to_string(line); };
    auto score = [&](const std::vector<std::string>& lines) {  // --score-pairs
      std::vector<std::string> sides, wheres;  // source, target of each line that is not blank
      std::exception_ptr malformed;  // the first line that is no pair: reported after the lines before it
      for (const auto& line : lines) {
        const std::string where = where_line(++lines_read);
        if (data::is_blank(line)) continue;
        try {
          auto [source, target] = data::split_pair_line(line, where);
          sides.push_back(std::move(source));
          sides.push_back(std::move(target));
          wheres.push_back(where);
        } catch (const Error&) {
          malformed = std::current_exception();
          break;
        }
      }
      auto pieces = tokenizer_->encode_batch(sides);
      std::vector<Example> pairs;
      for (size_t i = 0; i < wheres.size(); ++i)
        pairs.push_back(checked_pair({std::move(pieces[2 * i]), std::move(pieces[2 * i + 1])}, wheres[i]));
      if (malformed) std::rethrow_exception(malformed);
      const auto scores = score_pairs(pairs);
      std::ostream& out = output();
      size_t next = 0;
      for (const auto& line : lines) {  // a blank line stays blank, so that output lines match input lines
        if (data::is_blank(line)) {
          out << "\n";
          continue;
        }
        const auto& s = scores[next++];
        out << fmt::format("{:.4f}\t{}\n", s.log_prob, s.pieces);
      }
      flush();
    };
    // Output lines per input line: its samples, or its n best.
    const int64_t copies = opts.temperature ? opts.num : nbest;
    auto translate_lines = [&](const std::vector<std::string>& lines) {
      std::vector<std::vector<int32_t>> inputs;  // the pieces of each line to translate, once per copy
      std::vector<char> blank;  // lines without a piece: left blank, not translated
      auto where = [&](size_t i) { return where_line(lines_read + static_cast<int64_t>(i) + 1); };  // of lines[i]
      for (size_t i = 0; i < lines.size(); ++i)
        if (!data::is_valid_utf8(lines[i])) throw DataError(where(i) + ": not valid UTF-8");
      auto encoded = tokenizer_->encode_batch(lines);
      for (size_t i = 0; i < lines.size(); ++i) {
        const size_t pieces = encoded[i].size();
        blank.push_back(pieces == 0);
        if (pieces == 0) continue;
        if (pieces > static_cast<size_t>(max_len_ - 1))
          spdlog::warn("{}: {} pieces, longer than the model reads (model.max_positions): translating its first {}",
                       where(i), pieces, max_len_ - 1);
        for (int c = 1; c < (opts.temperature ? opts.num : 1); ++c) inputs.push_back(encoded[i]);
        inputs.push_back(std::move(encoded[i]));
      }
      lines_read += lines.size();
      const auto translations = translate(std::move(inputs), o, /*sampling=*/opts.temperature.has_value(), nbest, &batches);
      std::ostream& out = output();
      size_t next = 0;
      for (char is_blank : blank)  // output lines match input lines
        for (int64_t c = 0; c < copies; ++c) {
          if (is_blank) {
            out << "\n";
            continue;
          }
          const auto& t = translations[next++];
          if (opts.scores) out << fmt::format("{:.4f}\t", t.log_prob);
          out << t.text << "\n";
        }
      flush();
    };
    // Someone typing at a terminal (or a program feeding a pipe line by line, with --stream)
    // gets each translation as soon as the line is entered; otherwise the input is read to the
    // end first, so that batches group sentences of similar length.
    using Answer = std::function<void(const std::vector<std::string>&)>;
    const Answer answer = opts.score_pairs ? Answer(score) : Answer(translate_lines);
    if (opts.stream || (input == "-" && isatty(STDIN_FILENO)))
      data::for_each_line(input, [&](const std::string& line) { answer({line}); });
    else
      answer(data::read_lines(input));
    flush();  // an empty input still leaves an (empty) --out
  }

  void add_ensemble_member(std::unique_ptr<Task> member, const std::string& member_run) override {
    auto* other = dynamic_cast<TranslationTask*>(member.get());
    if (!other) throw ConfigError("usage error: --ensemble " + member_run + " is not a translation run");
    // The same vocabulary: the same pieces under the same ids (the file itself also records where
    // SentencePiece was trained, which differs between runs that share a vocabulary).
    const auto& mine = *tokenizer_;
    const auto& theirs = *other->tokenizer_;
    bool same = mine.vocab_size() == theirs.vocab_size() && mine.pad_id() == theirs.pad_id() &&
                mine.unk_id() == theirs.unk_id() && mine.bos_id() == theirs.bos_id() && mine.eos_id() == theirs.eos_id();
    for (int32_t id = 0; same && id < mine.vocab_size(); ++id) same = mine.id_to_piece(id) == theirs.id_to_piece(id);
    if (!same)
      throw ConfigError("usage error: --ensemble " + member_run + ": its vocabulary (tokenizer.model) differs from that of " +
                        ctx_.run_dir + "; runs combined must share one (trained on the same task.train with the same "
                        "task.vocab_size and task.spm_type, or given the same task.spm_model)");
    other->model_->to(ctx_.device);
    other->model_->eval();
    members_.push_back(other->model_);
    max_len_ = std::min(max_len_, other->max_len_);  // what every model can read and write
  }

 private:
  // Every model that decodes: this run's, then the --ensemble members'.
  std::vector<models::Transformer> models() const {
    std::vector<models::Transformer> all = {model_};
    all.insert(all.end(), members_.begin(), members_.end());
    return all;
  }

  // Next-token log-probabilities (B, T, V) of a batch's targets under every model: the
  // ensemble's mean distribution (one model: its log_softmax).
  torch::Tensor next_token_log_probs(const Batch& batch) {
    std::vector<torch::Tensor> logits;  // (B, T, V) per model
    for (auto& m : models()) logits.push_back(m->forward(batch.tensors.at("source"), batch.tensors.at("prev_target")));
    return decode::log_mean_softmax(logits);
  }

  // The label-smoothed loss and NLL of the ensemble's averaged distribution (evaluation).
  LossOut ensemble_loss(const Batch& batch) {
    auto log_probs = next_token_log_probs(batch);
    // log_softmax of normalised log-probabilities is the identity: they serve as logits.
    auto l = nn::label_smoothed_cross_entropy(log_probs.view({-1, log_probs.size(-1)}),
                                              batch.tensors.at("target").view(-1), t_.at("label_smoothing"),
                                              tokenizer_->pad_id());
    LossOut out;
    out.loss = l.loss;
    out.sample_size = static_cast<double>(batch.n_tokens);
    out.sums["nll"] = l.nll;
    return out;
  }

  // An encoded pair to score; DataError naming `where` when a side is longer than the model
  // reads (scores of cut sentences would be silently wrong).
  Example checked_pair(Example e, const std::string& where) const {
    for (const auto* side : {&e.source, &e.target})
      if (static_cast<int64_t>(side->size()) + 1 > max_len_)
        throw DataError(where + ": the " + (side == &e.source ? "source" : "target") + " has " +
                        std::to_string(side->size()) + " pieces; the model reads at most " +
                        std::to_string(max_len_ - 1) + " (model.max_positions, end of sentence included)");
    return e;
  }

  struct PairScore {
    double log_prob = 0;  // log p(target | source), end of sentence included (nats)
    int64_t pieces = 0;   // target pieces scored, end of sentence included
  };

  // Each pair's score under the model (the ensemble's mean distribution), in order, batched by
  // length as evaluation is.
  std::vector<PairScore> score_pairs(const std::vector<Example>& pairs) {
    model_->eval();
    torch::NoGradGuard no_grad;
    std::vector<data::LengthPair> lengths;
    for (const auto& e : pairs)
      lengths.push_back({static_cast<int64_t>(e.source.size()) + 1, static_cast<int64_t>(e.target.size()) + 1});
    std::vector<PairScore> out(pairs.size());
    for (const auto& idx : data::make_batches(lengths, t_.at("max_tokens"), t_.at("max_sentences"), false, 0, 0)) {
      auto batch = collate(pairs, idx);
      const auto& target = batch.tensors.at("target");  // (B, T), padded
      auto per_token = next_token_log_probs(batch).gather(2, target.unsqueeze(2)).squeeze(2);  // (B, T)
      auto sums = per_token.masked_fill(target.eq(tokenizer_->pad_id()), 0).sum(1).to(torch::kCPU, torch::kDouble);
      for (size_t r = 0; r < idx.size(); ++r)
        out[idx[r]] = {sums[r].item<double>(), static_cast<int64_t>(pairs[idx[r]].target.size()) + 1};
    }
    return out;
  }

  // The incremental decoder for a batch of sources (B, S): this run's model, or all of the
  // ensemble's averaged.
  std::unique_ptr<decode::IncrementalDecoder> decoder_for(const torch::Tensor& src) {
    std::vector<std::unique_ptr<decode::IncrementalDecoder>> steppers;
    for (auto& m : models()) steppers.push_back(std::make_unique<models::TransformerStepper>(m, m->encode(src)));
    if (steppers.size() == 1) return std::move(steppers[0]);
    return std::make_unique<decode::EnsembleDecoder>(std::move(steppers));
  }

  data::Tokenizer load_tokenizer() {
    const fs::path in_run = fs::path(ctx_.run_dir) / "tokenizer.model";
    if (!ctx_.run_dir.empty() && fs::exists(in_run)) return data::Tokenizer::load(in_run.string());
    if (!ctx_.for_training)
      throw DataError("run directory '" + ctx_.run_dir + "' has no tokenizer.model");
    std::string model_path = t_.at("spm_model");
    if (model_path.empty()) model_path = train_tokenizer();
    else if (!fs::is_regular_file(model_path))
      throw ConfigError("config error: task.spm_model '" + model_path + "' " +
                        (fs::exists(model_path) ? "is not a file" : "does not exist"));
    auto tok = data::Tokenizer::load(model_path);
    // Batches and searches need padding, BOS and EOS pieces of their own (SentencePiece's own
    // default has no padding piece).
    const std::set<int32_t> specials = {tok.pad_id(), tok.unk_id(), tok.bos_id(), tok.eos_id()};
    if (tok.pad_id() < 0 || tok.bos_id() < 0 || tok.eos_id() < 0 || specials.size() != 4)
      throw ConfigError("config error: task.spm_model '" + model_path + "' has pad " + std::to_string(tok.pad_id()) +
                        ", unk " + std::to_string(tok.unk_id()) + ", bos " + std::to_string(tok.bos_id()) + ", eos " +
                        std::to_string(tok.eos_id()) + "; four distinct pieces are needed (train it with "
                        "--pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3)");
    if (!ctx_.run_dir.empty()) fs::copy_file(model_path, in_run, fs::copy_options::overwrite_existing);
    return tok;
  }

  // Trains a joint model on both sides of the training split, cached under a key made of the
  // corpus content and the options, so that runs over the same data share it.
  std::string train_tokenizer() {
    auto corpus = data::read_parallel_corpus(t_.at("train"));
    if (corpus.size() == 0) throw DataError("corpus '" + corpus.description + "' holds no sentence pairs");
    std::string text;
    for (size_t i = 0; i < corpus.size(); ++i) text += corpus.source[i] + "\n" + corpus.target[i] + "\n";
    const std::string key = std::to_string(std::hash<std::string>{}(
        text + "|" + t_.at("spm_type").get<std::string>() + "|" + t_.at("vocab_size").dump()));
    const fs::path dir = fs::path(t_.at("spm_cache").get<std::string>()) / key;
    const fs::path model = dir / "spm.model";
    if (fs::exists(model)) {
      spdlog::info("tokenizer: cached {}", model.string());
      return model.string();
    }
    fs::create_directories(dir);
    // Names of this process's own: parallel runs (a sweep) may fill the same cache entry at once;
    // each renames a complete model into place, and either copy serves.
    const std::string tmp = fs::path(temp_path_for("spm")).filename().string();
    const fs::path input = dir / (tmp + ".txt");
    { std::ofstream(input) << text; }
    spdlog::info("tokenizer: training a {} SentencePiece model, vocabulary {}, on {} pairs",
                 t_.at("spm_type").get<std::string>(), t_.at("vocab_size").get<int64_t>(), corpus.size());
    data::TokenizerTrainOptions o;
    o.input_files = {input.string()};
    o.model_prefix = (dir / tmp).string();
    o.vocab_size = t_.at("vocab_size");
    o.model_type = t_.at("spm_type");
    try {
      data::Tokenizer::train(o);
    } catch (const Error& e) {  // e.g. a vocabulary too large for the corpus: say which key sets it
      std::error_code ignored;
      for (const char* ext : {".txt", ".model", ".vocab"}) fs::remove(dir / (tmp + ext), ignored);
      throw DataError("task.train '" + corpus.description + "': no SentencePiece vocabulary of task.vocab_size " +
                      t_.at("vocab_size").dump() + " (" + e.what() + ")");
    }
    commit_file((dir / (tmp + ".vocab")).string(), (dir / "spm.vocab").string());
    commit_file((dir / (tmp + ".model")).string(), model.string());  // last: its presence marks a complete cache entry
    fs::remove(input);
    return model.string();
  }

  // A split's pairs as pieces, and the raw text of their targets (the references for BLEU).
  struct EncodedSplit {
    std::vector<Example> examples;
    std::vector<std::string> references;
  };

  EncodedSplit encode_split(Split split, bool skip_long) {
    const char* key = split == Split::Train ? "train" : split == Split::Valid ? "valid" : "test";
    auto corpus = data::read_parallel_corpus(t_.at(key));
    if (corpus.size() == 0) throw DataError("corpus '" + corpus.description + "' holds no sentence pairs");
    EncodedSplit out;
    int64_t too_long = 0;
    auto sources = tokenizer_->encode_batch(corpus.source);
    auto targets = tokenizer_->encode_batch(corpus.target);
    for (size_t i = 0; i < corpus.size(); ++i) {
      Example e{std::move(sources[i]), std::move(targets[i])};
      // +1 for EOS (source, target) / BOS (decoder input).
      const bool fits = static_cast<int64_t>(std::max(e.source.size(), e.target.size())) + 1 <= max_len_;
      if (!fits && skip_long) {
        ++too_long;
        continue;
      }
      if (!fits) {  // evaluation keeps every sentence, truncated to what the model can read
        e.source.resize(std::min<size_t>(e.source.size(), max_len_ - 1));
        e.target.resize(std::min<size_t>(e.target.size(), max_len_ - 1));
      }
      out.examples.push_back(std::move(e));
      out.references.push_back(corpus.target[i]);
    }
    spdlog::info("{}: {} pairs from {}{}{}", key, out.examples.size(), corpus.description,
                 corpus.skipped_empty ? ", skipped " + std::to_string(corpus.skipped_empty) + " with an empty side" : "",
                 too_long ? ", skipped " + std::to_string(too_long) + " longer than model.max_positions" : "");
    if (out.examples.empty()) throw DataError("no usable sentence pairs in '" + corpus.description + "'");
    return out;
  }

  // source (B, S) = tokens + EOS; prev_target (B, T) = BOS + tokens; target = tokens + EOS.
  Batch collate(const std::vector<Example>& examples, const std::vector<int64_t>& idx) const {
    int64_t S = 0, T = 0;
    for (auto i : idx) {
      S = std::max<int64_t>(S, examples[i].source.size() + 1);
      T = std::max<int64_t>(T, examples[i].target.size() + 1);
    }
    const int64_t B = idx.size(), pad = tokenizer_->pad_id();
    auto src = torch::full({B, S}, pad, torch::kLong);
    auto prev = torch::full({B, T}, pad, torch::kLong);
    auto tgt = torch::full({B, T}, pad, torch::kLong);
    auto sa = src.accessor<int64_t, 2>(), pa = prev.accessor<int64_t, 2>(), ta = tgt.accessor<int64_t, 2>();
    int64_t n_tokens = 0;
    for (int64_t b = 0; b < B; ++b) {
      const auto& e = examples[idx[b]];
      for (size_t j = 0; j < e.source.size(); ++j) sa[b][j] = e.source[j];
      sa[b][e.source.size()] = tokenizer_->eos_id();
      pa[b][0] = tokenizer_->bos_id();
      for (size_t j = 0; j < e.target.size(); ++j) pa[b][j + 1] = ta[b][j] = e.target[j];
      ta[b][e.target.size()] = tokenizer_->eos_id();
      n_tokens += e.target.size() + 1;
    }
    Batch batch;
    batch.tensors["source"] = to_device(src, ctx_.device);
    batch.tensors["prev_target"] = to_device(prev, ctx_.device);
    batch.tensors["target"] = to_device(tgt, ctx_.device);
    batch.n_items = B;
    batch.n_tokens = n_tokens;
    return batch;
  }

  decode::SearchOptions search_options() const {
    decode::SearchOptions o;
    o.bos = tokenizer_->bos_id();
    o.eos = tokenizer_->eos_id();
    for (int64_t id : {tokenizer_->pad_id(), tokenizer_->bos_id()})
      if (id >= 0) o.banned.push_back(id);
    return o;
  }

  struct Translation {
    std::string text;     // detokenized
    double log_prob = 0;  // log p(translation | source) under the model, EOS included (nats)
  };

  // Translates encoded sentences (pieces, no EOS; cut to what the model reads) in batches of
  // similar length; returns the translations in the input order, `nbest` per sentence (beam
  // search only), sentence-major.
  // Sampling, batch b draws from seed o.seed + b * 0x9E3779B97F4A7C15 (the golden ratio in 64
  // bits: neighbouring seeds give unrelated batches), b counted on from *batches when given, so
  // that no two batches of one `sample` share a seed.
  std::vector<Translation> translate(std::vector<std::vector<int32_t>> encoded, decode::SearchOptions o,
                                     bool sampling = false, int64_t nbest = 1, uint64_t* batches = nullptr) {
    model_->eval();
    torch::NoGradGuard no_grad;
    std::vector<data::LengthPair> lengths;
    for (auto& ids : encoded) {
      ids.resize(std::min<size_t>(ids.size(), max_len_ - 1));
      lengths.push_back({static_cast<int64_t>(ids.size()) + 1, 0});
    }
    std::vector<Translation> out(encoded.size() * nbest);
    const int64_t per_batch = t_.at("decode_batch");
    const double a = t_.at("max_len_a");
    const int64_t b = t_.at("max_len_b");
    uint64_t first_batch = 0;
    uint64_t& batch_no = batches ? *batches : first_batch;
    for (const auto& idx : data::make_batches(lengths, per_batch * max_len_, per_batch, false, 0, 0)) {
      const int64_t B = idx.size();
      int64_t S = 0;
      for (auto i : idx) S = std::max<int64_t>(S, encoded[i].size() + 1);
      auto src = torch::full({B, S}, static_cast<int64_t>(tokenizer_->pad_id()), torch::kLong);
      o.max_len.clear();
      for (int64_t r = 0; r < B; ++r) {
        const auto& ids = encoded[idx[r]];
        for (size_t j = 0; j < ids.size(); ++j) src[r][j] = ids[j];
        src[r][ids.size()] = tokenizer_->eos_id();
        o.max_len.push_back(max_output_tokens(static_cast<int64_t>(ids.size()), a, b, max_len_));
      }
      auto decoder = decoder_for(src.to(ctx_.device));
      // (output slot, hypothesis) of this batch: detokenized in one request to the tokenizer.
      std::vector<std::pair<size_t, const decode::Hypothesis*>> picked;
      std::vector<std::vector<decode::Hypothesis>> lists;
      std::vector<decode::Hypothesis> hyps;
      if (nbest > 1) {
        lists = decode::beam_search_nbest(*decoder, B, o, nbest);
        for (int64_t r = 0; r < B; ++r)
          for (int64_t j = 0; j < nbest; ++j)  // a short list repeats its last entry
            if (!lists[r].empty()) picked.push_back({idx[r] * nbest + j, &lists[r][std::min<size_t>(j, lists[r].size() - 1)]});
      } else {
        if (sampling) {
          decode::SearchOptions per_batch_options = o;
          per_batch_options.seed = o.seed + batch_no++ * 0x9E3779B97F4A7C15ULL;
          hyps = decode::sample(*decoder, B, per_batch_options);
        } else {
          hyps = o.beam > 1 ? decode::beam_search(*decoder, B, o) : decode::greedy(*decoder, B, o);
        }
        for (int64_t r = 0; r < B; ++r) picked.push_back({idx[r], &hyps[r]});
      }
      std::vector<std::vector<int32_t>> tokens;
      for (const auto& [slot, h] : picked) tokens.emplace_back(h->tokens.begin(), h->tokens.end());
      const auto texts = tokenizer_->decode_batch(tokens);
      for (size_t k = 0; k < picked.size(); ++k) out[picked[k].first] = Translation{texts[k], picked[k].second->score};
    }
    return out;
  }

  json t_;  // config.task
  RunContext ctx_;
  uint64_t seed_;
  std::unique_ptr<data::Tokenizer> tokenizer_;
  models::Transformer model_{nullptr};
  std::vector<models::Transformer> members_;  // --ensemble: other runs' models, decoding with model_
  int64_t max_len_ = 0;
  std::vector<Example> train_;
  std::vector<data::LengthPair> lengths_;
  std::vector<std::vector<int64_t>> batches_;  // this epoch's, as indices into train_
  EvalSplits<EncodedSplit> eval_splits_{[this](Split s) { return encode_split(s, /*skip_long=*/false); }};
};

}  // namespace

int64_t max_output_tokens(int64_t source_tokens, double max_len_a, int64_t max_len_b,
                          int64_t max_positions) {
  // In double, compared before the conversion: a huge max_len_a or max_len_b (up to int64's
  // limit) means "as long as the model allows", never an overflow to a negative length.
  const double tokens = std::floor(max_len_a * static_cast<double>(source_tokens + 1)) + static_cast<double>(max_len_b);
  return tokens >= static_cast<double>(max_positions) ? max_positions : static_cast<int64_t>(tokens);
}

LossOut transformer_loss(models::Transformer& model, const Batch& batch, double label_smoothing,
                         int64_t pad_id) {
  const auto& source = batch.tensors.at("source");
  auto states = model->decode_states(batch.tensors.at("prev_target"), model->encode(source));
  auto l = nn::linear_label_smoothed_cross_entropy(states.view({-1, states.size(-1)}),
                                                   model->output_weight(),
                                                   batch.tensors.at("target").view(-1),
                                                   label_smoothing, pad_id);
  LossOut out;
  out.loss = l.loss;
  out.sample_size = static_cast<double>(batch.n_tokens);
  out.sums["nll"] = l.nll;
  return out;
}

void register_translation(Registry& registry) {
  registry.add_task({"translation", "Text-to-text translation (parallel corpus, SentencePiece, BLEU, chrF)",
                     declare_translation_keys,
                     [](const json& config, const RunContext& ctx) -> std::unique_ptr<Task> {
                       return std::make_unique<TranslationTask>(config, ctx);
                     },
                     [](const json& config) {
                       std::vector<std::string> m = {"loss", "nll", "ppl"};
                       if (config["task"]["eval_bleu"].get<bool>()) m.insert(m.end(), {"bleu", "chrf"});
                       return m;
                     },
                     {"--input", "--stream", "--scores", "--beam", "--lenpen", "--temperature", "--top-k", "--top-p",
                      "--num", "--seed", "--out", "--score-pairs"},
                     /*ensembles=*/true});
  registry.add_arch({"transformer", "Encoder-decoder Transformer (Vaswani et al. 2017)",
                     {"translation"}, models::declare_transformer_keys, /*recomputable=*/true});
}

}  // namespace xformer::tasks
