// The wire format between the Tokenizer (tokenizer.cpp) and its SentencePiece helper process
// (apps/spm_helper/main.cpp). Both ends are built from this one file; it includes neither
// LibTorch nor SentencePiece, and throws only std::runtime_error.
//
// A frame is a 32-bit byte count followed by that many bytes, over a Unix stream socket. Every
// request frame is answered by exactly one reply frame, whose first byte is kReplyOk (the result
// follows) or kReplyError (a one-line message follows). Integers are the machine's own byte
// order: both ends always run on one machine.
//
//   request                                   reply after kReplyOk
//   kEncode, u32 n, n x (u32 len, bytes)      n x (u32 count, count x i32)
//   kDecode, u32 n, n x (u32 count, i32s)     n x (u32 len, bytes)
//
// `serve` sends one unrequested frame first: the loaded model or why it failed; `train` sends
// one frame when training ends: empty after kReplyOk, or why it failed.
//   the loaded model, after kReplyOk: i32 pad, unk, bos, eos; u32 pieces; pieces x (u32 len, bytes)
// The client passes kVersion on the helper's command line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace xformer::data::spm_protocol {

// Bump whenever a frame changes; the helper refuses to serve a client of another version.
constexpr int32_t kVersion = 2;

constexpr char kEncode = 'E';
constexpr char kDecode = 'D';
constexpr char kReplyOk = 'K';
constexpr char kReplyError = 'X';

// The largest frame either end accepts (a corrupt length must not allocate gigabytes).
constexpr uint32_t kMaxFrameBytes = 1u << 30;
// Requests are split so that no frame grows past this many bytes of payload or entries.
constexpr size_t kBatchBytes = 4u << 20;
constexpr size_t kBatchEntries = 16384;

// Builds a frame's body.
class Writer {
 public:
  explicit Writer(char tag) { body_.push_back(tag); }
  void u32(uint32_t v);
  void i32(int32_t v);
  void bytes(const std::string& s);            // u32 length, then the bytes
  void ints(const std::vector<int32_t>& ids);  // u32 count, then the ids
  const std::string& body() const { return body_; }

 private:
  std::string body_;
};

// Reads a frame's body; every read past its end throws.
class Reader {
 public:
  explicit Reader(const std::string& body) : body_(body) {}
  char tag();
  uint32_t u32();
  int32_t i32();
  std::string bytes();
  std::vector<int32_t> ints();
  bool done() const { return pos_ == body_.size(); }

 private:
  void take(void* out, size_t n);
  const std::string& body_;
  size_t pos_ = 0;
};

// Sends one frame; throws when the peer has gone (never raises SIGPIPE).
void send_frame(int fd, const std::string& body);
// Receives one frame into body; false when the peer closed the connection before a frame
// started, throws on a read error or a truncated or oversized frame.
bool receive_frame(int fd, std::string& body);

}  // namespace xformer::data::spm_protocol
