// Tokenizer: SentencePiece behind a dlopen'ed C shim.
//
// Linking libsentencepiece into a LibTorch program crashes during static initialisation (two
// incompatible protobuf copies, see spm_shim.cpp). This file therefore never includes a
// SentencePiece header: it loads libxformer_spm.so once per process into a link namespace of
// its own (dlmopen(LM_ID_NEWLM)), resolves the shim's C functions, checks the
// shim's API version, and wraps a loaded model in a move-only RAII object.
#include "xformer/data/tokenizer.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include "xformer/core/error.h"

namespace xformer::data {
namespace {

namespace fs = std::filesystem;

// Must equal kApiVersion in spm_shim.cpp.
constexpr int32_t kShimApiVersion = 1;
constexpr const char* kShimFileName = "libxformer_spm.so";
constexpr const char* kShimEnvVar = "XFORMER_SPM_LIB";

// Training threads when TokenizerTrainOptions::num_threads is 0: a constant (SentencePiece's own
// default), never the machine's core count, because the thread count is stored in the .model
// file (trainer_spec), so a machine-dependent value would make models differ between machines.
// The pieces and scores themselves did not depend on it when measured (SentencePiece 0.1.97,
// 1/2/8/16 threads, unigram and bpe: the .model files differed only in that field), as each
// thread handles a fixed slice of the sentences. Extra threads on a small machine cost little.
constexpr int kDefaultTrainThreads = 16;

struct Shim {
  std::string path;
  int32_t (*api_version)();
  int32_t (*train)(const char* const*, const char* const*, size_t, uint32_t, int32_t, char*,
                   size_t);
  void* (*load)(const char*, char*, size_t);
  void (*free)(void*);
  int64_t (*encode)(const void*, const char*, size_t, int32_t*, size_t, char*, size_t);
  int64_t (*decode)(const void*, const int32_t*, size_t, char*, size_t, char*, size_t);
  int32_t (*piece_count)(const void*);
  int32_t (*pad_id)(const void*);
  int32_t (*unk_id)(const void*);
  int32_t (*bos_id)(const void*);
  int32_t (*eos_id)(const void*);
  int64_t (*id_to_piece)(const void*, int32_t, char*, size_t);
};

std::string executable_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

std::string shim_path() {
  const char* env = std::getenv(kShimEnvVar);
  if (env != nullptr && *env != '\0') return env;
  const std::string dir = executable_dir();
  if (dir.empty()) {
    throw DataError(std::string("SentencePiece shim ") + kShimFileName + " not found: " +
                    kShimEnvVar + " is not set and /proc/self/exe cannot be read; set " +
                    kShimEnvVar + " to the library's path");
  }
  const fs::path candidate = fs::path(dir) / kShimFileName;
  std::error_code ec;
  if (!fs::exists(candidate, ec)) {
    throw DataError(std::string("SentencePiece shim ") + kShimFileName + " not found: " +
                    kShimEnvVar + " is not set and " + candidate.string() +
                    " does not exist (build the xformer_spm target, or set " + kShimEnvVar +
                    " to the library's path)");
  }
  return candidate.string();
}

template <typename Fn>
void resolve(void* lib, const Shim& shim, const char* name, Fn& fn) {
  dlerror();
  void* sym = dlsym(lib, name);
  if (sym == nullptr) {
    const char* why = dlerror();
    dlclose(lib);
    throw DataError("SentencePiece shim " + shim.path + " lacks symbol " + name + " (" +
                    (why != nullptr ? why : "null") + "); rebuild the xformer_spm target");
  }
  fn = reinterpret_cast<Fn>(sym);
}

Shim open_shim() {
  Shim shim{};
  shim.path = shim_path();
  dlerror();
  // A new link namespace: the shim, libsentencepiece (with its embedded protobuf) and their own
  // libstdc++ see none of the process' symbols, and the process sees none of theirs, whatever
  // the LibTorch next to them exports (RTLD_LOCAL | RTLD_DEEPBIND still shares the process'
  // global scope and its unique symbols).
  void* lib = nullptr;
  try {  // the libraries' static initialisers run here, and may throw
    lib = dlmopen(LM_ID_NEWLM, shim.path.c_str(), RTLD_NOW | RTLD_LOCAL);
  } catch (const std::exception& e) {
    throw DataError("cannot load SentencePiece shim " + shim.path + ": initialisation failed: " + e.what());
  }
  if (lib == nullptr) {
    const char* why = dlerror();
    throw DataError("cannot load SentencePiece shim " + shim.path + ": " +
                    (why != nullptr ? why : "unknown dlopen error"));
  }
  resolve(lib, shim, "xf_spm_api_version", shim.api_version);
  const int32_t version = shim.api_version();
  if (version != kShimApiVersion) {
    dlclose(lib);
    throw DataError("SentencePiece shim " + shim.path + " has API version " +
                    std::to_string(version) + ", expected " + std::to_string(kShimApiVersion) +
                    "; rebuild the xformer_spm target");
  }
  resolve(lib, shim, "xf_spm_train", shim.train);
  resolve(lib, shim, "xf_spm_load", shim.load);
  resolve(lib, shim, "xf_spm_free", shim.free);
  resolve(lib, shim, "xf_spm_encode", shim.encode);
  resolve(lib, shim, "xf_spm_decode", shim.decode);
  resolve(lib, shim, "xf_spm_piece_count", shim.piece_count);
  resolve(lib, shim, "xf_spm_pad_id", shim.pad_id);
  resolve(lib, shim, "xf_spm_unk_id", shim.unk_id);
  resolve(lib, shim, "xf_spm_bos_id", shim.bos_id);
  resolve(lib, shim, "xf_spm_eos_id", shim.eos_id);
  resolve(lib, shim, "xf_spm_id_to_piece", shim.id_to_piece);
  // The library stays loaded for the life of the process (never dlclose'd on success).
  return shim;
}

// Loaded on first use; a failed load throws and is retried by the next call.
const Shim& shim() {
  static const Shim instance = open_shim();
  return instance;
}

// Error buffer for one shim call.
struct ErrBuf {
  char text[1024] = {0};
  std::string str() const { return text[0] != '\0' ? std::string(text) : "unknown error"; }
};

std::string format_double(double v) {
  std::ostringstream out;
  out.imbue(std::locale::classic());
  out.precision(17);
  out << v;
  return out.str();
}

// SentencePiece's random seed and log level are process-wide: one training at a time.
std::mutex& train_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace

void Tokenizer::train(const TokenizerTrainOptions& options) {
  static const char* const kModelTypes[] = {"unigram", "bpe", "word", "char"};
  if (options.input_files.empty()) throw ConfigError("tokenizer training needs input files");
  if (options.model_prefix.empty()) throw ConfigError("tokenizer training needs a model prefix");
  if (options.vocab_size <= 4) {
    throw ConfigError("tokenizer vocab_size must be > 4 (4 special pieces), got " +
                      std::to_string(options.vocab_size));
  }
  bool known_type = false;
  for (const char* t : kModelTypes) known_type = known_type || options.model_type == t;
  if (!known_type) {
    throw ConfigError("tokenizer model_type must be unigram, bpe, word or char, got '" +
                      options.model_type + "'");
  }
  // SentencePiece itself refuses values outside [0.98, 1].
  if (!(options.character_coverage >= 0.98 && options.character_coverage <= 1.0)) {
    throw ConfigError("tokenizer character_coverage must be in [0.98, 1], got " +
                      format_double(options.character_coverage));
  }
  if (options.input_sentence_size < 0) {
    throw ConfigError("tokenizer input_sentence_size must be >= 0, got " +
                      std::to_string(options.input_sentence_size));
  }
  if (options.num_threads < 0) {
    throw ConfigError("tokenizer num_threads must be >= 0, got " +
                      std::to_string(options.num_threads));
  }

  std::string inputs;
  for (const auto& file : options.input_files) {
    // SentencePiece takes its inputs as one comma-separated list.
    if (file.find(',') != std::string::npos) {
      throw ConfigError("tokenizer input file name must not contain ',': " + file);
    }
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) {
      throw DataError("tokenizer input file " + file + " does not exist or is not a file");
    }
    if (!inputs.empty()) inputs += ',';
    inputs += file;
  }
  const fs::path prefix(options.model_prefix);
  if (prefix.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(prefix.parent_path(), ec);
    if (ec) {
      throw DataError("cannot create directory " + prefix.parent_path().string() + ": " +
                      ec.message());
    }
  }

