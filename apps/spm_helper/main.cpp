// xformer_spm: the SentencePiece helper process, the only program of xformer that links
// libsentencepiece.
//
// Why a process of its own: Debian's libsentencepiece embeds its own copy of protobuf (3.14) and
// exports its symbols, while LibTorch brings another protobuf (Debian: the system's 3.21; PyTorch
// wheels: their own). A program that links both crashes before main() (checked with Debian's
// libsentencepiece 0.1.97 and libtorch 1.13.1: SIGSEGV in ReflectionOps::FindInitializationErrors
// during DescriptorPool::InternalAddGeneratedFile), and loading SentencePiece into the same
// process in a link namespace of its own (dlmopen) failed next to PyTorch 2.11's libraries. A
// separate process shares no symbol, no allocator and no C++ runtime with LibTorch, whichever
// LibTorch it is.
//
// The Tokenizer (lib/xformer/data/tokenizer.cpp) starts it with a Unix socket as descriptor 3
// and speaks the frames of lib/xformer/data/spm_protocol.h:
//   xformer_spm serve VERSION MODEL                    load MODEL, then answer requests until
//                                                      the socket closes
//   xformer_spm train VERSION SEED LOG_LEVEL KEY=VALUE...   train one model, report, exit
// Its standard output goes to the caller's standard error: nothing it prints can reach a
// translation written to standard output.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "xformer/data/spm_protocol.h"

// Exported by libsentencepiece (declared in its internal common.h, not in the public headers).
namespace sentencepiece {
namespace logging {
void SetMinLogLevel(int v);
}  // namespace logging
}  // namespace sentencepiece

namespace {

namespace proto = xformer::data::spm_protocol;
constexpr int kSocket = 3;

void reply_error(const std::string& message) {
  proto::send_frame(kSocket, proto::kReplyError + message);
}

std::string model_info(const sentencepiece::SentencePieceProcessor& sp) {
  proto::Writer w(proto::kReplyOk);
  for (const int id : {sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()}) w.i32(id);
  const int n = sp.GetPieceSize();
  w.u32(static_cast<uint32_t>(n));
  for (int id = 0; id < n; ++id) w.bytes(sp.IdToPiece(id));
  return w.body();
}

std::string encode(const sentencepiece::SentencePieceProcessor& sp, proto::Reader& r) {
  const uint32_t n = r.u32();
  proto::Writer w(proto::kReplyOk);
  std::vector<int> ids;
  for (uint32_t i = 0; i < n; ++i) {
    const std::string text = r.bytes();
    const auto status = sp.Encode(text, &ids);
    if (!status.ok()) throw std::runtime_error("cannot encode text: " + status.ToString());
    w.ints(std::vector<int32_t>(ids.begin(), ids.end()));
  }
  return w.body();
}

std::string decode(const sentencepiece::SentencePieceProcessor& sp, proto::Reader& r) {
  const uint32_t n = r.u32();
  const int size = sp.GetPieceSize();
  proto::Writer w(proto::kReplyOk);
  std::string text;
  for (uint32_t i = 0; i < n; ++i) {
    const std::vector<int32_t> ids = r.ints();
    for (const int32_t id : ids)
      if (id < 0 || id >= size)
        throw std::runtime_error("token id " + std::to_string(id) + " is out of range [0, " +
                                 std::to_string(size) + ")");
    const auto status = sp.Decode(std::vector<int>(ids.begin(), ids.end()), &text);
    if (!status.ok()) throw std::runtime_error("cannot decode ids: " + status.ToString());
    w.bytes(text);
  }
  return w.body();
}

int serve(const std::string& model) {
  // Ctrl-C reaches the whole process group: the caller decides when to stop (it may still need
  // us to write its samples). We end when the caller closes the socket, whatever ended it.
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  sentencepiece::SentencePieceProcessor sp;
  const auto status = sp.Load(model);
  if (!status.ok()) {
    reply_error(status.ToString());
    return 1;
  }
  proto::send_frame(kSocket, model_info(sp));
  std::string request;
  while (proto::receive_frame(kSocket, request)) {
    proto::Reader r(request);
    std::string reply;
    try {
      const char op = r.tag();
      if (op == proto::kEncode) reply = encode(sp, r);
      else if (op == proto::kDecode) reply = decode(sp, r);
      else throw std::runtime_error(std::string("unknown request '") + op + "'");
      if (!r.done()) throw std::runtime_error("malformed request");
      if (reply.size() > proto::kMaxFrameBytes)
        throw std::runtime_error("the result (" + std::to_string(reply.size()) + " bytes) is larger than one reply carries");
    } catch (const std::exception& e) {  // bad_alloc included: answer, and go on serving
      reply = proto::kReplyError + std::string(e.what());
    }
    proto::send_frame(kSocket, reply);
  }
  return 0;
}

// Options are the trainer's flags without "--", as KEY=VALUE arguments: one argument each, so a
// path with a space stays whole (SentencePiece splits a "--k=v --k=v" string at every space).
// SEED seeds SentencePiece's random generator; LOG_LEVEL is its log threshold during training
// (0 = progress, 1 = warnings, 2 = errors only).
int train(uint32_t seed, int log_level, int argc, char** argv) {
  std::unordered_map<std::string, std::string> kwargs;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (eq == std::string::npos || eq == 0) throw std::runtime_error("training option '" + arg + "' is not KEY=VALUE");
    kwargs[arg.substr(0, eq)] = arg.substr(eq + 1);
  }
  // 0xFFFFFFFF is SentencePiece's "no seed, use std::random_device" marker.
  sentencepiece::SetRandomGeneratorSeed(seed == 0xFFFFFFFFu ? 0xFFFFFFFEu : seed);
  sentencepiece::logging::SetMinLogLevel(log_level);  // this process trains once, then ends
  const auto status = sentencepiece::SentencePieceTrainer::Train(kwargs);
  if (!status.ok()) {
    reply_error(status.ToString());
    return 1;
  }
  proto::send_frame(kSocket, std::string(1, proto::kReplyOk));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (argc > 2 && std::atoi(argv[2]) != proto::kVersion) {
      reply_error(std::string("helper ") + argv[0] + " speaks version " + std::to_string(proto::kVersion) +
                  ", its caller " + argv[2] + "; rebuild xformer (ninja -C build)");
      return 1;
    }
    if (mode == "serve" && argc == 4) return serve(argv[3]);
    if (mode == "train" && argc >= 5)
      return train(static_cast<uint32_t>(std::strtoul(argv[3], nullptr, 10)), std::atoi(argv[4]), argc - 5, argv + 5);
  } catch (const std::exception& e) {
    try {
      reply_error(e.what());
    } catch (...) {  // the caller has gone: nobody to tell
    }
    return 1;
  }
  std::fprintf(stderr,
               "usage: %s serve VERSION MODEL | %s train VERSION SEED LOG_LEVEL KEY=VALUE... "
               "(started by xformer, with a socket as descriptor 3)\n",
               argv[0], argv[0]);
  return 2;
}
