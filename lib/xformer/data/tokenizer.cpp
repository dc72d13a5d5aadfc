// Tokenizer: SentencePiece in a helper process (xformer_spm, apps/spm_helper/main.cpp).
//
// Linking libsentencepiece into a LibTorch program crashes (two incompatible protobuf copies, see
// the helper's header comment). This file therefore never includes a SentencePiece header: it
// starts the helper with one end of a Unix socket as its descriptor 3 and exchanges the frames of
// spm_protocol.h with it. A loaded model keeps its helper for its lifetime; the helper ends when
// the socket closes, which also happens when this process dies in any way.
#include "xformer/data/tokenizer.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "xformer/core/error.h"
#include "xformer/core/subprocess.h"
#include "xformer/data/spm_protocol.h"

namespace xformer::data {
namespace {

namespace fs = std::filesystem;
namespace proto = spm_protocol;

constexpr const char* kHelperFileName = "xformer_spm";
constexpr const char* kHelperEnvVar = "XFORMER_SPM_HELPER";

// Training threads when TokenizerTrainOptions::num_threads is 0: a constant (SentencePiece's own
// default), never the machine's core count, because the thread count is stored in the .model
// file (trainer_spec), so a machine-dependent value would make models differ between machines.
// The pieces and scores themselves did not depend on it when measured (SentencePiece 0.1.97,
// 1/2/8/16 threads, unigram and bpe: the .model files differed only in that field), as each
// thread handles a fixed slice of the sentences. Extra threads on a small machine cost little.
constexpr int kDefaultTrainThreads = 16;

std::string helper_path() {
  const char* env = std::getenv(kHelperEnvVar);
  const bool from_env = env != nullptr && *env != '\0';
  const fs::path path = from_env ? fs::path(env) : fs::path(self_executable()).parent_path() / kHelperFileName;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    const std::string origin = from_env ? std::string(" (from ") + kHelperEnvVar + ")" : "";
    throw DataError("SentencePiece helper " + path.string() + origin + " does not exist (build the " +
                    kHelperFileName + " target, or set " + kHelperEnvVar + " to its path)");
  }
  return path.string();
}

// A running helper: its process and our end of the socket.
class HelperProcess {
 public:
  // `terminate_with_parent`: for a helper that the calling thread waits for (training); a
  // serving helper must outlive the thread that started it, and ends when the socket closes.
  HelperProcess(const std::string& mode, const std::vector<std::string>& args, bool terminate_with_parent)
      : path_(helper_path()) {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
      throw DataError(std::string("cannot start the SentencePiece helper: socketpair: ") + std::strerror(errno));
    SpawnOptions options;
    options.channel_fd = fds[1];
    options.stdout_to_stderr = true;
    options.terminate_with_parent = terminate_with_parent;
    std::vector<std::string> argv = {path_, mode, std::to_string(proto::kVersion)};
    argv.insert(argv.end(), args.begin(), args.end());
    try {
      pid_ = spawn_process(argv, options);
    } catch (...) {
      close(fds[0]);
      close(fds[1]);
      throw;
    }
    close(fds[1]);
    fd_ = fds[0];
  }
  HelperProcess(const HelperProcess&) = delete;
  HelperProcess& operator=(const HelperProcess&) = delete;
  ~HelperProcess() { stop(/*kill_it=*/true); }

  // Sends a request (or nothing, when empty) and returns the reply's payload; DataError with the
  // helper's message, or with how it ended when it went away.
  std::string exchange(const std::string& request, const std::string& what) {
    if (request.size() > proto::kMaxFrameBytes) {  // refused here, so the helper keeps serving
      throw DataError(what + ": a request of " + std::to_string(request.size()) +
                      " bytes is larger than the SentencePiece helper accepts (" +
                      std::to_string(proto::kMaxFrameBytes) + ")");
    }
    std::string reply, failure;
    bool replied = false;
    try {
      if (!request.empty()) proto::send_frame(fd_, request);
      replied = proto::receive_frame(fd_, reply);
    } catch (const std::exception& e) {
      failure = e.what();  // the connection is out of step now: the helper is stopped below
    }
    if (!replied || reply.empty()) {
      throw DataError(what + ": the SentencePiece helper " + path_ + " " + stop(/*kill_it=*/!failure.empty()) +
                      (failure.empty() ? "" : " after " + failure) + " (its messages are on standard error)");
    }
    if (reply[0] != proto::kReplyOk) throw DataError(what + ": " + reply.substr(1));
    return reply.substr(1);
  }

