#include "xformer/data/spm_protocol.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace xformer::data::spm_protocol {

void Writer::u32(uint32_t v) { body_.append(reinterpret_cast<const char*>(&v), sizeof v); }

void Writer::i32(int32_t v) { body_.append(reinterpret_cast<const char*>(&v), sizeof v); }

void Writer::bytes(const std::string& s) {
  u32(static_cast<uint32_t>(s.size()));
  body_ += s;
}

void Writer::ints(const std::vector<int32_t>& ids) {
  u32(static_cast<uint32_t>(ids.size()));
  if (!ids.empty()) body_.append(reinterpret_cast<const char*>(ids.data()), ids.size() * sizeof(int32_t));
}

void Reader::take(void* out, size_t n) {
  if (n > body_.size() - pos_) throw std::runtime_error("truncated message from the other end");
  if (n > 0) std::memcpy(out, body_.data() + pos_, n);
  pos_ += n;
}

char Reader::tag() {
  char c;
  take(&c, 1);
  return c;
}

uint32_t Reader::u32() {
  uint32_t v;
  take(&v, sizeof v);
  return v;
}

int32_t Reader::i32() {
  int32_t v;
  take(&v, sizeof v);
  return v;
}

std::string Reader::bytes() {
  const uint32_t n = u32();
  if (n > body_.size() - pos_) throw std::runtime_error("truncated message from the other end");
  std::string s = body_.substr(pos_, n);
  pos_ += n;
  return s;
}

std::vector<int32_t> Reader::ints() {
  const uint32_t n = u32();
  if (n > (body_.size() - pos_) / sizeof(int32_t))
    throw std::runtime_error("truncated message from the other end");
  std::vector<int32_t> ids(n);
  take(ids.data(), n * sizeof(int32_t));
  return ids;
}

namespace {

void send_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t sent = send(fd, data, n, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) throw std::runtime_error(std::string("cannot send: ") + std::strerror(errno));
    data += sent;
    n -= static_cast<size_t>(sent);
  }
}

// Reads exactly n bytes; returns how many arrived before the peer closed (n when all did).
size_t receive_all(int fd, char* data, size_t n) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = recv(fd, data + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw std::runtime_error(std::string("cannot receive: ") + std::strerror(errno));
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

}  // namespace

void send_frame(int fd, const std::string& body) {
  if (body.size() > kMaxFrameBytes) throw std::runtime_error("message too large to send");
  const uint32_t n = static_cast<uint32_t>(body.size());
  send_all(fd, reinterpret_cast<const char*>(&n), sizeof n);
  send_all(fd, body.data(), body.size());
}

bool receive_frame(int fd, std::string& body) {
  uint32_t n = 0;
  const size_t got = receive_all(fd, reinterpret_cast<char*>(&n), sizeof n);
  if (got == 0) return false;
  if (got < sizeof n) throw std::runtime_error("connection closed inside a message");
  if (n > kMaxFrameBytes) throw std::runtime_error("message of " + std::to_string(n) + " bytes is too large");
  body.resize(n);
  if (receive_all(fd, body.data(), n) < n) throw std::runtime_error("connection closed inside a message");
  return true;
}

}  // namespace xformer::data::spm_protocol
