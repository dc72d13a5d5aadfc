// SentencePiece shim: the only code in xformer that links libsentencepiece.
//
// Why a separate library: Debian's libsentencepiece embeds its own copy of protobuf (3.14) and
// exports those symbols, while LibTorch pulls in the system libprotobuf (3.21). A program that
// links both directly crashes before main(): libprotobuf's static initialisers bind to
// libsentencepiece's protobuf internals and segfault (checked with Debian's libsentencepiece
// 0.1.97 and libtorch 1.13.1: SIGSEGV in ReflectionOps::FindInitializationErrors, called from
// libsentencepiece's MergeFromImpl during DescriptorPool::InternalAddGeneratedFile).
//
// So this file becomes libxformer_spm.so, which is never linked into an executable. The
// Tokenizer (tokenizer.cpp) loads it with dlmopen(LM_ID_NEWLM): in a link namespace of its own,
// with its own libstdc++, the shim and libsentencepiece share no symbol with the process. As
// that namespace has a C++ runtime of its own, no exception may leave this file either.
//
// The interface is plain C (no C++ types, no exceptions cross it): every failure is reported as
// a return value plus a message written into a caller-provided buffer. Bump kApiVersion whenever
// a signature or a meaning changes; the loader refuses a shim with another version.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <unordered_map>
#include <vector>

// Exported by libsentencepiece (declared in its internal common.h, not in the public headers).
namespace sentencepiece {
namespace logging {
int GetMinLogLevel();
void SetMinLogLevel(int v);
}  // namespace logging
}  // namespace sentencepiece

#define XF_SPM_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr int32_t kApiVersion = 1;

void set_error(char* err, size_t errlen, const std::string& message) {
  if (err == nullptr || errlen == 0) return;
  const size_t n = std::min(message.size(), errlen - 1);
  std::memcpy(err, message.data(), n);
  err[n] = '\0';
}

void clear_error(char* err, size_t errlen) {
  if (err != nullptr && errlen > 0) err[0] = '\0';
}

// Copies `s` into out[0..cap) when it fits (plus a terminating NUL when there is room) and
// returns the number of bytes of `s`, so that a caller can retry with a larger buffer.
int64_t copy_out(const std::string& s, char* out, size_t cap) {
  if (out != nullptr && s.size() <= cap) {
    std::memcpy(out, s.data(), s.size());
    if (s.size() < cap) out[s.size()] = '\0';
  }
  return static_cast<int64_t>(s.size());
}

const sentencepiece::SentencePieceProcessor* processor(const void* handle) {
  return static_cast<const sentencepiece::SentencePieceProcessor*>(handle);
}

// Restores SentencePiece's global log level when training ends, however it ends.
class LogLevelGuard {
 public:
  explicit LogLevelGuard(int level) : saved_(sentencepiece::logging::GetMinLogLevel()) {
    sentencepiece::logging::SetMinLogLevel(level);
  }
  ~LogLevelGuard() { sentencepiece::logging::SetMinLogLevel(saved_); }
  LogLevelGuard(const LogLevelGuard&) = delete;
  LogLevelGuard& operator=(const LogLevelGuard&) = delete;

 private:
  int saved_;
};

}  // namespace

// The version of this interface; the loader compares it with the version it was written for.
XF_SPM_EXPORT int32_t xf_spm_api_version(void) { return kApiVersion; }

// Trains a model with SentencePieceTrainer. The options are n key/value pairs, exactly the
// trainer's flags without the leading "--" (input, model_prefix, vocab_size, ...). Pairs are used
// instead of one "--k=v --k=v" string because SentencePiece splits such a string at every space,
// which breaks paths that contain one. `random_seed` seeds SentencePiece's random generator (used
// when sampling input sentences). `min_log_level` is SentencePiece's log threshold during
// training: 0 = info (progress), 1 = warnings, 2 = errors only. Returns 0 on success, -1 on
// failure with the reason in err.
XF_SPM_EXPORT int32_t xf_spm_train(const char* const* keys, const char* const* values, size_t n,
                                   uint32_t random_seed, int32_t min_log_level, char* err,
                                   size_t errlen) {
  clear_error(err, errlen);
  try {
    std::unordered_map<std::string, std::string> kwargs;
    for (size_t i = 0; i < n; ++i) {
      if (keys == nullptr || values == nullptr || keys[i] == nullptr || values[i] == nullptr) {
        set_error(err, errlen, "null training option");
        return -1;
      }
      kwargs[keys[i]] = values[i];
    }
    // 0xFFFFFFFF is SentencePiece's "no seed, use std::random_device" marker.
    if (random_seed == 0xFFFFFFFFu) random_seed = 0xFFFFFFFEu;
    sentencepiece::SetRandomGeneratorSeed(random_seed);
    LogLevelGuard quiet(min_log_level);
    const auto status = sentencepiece::SentencePieceTrainer::Train(kwargs);
    if (!status.ok()) {
      set_error(err, errlen, status.ToString());
      return -1;
    }
    return 0;
  } catch (const std::exception& e) {
    set_error(err, errlen, std::string("SentencePiece training failed: ") + e.what());
  } catch (...) {
    set_error(err, errlen, "SentencePiece training failed with an unknown exception");
  }
  return -1;
}

