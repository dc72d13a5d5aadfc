#include "xformer/data/midi.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <tuple>

#include "xformer/core/atomic_file.h"
#include "xformer/core/error.h"

namespace xformer::data {

namespace {

std::string hex(uint8_t byte) {
  const char* digits = "0123456789abcdef";
  return std::string("0x") + digits[byte >> 4] + digits[byte & 15];
}

// Bounds-checked reading of one chunk's bytes.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& name) : p_(data), end_(data + size), name_(name) {}
  bool done() const { return p_ >= end_; }
  size_t left() const { return static_cast<size_t>(end_ - p_); }
  uint8_t byte() {
    if (p_ >= end_) fail("unexpected end of data");
    return *p_++;
  }
  uint32_t be(int n) {  // big-endian, n bytes
    uint32_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | byte();
    return v;
  }
  uint32_t vlq() {  // variable-length quantity, at most 4 bytes
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const uint8_t b = byte();
      v = (v << 7) | (b & 0x7f);
      if (!(b & 0x80)) return v;
    }
    fail("variable-length number longer than 4 bytes");
  }
  const uint8_t* take(size_t n) {
    if (n > left()) fail("a length of " + std::to_string(n) + " bytes runs past the end");
    const uint8_t* at = p_;
    p_ += n;
    return at;
  }
  [[noreturn]] void fail(const std::string& what) const { throw DataError("MIDI file '" + name_ + "': " + what); }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  const std::string& name_;
};

struct RawEvent {
  uint32_t tick;
  uint8_t status, a, b;  // channel messages; status 0xFF with `tempo` for tempo changes
  uint32_t tempo;        // microseconds per quarter note
};

// Tick -> seconds over a tempo map (ticks per quarter) or a fixed SMPTE rate.
class Clock {
 public:
  Clock(std::vector<std::pair<uint32_t, uint32_t>> tempos, uint16_t division) {
    if (division & 0x8000) {
      const int fps = -static_cast<int8_t>(division >> 8);
      const int per_frame = division & 0xff;
      smpte_seconds_per_tick_ = 1.0 / ((fps == 29 ? 29.97 : fps) * per_frame);
      return;
    }
    ticks_per_quarter_ = division;
    std::stable_sort(tempos.begin(), tempos.end(),
                     [](const auto& x, const auto& y) { return x.first < y.first; });
    double seconds = 0;
    uint32_t tick = 0, tempo = 500000;
    for (const auto& [at, value] : tempos) {
      seconds += static_cast<double>(at - tick) * tempo / (1e6 * ticks_per_quarter_);
      tick = at, tempo = value;
      map_.push_back({tick, seconds, tempo});
    }
    if (map_.empty() || map_.front().tick != 0) map_.insert(map_.begin(), {0, 0.0, 500000});
  }
  double seconds(uint32_t tick) const {
    if (smpte_seconds_per_tick_ > 0) return tick * smpte_seconds_per_tick_;
    auto it = std::upper_bound(map_.begin(), map_.end(), tick,
                               [](uint32_t t, const Segment& s) { return t < s.tick; });
    const Segment& s = *std::prev(it);
    return s.seconds + static_cast<double>(tick - s.tick) * s.tempo / (1e6 * ticks_per_quarter_);
  }

 private:
  struct Segment {
    uint32_t tick;
    double seconds;
    uint32_t tempo;
  };
  std::vector<Segment> map_;
  double ticks_per_quarter_ = 480, smpte_seconds_per_tick_ = 0;
};