  // Reproducibility: the same input files (same paths) and options give a byte-identical .model
  // file, also across processes and machines. What that takes with SentencePiece 0.1.97:
  //  * num_threads is fixed (see kDefaultTrainThreads); it is recorded in the model.
  //  * input_sentence_size sampling uses SentencePiece's fixed internal seed; options.seed is
  //    passed on as SentencePiece's random seed anyway (otherwise taken from std::random_device)
  //    for the parts that use it, so nothing random is left unseeded.
  //  * The model also records input and model_prefix, so different paths give different bytes.
  //  * Special ids are fixed: pad 0, unk 1, bos 2, eos 3.
  const int threads = options.num_threads > 0 ? options.num_threads : kDefaultTrainThreads;
  const std::vector<std::pair<std::string, std::string>> kwargs = {
      {"input", inputs},
      {"model_prefix", options.model_prefix},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"model_type", options.model_type},
      {"character_coverage", format_double(options.character_coverage)},
      {"input_sentence_size", std::to_string(options.input_sentence_size)},
      {"shuffle_input_sentence", "true"},
      {"num_threads", std::to_string(threads)},
      {"pad_id", "0"},
      {"unk_id", "1"},
      {"bos_id", "2"},
      {"eos_id", "3"},
  };
  std::vector<const char*> keys, values;
  for (const auto& kv : kwargs) {
    keys.push_back(kv.first.c_str());
    values.push_back(kv.second.c_str());
  }