  // Ends the helper (closing the socket stops a healthy one) and reaps it; how it ended, in words.
  std::string stop(bool kill_it) {
    if (pid_ <= 0) return "has stopped";
    if (fd_ >= 0) close(std::exchange(fd_, -1));
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == 0) {  // still running (never signal a pid that is no longer our child)
      if (kill_it) kill(pid_, SIGKILL);
      while ((r = waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
      }
    }
    pid_ = -1;
    return r <= 0 ? "has stopped" : describe_exit_status(status);
  }

 private:
  std::string path_;
  pid_t pid_ = -1;
  int fd_ = -1;
};

std::string format_double(double v) {
  std::ostringstream out;
  out.imbue(std::locale::classic());
  out.precision(17);
  out << v;
  return out.str();
}

// Texts and id lists as frame fields, for Tokenizer::Helper::batched.
size_t item_bytes(const std::string& text) { return text.size(); }
size_t item_bytes(const std::vector<int32_t>& ids) { return ids.size() * sizeof(int32_t); }
void write_item(proto::Writer& w, const std::string& text) { w.bytes(text); }
void write_item(proto::Writer& w, const std::vector<int32_t>& ids) { w.ints(ids); }
template <typename T>
T read_item(proto::Reader& r);
template <>
std::string read_item(proto::Reader& r) { return r.bytes(); }
template <>
std::vector<int32_t> read_item(proto::Reader& r) { return r.ints(); }

}  // namespace

// A loaded model: its serving helper and its pieces (id_to_piece needs no round trip).
class Tokenizer::Helper {
 public:
  Helper(std::unique_ptr<HelperProcess> process, std::vector<std::string> pieces)
      : pieces(std::move(pieces)), process_(std::move(process)) {}
  // One result per input, in order: the inputs travel as requests of tag `op`, each a slice of
  // at most kBatchEntries of them and about kBatchBytes bytes (at least one input).
  template <typename Out, typename In>
  std::vector<Out> batched(char op, const std::vector<In>& inputs, const std::string& what) const {
    std::vector<Out> out;
    out.reserve(inputs.size());
    for (size_t begin = 0, end; begin < inputs.size(); begin = end) {
      size_t bytes = 0;
      for (end = begin; end < inputs.size() && end - begin < proto::kBatchEntries &&
                        (end == begin || bytes + item_bytes(inputs[end]) <= proto::kBatchBytes);
           ++end)
        bytes += item_bytes(inputs[end]);
      proto::Writer w(op);
      w.u32(static_cast<uint32_t>(end - begin));
      for (size_t i = begin; i < end; ++i) write_item(w, inputs[i]);
      std::string reply;
      {
        std::lock_guard<std::mutex> lock(mutex_);  // one request at a time on the socket
        reply = process_->exchange(w.body(), what);
      }
      try {
        proto::Reader r(reply);
        for (size_t i = begin; i < end; ++i) out.push_back(read_item<Out>(r));
        if (!r.done()) throw std::runtime_error("unexpected bytes at the end of a reply");
      } catch (const std::exception& e) {
        throw DataError(what + ": " + e.what());
      }
    }
    return out;
  }
  const std::vector<std::string> pieces;