// Loads a .model file. Returns an opaque handle (release it with xf_spm_free) or nullptr with
// the reason in err.
XF_SPM_EXPORT void* xf_spm_load(const char* path, char* err, size_t errlen) {
  clear_error(err, errlen);
  try {
    if (path == nullptr) {
      set_error(err, errlen, "null model path");
      return nullptr;
    }
    auto* sp = new sentencepiece::SentencePieceProcessor();
    const auto status = sp->Load(path);
    if (!status.ok()) {
      delete sp;
      set_error(err, errlen, status.ToString());
      return nullptr;
    }
    return sp;
  } catch (const std::exception& e) {
    set_error(err, errlen, std::string("loading the SentencePiece model failed: ") + e.what());
  } catch (...) {
    set_error(err, errlen, "loading the SentencePiece model failed with an unknown exception");
  }
  return nullptr;
}

XF_SPM_EXPORT void xf_spm_free(void* handle) {
  try {
    delete static_cast<sentencepiece::SentencePieceProcessor*>(handle);
  } catch (...) {  // destructors should not throw; if one does, it stays here
  }
}

// Encodes len bytes of text into ids. Writes the ids into out when they fit in cap entries and
// always returns how many there are (retry with a larger buffer when that exceeds cap), or -1 on
// failure with the reason in err. Safe to call concurrently on one handle.
XF_SPM_EXPORT int64_t xf_spm_encode(const void* handle, const char* text, size_t len,
                                    int32_t* out, size_t cap, char* err, size_t errlen) {
  clear_error(err, errlen);
  try {
    if (handle == nullptr || (text == nullptr && len > 0)) {
      set_error(err, errlen, "null tokenizer handle or text");
      return -1;
    }
    std::vector<int> ids;
    const auto status =
        processor(handle)->Encode(absl::string_view(text == nullptr ? "" : text, len), &ids);
    if (!status.ok()) {
      set_error(err, errlen, status.ToString());
      return -1;
    }
    if (out != nullptr && ids.size() <= cap) std::copy(ids.begin(), ids.end(), out);
    return static_cast<int64_t>(ids.size());
  } catch (const std::exception& e) {
    set_error(err, errlen, std::string("encoding failed: ") + e.what());
  } catch (...) {
    set_error(err, errlen, "encoding failed with an unknown exception");
  }
  return -1;
}

// Decodes n ids into UTF-8 text. Writes the text into out when it fits in cap bytes (NUL
// terminated when there is room) and always returns its length in bytes (retry with a larger
// buffer when that exceeds cap), or -1 on failure (e.g. an id out of range) with the reason in
// err. Control ids (pad, bos, eos) decode to nothing. Safe to call concurrently on one handle.
XF_SPM_EXPORT int64_t xf_spm_decode(const void* handle, const int32_t* ids, size_t n, char* out,
                                    size_t cap, char* err, size_t errlen) {
  clear_error(err, errlen);
  try {
    if (handle == nullptr || (ids == nullptr && n > 0)) {
      set_error(err, errlen, "null tokenizer handle or ids");
      return -1;
    }
    const auto* sp = processor(handle);
    const int size = sp->GetPieceSize();
    std::vector<int> v(ids, ids + n);
    for (const int id : v) {
      if (id < 0 || id >= size) {
        set_error(err, errlen,
                  "token id " + std::to_string(id) + " is out of range [0, " +
                      std::to_string(size) + ")");
        return -1;
      }
    }
    std::string text;
    const auto status = sp->Decode(v, &text);
    if (!status.ok()) {
      set_error(err, errlen, status.ToString());
      return -1;
    }
    return copy_out(text, out, cap);
  } catch (const std::exception& e) {
    set_error(err, errlen, std::string("decoding failed: ") + e.what());
  } catch (...) {
    set_error(err, errlen, "decoding failed with an unknown exception");
  }
  return -1;
}

// `get(processor)`, or -1 for a null handle or when SentencePiece throws (no exception may cross
// into the caller, which runs in another link namespace with its own C++ runtime).
template <typename Get>
int32_t query(const void* handle, Get get) {
  try {
    return handle == nullptr ? -1 : get(*processor(handle));
  } catch (...) {
    return -1;
  }
}

// Number of pieces in the model (the vocabulary size), or -1.
XF_SPM_EXPORT int32_t xf_spm_piece_count(const void* handle) {
  return query(handle, [](const auto& sp) { return sp.GetPieceSize(); });
}

// Special ids as stored in the model; -1 when the model has no such piece.
XF_SPM_EXPORT int32_t xf_spm_pad_id(const void* handle) {
  return query(handle, [](const auto& sp) { return sp.pad_id(); });
}
XF_SPM_EXPORT int32_t xf_spm_unk_id(const void* handle) {
  return query(handle, [](const auto& sp) { return sp.unk_id(); });
}
XF_SPM_EXPORT int32_t xf_spm_bos_id(const void* handle) {
  return query(handle, [](const auto& sp) { return sp.bos_id(); });
}
XF_SPM_EXPORT int32_t xf_spm_eos_id(const void* handle) {
  return query(handle, [](const auto& sp) { return sp.eos_id(); });
}

// The piece (UTF-8, "▁" marks a word start) of an id: same buffer protocol as xf_spm_decode;
// -1 when the id is out of range.
XF_SPM_EXPORT int64_t xf_spm_id_to_piece(const void* handle, int32_t id, char* out, size_t cap) {
  try {
    if (handle == nullptr) return -1;
    const auto* sp = processor(handle);
    if (id < 0 || id >= sp->GetPieceSize()) return -1;
    return copy_out(sp->IdToPiece(id), out, cap);
  } catch (...) {
    return -1;
  }
}