  const Shim& s = shim();
  ErrBuf err;
  int32_t rc;
  {
    std::lock_guard<std::mutex> lock(train_mutex());
    rc = s.train(keys.data(), values.data(), keys.size(), static_cast<uint32_t>(options.seed),
                 options.verbose ? 0 : 2, err.text, sizeof(err.text));
  }
  if (rc != 0) {
    throw DataError("tokenizer training for " + options.model_prefix + " failed: " + err.str());
  }
  std::error_code ec;
  if (!fs::is_regular_file(options.model_prefix + ".model", ec)) {
    throw DataError("tokenizer training did not write " + options.model_prefix + ".model");
  }
}

Tokenizer Tokenizer::load(const std::string& model_path) {
  std::error_code ec;
  if (!fs::is_regular_file(model_path, ec)) {
    throw DataError("tokenizer model " + model_path + " does not exist or is not a file");
  }
  const Shim& s = shim();
  ErrBuf err;
  void* handle = s.load(model_path.c_str(), err.text, sizeof(err.text));
  if (handle == nullptr) {
    throw DataError("cannot load tokenizer model " + model_path + ": " + err.str());
  }
  return Tokenizer(handle, model_path);
}

Tokenizer::Tokenizer(void* handle, std::string model_path)
    : handle_(handle), model_path_(std::move(model_path)) {
  const Shim& s = shim();
  vocab_size_ = s.piece_count(handle_);
  pad_id_ = s.pad_id(handle_);
  unk_id_ = s.unk_id(handle_);
  bos_id_ = s.bos_id(handle_);
  eos_id_ = s.eos_id(handle_);
  // Every SentencePiece model has pieces and an unknown piece; -1 means the shim caught an error.
  if (vocab_size_ <= 0 || unk_id_ < 0) {
    s.free(std::exchange(handle_, nullptr));
    throw DataError("tokenizer model " + model_path_ + " is unusable: " + std::to_string(vocab_size_) +
                    " pieces, unknown-piece id " + std::to_string(unk_id_));
  }
}

