// SentencePiece subword tokenizer (training, loading, encode/decode).
//
// SentencePiece is not linked into xformer: Debian's libsentencepiece carries its own protobuf,
// which clashes with the one LibTorch brings and crashes the process. All SentencePiece work
// runs in a helper process instead, xformer_spm (apps/spm_helper), which links SentencePiece
// and nothing of LibTorch: one short-lived process per training, one per loaded model, answering
// over a Unix socket. The helper is looked up in $XFORMER_SPM_HELPER, else next to the running
// executable. This header deliberately includes neither LibTorch nor SentencePiece.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace xformer::data {

struct TokenizerTrainOptions {
  std::vector<std::string> input_files;  // plain text, one sentence per line
  std::string model_prefix;              // writes model_prefix.model and model_prefix.vocab
  int vocab_size = 8000;                 // including the 4 special pieces
  std::string model_type = "unigram";    // unigram | bpe | word | char
  double character_coverage = 1.0;        // SentencePiece accepts [0.98, 1]
  int64_t input_sentence_size = 0;  // > 0: train on a reproducible sample of this many lines
  int num_threads = 0;              // 0: a fixed default (not the machine's core count)
  int seed = 0;                     // SentencePiece's random seed; fixed, so nothing is unseeded
  bool verbose = false;             // show SentencePiece's training log on stderr
};

// A loaded SentencePiece model (its helper process). Special ids of models trained by train():
// pad 0, unk 1, bos 2, eos 3. Move-only; encode/decode/id_to_piece are const and safe to call
// from several threads at once (requests to the helper take turns).
class Tokenizer {
 public:
  // Trains a model and writes PREFIX.model and PREFIX.vocab (creating PREFIX's directory).
  // The same inputs and options give a byte-identical model. ConfigError for bad options,
  // DataError for unreadable input or a failed training.
  static void train(const TokenizerTrainOptions& options);
  // DataError naming the path when the file is missing or not a SentencePiece model.
  static Tokenizer load(const std::string& model_path);

  Tokenizer(Tokenizer&& other) noexcept;
  Tokenizer& operator=(Tokenizer&& other) noexcept;
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;
  ~Tokenizer();

  // Text -> ids, without bos/eos (the caller adds them where wanted). Text is normalized first
  // (NFKC, whitespace runs collapsed), so decode(encode(s)) gives the normalized s.
  std::vector<int32_t> encode(const std::string& text) const;
  // encode() of every text, in far fewer round trips to the helper: for whole corpora.
  std::vector<std::vector<int32_t>> encode_batch(const std::vector<std::string>& texts) const;
  // Ids -> text. pad, bos and eos ids are dropped; DataError for an id outside the vocabulary.
  std::string decode(const std::vector<int32_t>& ids) const;
  // decode() of every id list, in far fewer round trips to the helper.
  std::vector<std::string> decode_batch(const std::vector<std::vector<int32_t>>& id_lists) const;

  int32_t vocab_size() const { return vocab_size_; }
  int32_t pad_id() const { return pad_id_; }
  int32_t unk_id() const { return unk_id_; }
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  // The piece of an id ("▁" marks the start of a word); DataError when out of range.
  std::string id_to_piece(int32_t id) const;
  const std::string& model_path() const { return model_path_; }

 private:
  class Helper;
  explicit Tokenizer(std::unique_ptr<Helper> helper);
  const Helper& helper() const;

  std::unique_ptr<Helper> helper_;  // the process and the model's pieces
  std::string model_path_;
  int32_t vocab_size_ = 0;
  int32_t pad_id_ = -1;
  int32_t unk_id_ = -1;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
};

}  // namespace xformer::data