// Appends the track's events and returns the tick where it ends (its end-of-track event).
uint32_t parse_track(Reader& r, std::vector<RawEvent>& events) {
  uint32_t tick = 0;
  uint8_t running = 0;
  while (!r.done()) {
    const uint32_t delta = r.vlq();
    if (tick > UINT32_MAX - delta) r.fail("track longer than 2^32 ticks");
    tick += delta;
    uint8_t status = r.byte();
    if (status < 0x80) {  // running status: this byte is the first data byte
      if (!running) r.fail("data byte without a status (running status before any event)");
      const uint8_t a = status;
      status = running;
      const uint8_t kind = status & 0xf0;
      const uint8_t b = (kind == 0xc0 || kind == 0xd0) ? 0 : r.byte();
      if (b & 0x80) r.fail("data byte above 127 in a channel message");
      events.push_back({tick, status, a, b, 0});
      continue;
    }
    if (status == 0xff) {  // meta event
      const uint8_t type = r.byte();
      const uint32_t len = r.vlq();
      const uint8_t* data = r.take(len);
      if (type == 0x2f) return tick;  // end of track
      if (type == 0x51) {
        if (len != 3) r.fail("tempo event of " + std::to_string(len) + " bytes (3 expected)");
        const uint32_t tempo = (data[0] << 16) | (data[1] << 8) | data[2];
        if (tempo == 0) r.fail("tempo of 0 microseconds per quarter note");
        events.push_back({tick, 0xff, 0, 0, tempo});
      }
      continue;
    }
    if (status == 0xf0 || status == 0xf7) {  // system exclusive
      r.take(r.vlq());
      running = 0;
      continue;
    }
    if (status > 0xf0) r.fail("system message " + hex(status) + " inside a track");
    running = status;
    const uint8_t kind = status & 0xf0;
    const uint8_t a = r.byte();
    const uint8_t b = (kind == 0xc0 || kind == 0xd0) ? 0 : r.byte();
    if ((a | b) & 0x80) r.fail("data byte above 127 in a channel message");
    events.push_back({tick, status, a, b, 0});
  }
  return tick;  // a missing end-of-track event at the very end is tolerated
}

}  // namespace

MidiContents parse_midi(const std::vector<uint8_t>& bytes, const std::string& name,
                        const MidiReadOptions& options) {
  Reader file(bytes.data(), bytes.size(), name);
  if (bytes.size() < 14 || std::string(bytes.begin(), bytes.begin() + 4) != "MThd")
    file.fail("not a Standard MIDI File (no MThd header)");
  file.take(4);
  const uint32_t header_len = file.be(4);
  if (header_len < 6) file.fail("header of " + std::to_string(header_len) + " bytes (6 expected)");
  Reader header(file.take(header_len), header_len, name);
  MidiContents out;
  out.format = header.be(2);
  const uint32_t declared_tracks = header.be(2);
  const auto division = static_cast<uint16_t>(header.be(2));
  if (out.format > 2) file.fail("unknown format " + std::to_string(out.format));
  if (division == 0) file.fail("time division of 0 ticks");
  if ((division & 0x8000) && (-static_cast<int8_t>(division >> 8) <= 0 || (division & 0xff) == 0))
    file.fail("invalid SMPTE time division " + hex(division >> 8) + hex(division & 0xff).substr(2));

  std::vector<RawEvent> events;
  uint32_t end_tick = 0;  // where the longest track ends: notes still sounding stop there
  while (!file.done() && out.tracks < static_cast<int>(declared_tracks)) {
    if (file.left() < 8) file.fail("truncated chunk header");
    const std::string id(reinterpret_cast<const char*>(file.take(4)), 4);
    const uint32_t len = file.be(4);
    const uint8_t* data = file.take(len);
    if (id != "MTrk") continue;  // unknown chunks are skipped, as the standard asks
    Reader track(data, len, name);
    end_tick = std::max(end_tick, parse_track(track, events));
    ++out.tracks;
  }
  if (out.tracks == 0) file.fail("no track chunks");
  if (out.tracks < static_cast<int>(declared_tracks))  // a cut file would lose whole parts
    file.fail("ends after " + std::to_string(out.tracks) + " of the " + std::to_string(declared_tracks) +
              " tracks its header declares");

  std::vector<std::pair<uint32_t, uint32_t>> tempos;
  for (const auto& e : events)
    if (e.status == 0xff) tempos.emplace_back(e.tick, e.tempo);
  Clock clock(tempos, division);
  std::stable_sort(events.begin(), events.end(),
                   [](const RawEvent& x, const RawEvent& y) { return x.tick < y.tick; });

  // Notes per channel: a note-off closes the earliest open note of its channel and pitch.
  std::map<std::pair<int, int>, std::deque<Note>> open;
  std::map<int, std::vector<Note>> notes;               // channel -> notes
  std::map<int, std::vector<PedalInterval>> pedal;      // channel -> intervals
  std::map<int, double> pedal_down;                     // channel -> when it went down
  double last = clock.seconds(end_tick);
  for (const auto& e : events) {
    if (e.status == 0xff) continue;
    const int kind = e.status & 0xf0, channel = e.status & 0x0f;
    const double t = clock.seconds(e.tick);
    last = std::max(last, t);
    if (channel == 9 && !options.include_drums) continue;
    if (kind == 0x90 && e.b > 0) {
      open[{channel, e.a}].push_back(Note{e.a, e.b, t, t, channel == 9});
    } else if (kind == 0x80 || kind == 0x90) {
      auto& queue = open[{channel, e.a}];
      if (queue.empty()) continue;  // a stray note-off
      Note n = queue.front();
      queue.pop_front();
      n.end = t;
      if (n.end > n.start) notes[channel].push_back(n);
    } else if (kind == 0xb0 && e.a == 64) {
      const bool down = e.b >= 64;
      if (down && !pedal_down.count(channel)) pedal_down[channel] = t;
      if (!down && pedal_down.count(channel)) {
        pedal[channel].push_back({pedal_down[channel], t});
        pedal_down.erase(channel);
      }
    }
  }
  // Bounded work downstream: a few bytes can declare days of silence (2^28-tick gaps at the
  // slowest tempo), which would become millions of TIME_SHIFT events.
  constexpr double kMaxSeconds = 6 * 3600;
  if (last > kMaxSeconds)
    file.fail("lasts " + std::to_string(static_cast<int64_t>(last / 3600)) + " hours (at most 6 expected)");
  for (auto& [key, queue] : open)  // still sounding at the end of the file
    for (auto n : queue)
      if (last > n.start) n.end = last, notes[key.first].push_back(n);
  for (const auto& [channel, down] : pedal_down) pedal[channel].push_back({down, last});

  for (auto& [channel, list] : notes) {
    if (options.apply_sustain && pedal.count(channel)) list = apply_sustain(std::move(list), pedal.at(channel));
    out.notes.insert(out.notes.end(), list.begin(), list.end());
  }
  for (const auto& [channel, list] : pedal) out.pedal.insert(out.pedal.end(), list.begin(), list.end());
  std::stable_sort(out.notes.begin(), out.notes.end(), [](const Note& x, const Note& y) {
    return std::tie(x.start, x.pitch) < std::tie(y.start, y.pitch);
  });
  return out;
}