 private:
  std::unique_ptr<HelperProcess> process_;
  mutable std::mutex mutex_;
};

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
  std::vector<std::string> args = {std::to_string(static_cast<uint32_t>(options.seed)),
                                   options.verbose ? "0" : "2"};
  for (const auto& [key, value] : kwargs) args.push_back(key + "=" + value);
  HelperProcess("train", args, /*terminate_with_parent=*/true)
      .exchange("", "tokenizer training for " + options.model_prefix + " failed");
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
  const std::string what = "cannot load tokenizer model " + model_path;
  auto process = std::make_unique<HelperProcess>("serve", std::vector<std::string>{model_path}, false);
  const std::string info = process->exchange("", what);
  int32_t ids[4];
  std::vector<std::string> pieces;
  try {
    proto::Reader r(info);
    for (int32_t& id : ids) id = r.i32();
    const uint32_t n = r.u32();
    for (uint32_t i = 0; i < n; ++i) pieces.push_back(r.bytes());
    if (!r.done()) throw std::runtime_error("unexpected bytes after the model's pieces");
  } catch (const std::exception& e) {
    throw DataError(what + ": " + e.what());
  }
  Tokenizer tok(std::make_unique<Helper>(std::move(process), std::move(pieces)));
  tok.model_path_ = model_path;
  tok.pad_id_ = ids[0], tok.unk_id_ = ids[1], tok.bos_id_ = ids[2], tok.eos_id_ = ids[3];
  // Every SentencePiece model has pieces and an unknown piece.
  if (tok.vocab_size_ <= 0 || tok.unk_id_ < 0 || tok.unk_id_ >= tok.vocab_size_) {
    throw DataError("tokenizer model " + model_path + " is unusable: " + std::to_string(tok.vocab_size_) +
                    " pieces, unknown-piece id " + std::to_string(tok.unk_id_));
  }
  return tok;
}

Tokenizer::Tokenizer(std::unique_ptr<Helper> helper)
    : helper_(std::move(helper)), vocab_size_(static_cast<int32_t>(helper_->pieces.size())) {}

Tokenizer::Tokenizer(Tokenizer&& other) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&& other) noexcept = default;
Tokenizer::~Tokenizer() = default;

const Tokenizer::Helper& Tokenizer::helper() const {
  if (helper_ == nullptr) throw std::logic_error("use of a moved-from Tokenizer");
  return *helper_;
}

std::vector<int32_t> Tokenizer::encode(const std::string& text) const {
  return std::move(encode_batch({text}).front());
}

std::vector<std::vector<int32_t>> Tokenizer::encode_batch(const std::vector<std::string>& texts) const {
  return helper().batched<std::vector<int32_t>>(proto::kEncode, texts, "tokenizer " + model_path_ + " cannot encode text");
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  return std::move(decode_batch({ids}).front());
}

std::vector<std::string> Tokenizer::decode_batch(const std::vector<std::vector<int32_t>>& id_lists) const {
  const Helper& h = helper();
  const std::string what = "tokenizer " + model_path_ + " cannot decode ids";
  // pad, bos and eos dropped; an id outside the vocabulary refused before anything is sent.
  std::vector<std::vector<int32_t>> kept(id_lists.size());
  for (size_t i = 0; i < id_lists.size(); ++i) {
    kept[i].reserve(id_lists[i].size());
    for (const int32_t id : id_lists[i]) {
      if (id == pad_id_ || id == bos_id_ || id == eos_id_) continue;
      if (id < 0 || id >= vocab_size_) {
        throw DataError(what + ": token id " + std::to_string(id) + " is out of range [0, " +
                        std::to_string(vocab_size_) + ")");
      }
      kept[i].push_back(id);
    }
  }
  return h.batched<std::string>(proto::kDecode, kept, what);
}

std::string Tokenizer::id_to_piece(int32_t id) const {
  const Helper& h = helper();
  if (id < 0 || id >= vocab_size_) {
    throw DataError("tokenizer " + model_path_ + ": id " + std::to_string(id) +
                    " is outside the vocabulary [0, " + std::to_string(vocab_size_) + ")");
  }
  return h.pieces[static_cast<size_t>(id)];
}

}  // namespace xformer::data