Tokenizer::Tokenizer(Tokenizer&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)),
      model_path_(std::move(other.model_path_)),
      vocab_size_(other.vocab_size_),
      pad_id_(other.pad_id_),
      unk_id_(other.unk_id_),
      bos_id_(other.bos_id_),
      eos_id_(other.eos_id_) {}

Tokenizer& Tokenizer::operator=(Tokenizer&& other) noexcept {
  if (this != &other) {
    reset();
    handle_ = std::exchange(other.handle_, nullptr);
    model_path_ = std::move(other.model_path_);
    vocab_size_ = other.vocab_size_;
    pad_id_ = other.pad_id_;
    unk_id_ = other.unk_id_;
    bos_id_ = other.bos_id_;
    eos_id_ = other.eos_id_;
  }
  return *this;
}

Tokenizer::~Tokenizer() { reset(); }

void Tokenizer::reset() noexcept {
  // A handle only exists once the shim is loaded, so shim() cannot throw here.
  if (handle_ != nullptr) shim().free(handle_);
  handle_ = nullptr;
}

const void* Tokenizer::checked_handle() const {
  if (handle_ == nullptr) throw std::logic_error("use of a moved-from Tokenizer");
  return handle_;
}

std::vector<int32_t> Tokenizer::encode(const std::string& text) const {
  const void* h = checked_handle();
  const Shim& s = shim();
  // Usually fewer pieces than bytes; NFKC normalization can expand text, hence the retry.
  std::vector<int32_t> ids(text.size() + 16);
  ErrBuf err;
  int64_t n = s.encode(h, text.data(), text.size(), ids.data(), ids.size(), err.text,
                       sizeof(err.text));
  if (n >= 0 && static_cast<size_t>(n) > ids.size()) {
    ids.resize(static_cast<size_t>(n));
    n = s.encode(h, text.data(), text.size(), ids.data(), ids.size(), err.text,
                 sizeof(err.text));
  }
  if (n < 0 || static_cast<size_t>(n) > ids.size()) {
    throw DataError("tokenizer " + model_path_ + " cannot encode text: " + err.str());
  }
  ids.resize(static_cast<size_t>(n));
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  const void* h = checked_handle();
  const Shim& s = shim();
  std::vector<int32_t> kept;
  kept.reserve(ids.size());
  for (const int32_t id : ids) {
    if (id == pad_id_ || id == bos_id_ || id == eos_id_) continue;
    kept.push_back(id);
  }
  std::string text(kept.size() * 8 + 64, '\0');
  ErrBuf err;
  int64_t n = s.decode(h, kept.data(), kept.size(), text.data(), text.size(), err.text,
                       sizeof(err.text));
  if (n >= 0 && static_cast<size_t>(n) > text.size()) {
    text.resize(static_cast<size_t>(n));
    n = s.decode(h, kept.data(), kept.size(), text.data(), text.size(), err.text,
                 sizeof(err.text));
  }
  if (n < 0 || static_cast<size_t>(n) > text.size()) {
    throw DataError("tokenizer " + model_path_ + " cannot decode ids: " + err.str());
  }
  text.resize(static_cast<size_t>(n));
  return text;
}

std::string Tokenizer::id_to_piece(int32_t id) const {
  const void* h = checked_handle();
  const Shim& s = shim();
  std::string piece(64, '\0');
  int64_t n = s.id_to_piece(h, id, piece.data(), piece.size());
  if (n >= 0 && static_cast<size_t>(n) > piece.size()) {
    piece.resize(static_cast<size_t>(n));
    n = s.id_to_piece(h, id, piece.data(), piece.size());
  }
  if (n < 0 || static_cast<size_t>(n) > piece.size()) {
    throw DataError("tokenizer " + model_path_ + ": id " + std::to_string(id) +
                    " is outside the vocabulary [0, " + std::to_string(vocab_size_) + ")");
  }
  piece.resize(static_cast<size_t>(n));
  return piece;
}

}  // namespace xformer::data