MidiContents read_midi(const std::string& path, const MidiReadOptions& options) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw DataError("MIDI file '" + path + "' is a folder");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("cannot open MIDI file '" + path + "'");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_midi(bytes, path, options);
}

std::vector<uint8_t> midi_bytes(const std::vector<Note>& notes) {
  constexpr double kTicksPerSecond = 960;  // 480 per quarter at 500000 us per quarter
  // (tick, off before on, pitch, velocity)
  std::vector<std::tuple<uint32_t, int, int, int>> changes;
  for (const auto& n : notes) {
    const auto on = static_cast<uint32_t>(std::llround(std::max(0.0, n.start) * kTicksPerSecond));
    const auto off = std::max(on + 1, static_cast<uint32_t>(std::llround(n.end * kTicksPerSecond)));
    const int pitch = std::clamp(n.pitch, 0, 127);
    changes.emplace_back(on, 1, pitch, std::clamp(n.velocity, 1, 127));
    changes.emplace_back(off, 0, pitch, 0);
  }
  std::sort(changes.begin(), changes.end());
  std::vector<uint8_t> track;
  auto vlq = [&](uint32_t v) {
    uint8_t buf[5];
    int n = 0;
    buf[n++] = v & 0x7f;
    while (v >>= 7) buf[n++] = 0x80 | (v & 0x7f);
    while (n) track.push_back(buf[--n]);
  };
  vlq(0);
  track.insert(track.end(), {0xff, 0x51, 0x03, 0x07, 0xa1, 0x20});  // tempo 500000
  uint32_t now = 0;
  for (const auto& [tick, on, pitch, velocity] : changes) {
    vlq(tick - now);
    now = tick;
    track.push_back(on ? 0x90 : 0x80);
    track.push_back(static_cast<uint8_t>(pitch));
    track.push_back(static_cast<uint8_t>(on ? velocity : 64));
  }
  vlq(0);
  track.insert(track.end(), {0xff, 0x2f, 0x00});
  std::vector<uint8_t> out = {'M', 'T', 'h', 'd', 0, 0, 0, 6, 0, 0, 0, 1, 0x01, 0xe0};  // 480 tpq
  out.insert(out.end(), {'M', 'T', 'r', 'k'});
  const auto len = static_cast<uint32_t>(track.size());
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(len >> s));
  out.insert(out.end(), track.begin(), track.end());
  return out;
}

void write_midi(const std::string& path, const std::vector<Note>& notes) {
  const auto bytes = midi_bytes(notes);
  write_file_atomically(path, std::string(bytes.begin(), bytes.end()));
}

}  // namespace xformer::data
