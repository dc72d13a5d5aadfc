#include "xformer/data/performance.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>
#include <tuple>

namespace xformer::data {

PerformanceVocab::PerformanceVocab(const PerformanceOptions& o) : options_(o) {
  if (o.min_pitch < 0 || o.max_pitch > 127 || o.min_pitch > o.max_pitch)
    throw std::invalid_argument("performance pitch range must lie within 0..127, got " +
                                std::to_string(o.min_pitch) + ".." + std::to_string(o.max_pitch));
  if (o.time_shift_steps < 1 || o.velocity_bins < 1 || o.velocity_bins > 127 || o.step_seconds <= 0)
    throw std::invalid_argument("performance encoding needs time_shift_steps >= 1, "
                                "1 <= velocity_bins <= 127 and step_seconds > 0");
  const int pitches = o.max_pitch - o.min_pitch + 1;
  note_on_base_ = kEos + 1;
  note_off_base_ = note_on_base_ + pitches;
  shift_base_ = note_off_base_ + pitches;
  velocity_base_ = shift_base_ + o.time_shift_steps;
}

int PerformanceVocab::velocity_bin(int velocity) const {
  const int v = std::clamp(velocity, 1, 127);
  return (v - 1) * options_.velocity_bins / 127;  // 1..127 split into equal ranges
}

int PerformanceVocab::bin_velocity(int bin) const {
  // The MIDI velocities of bin b are the v with (v - 1) * bins / 127 == b: take their middle.
  const int bins = options_.velocity_bins;
  const int lo = (bin * 127 + bins - 1) / bins + 1;
  const int hi = ((bin + 1) * 127 + bins - 1) / bins;  // the last velocity of the bin
  return std::clamp((lo + hi) / 2, 1, 127);
}

std::string PerformanceVocab::describe(int id) const {
  if (id == kPad) return "PAD";
  if (id == kBos) return "BOS";
  if (id == kEos) return "EOS";
  if (id >= note_on_base_ && id < note_off_base_)
    return "NOTE_ON(" + std::to_string(id - note_on_base_ + options_.min_pitch) + ")";
  if (id >= note_off_base_ && id < shift_base_)
    return "NOTE_OFF(" + std::to_string(id - note_off_base_ + options_.min_pitch) + ")";
  if (id >= shift_base_ && id < velocity_base_)
    return "TIME_SHIFT(" + std::to_string(std::lround((id - shift_base_ + 1) * options_.step_seconds * 1000)) + "ms)";
  if (id >= velocity_base_ && id < size()) return "SET_VELOCITY(" + std::to_string(id - velocity_base_) + ")";
  return "UNKNOWN(" + std::to_string(id) + ")";
}

std::vector<int> PerformanceVocab::encode(std::vector<Note> notes) const {
  const double step = options_.step_seconds;
  // Quantize; drop out-of-range pitches; at least one step long.
  struct Quantized {
    int pitch, velocity;
    int64_t on, off;
  };
  std::vector<Quantized> q;
  for (const auto& n : notes) {
    if (!in_range(n.pitch)) continue;
    const int64_t on = std::llround(n.start / step);
    const int64_t off = std::max(on + 1, static_cast<int64_t>(std::llround(n.end / step)));
    q.push_back({n.pitch, n.velocity, on, off});
  }
  // A pitch struck again while sounding ends at the new onset.
  std::sort(q.begin(), q.end(), [](const Quantized& a, const Quantized& b) {
    return std::tie(a.pitch, a.on, a.off) < std::tie(b.pitch, b.on, b.off);
  });
  for (size_t i = 0; i + 1 < q.size(); ++i)
    if (q[i].pitch == q[i + 1].pitch && q[i].off > q[i + 1].on) q[i].off = q[i + 1].on;
  // (time, kind, pitch, velocity): note-offs (kind 0) before note-ons (kind 1) at the same step.
  std::vector<std::tuple<int64_t, int, int, int>> changes;
  for (const auto& n : q) {
    if (n.off <= n.on) continue;  // a duplicate onset of the same pitch
    changes.emplace_back(n.on, 1, n.pitch, n.velocity);
    changes.emplace_back(n.off, 0, n.pitch, 0);
  }
  std::sort(changes.begin(), changes.end());
  std::vector<int> events;
  int64_t now = 0;
  int bin = -1;
  for (const auto& [time, kind, pitch, velocity] : changes) {
    for (int64_t gap = time - now; gap > 0;) {
      const int shift = static_cast<int>(std::min<int64_t>(gap, options_.time_shift_steps));
      events.push_back(time_shift(shift));
      gap -= shift;
    }
    now = time;
    if (kind == 0) {
      events.push_back(note_off(pitch));
      continue;
    }
    const int b = velocity_bin(velocity);
    if (b != bin) events.push_back(set_velocity(b)), bin = b;
    events.push_back(note_on(pitch));
  }
  return events;
}

std::vector<Note> PerformanceVocab::decode(const std::vector<int>& events) const {
  const double step = options_.step_seconds;
  std::vector<Note> notes;
  std::map<int, Note> sounding;  // pitch -> open note
  int64_t now = 0;
  int velocity = bin_velocity(velocity_bin(64));
  auto close = [&](int pitch) {
    auto it = sounding.find(pitch);
    if (it == sounding.end()) return;
    it->second.end = now * step;
    if (it->second.end > it->second.start) notes.push_back(it->second);
    sounding.erase(it);
  };
  for (int id : events) {
    if (id >= note_on_base_ && id < note_off_base_) {
      const int pitch = id - note_on_base_ + options_.min_pitch;
      close(pitch);
      sounding[pitch] = Note{pitch, velocity, now * step, now * step};
    } else if (id >= note_off_base_ && id < shift_base_) {
      close(id - note_off_base_ + options_.min_pitch);
    } else if (id >= shift_base_ && id < velocity_base_) {
      now += id - shift_base_ + 1;
    } else if (id >= velocity_base_ && id < size()) {
      velocity = bin_velocity(id - velocity_base_);
    }
  }
  while (!sounding.empty()) close(sounding.begin()->first);
  std::stable_sort(notes.begin(), notes.end(), [](const Note& a, const Note& b) {
    return std::tie(a.start, a.pitch) < std::tie(b.start, b.pitch);
  });
  return notes;
}

std::vector<Note> apply_sustain(std::vector<Note> notes, std::vector<PedalInterval> pedal) {
  // Intervals by onset, so each note finds the last one that went down before it ended.
  std::sort(pedal.begin(), pedal.end(),
            [](const PedalInterval& a, const PedalInterval& b) { return a.down < b.down; });
  // Next onset of the same pitch after each note, to stop the extension there.
  std::vector<size_t> order(notes.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::tie(notes[a].pitch, notes[a].start) < std::tie(notes[b].pitch, notes[b].start);
  });
  for (size_t k = 0; k < order.size(); ++k) {
    Note& n = notes[order[k]];
    auto after = std::upper_bound(pedal.begin(), pedal.end(), n.end,
                                  [](double t, const PedalInterval& p) { return t < p.down; });
    if (after != pedal.begin() && n.end < std::prev(after)->up) n.end = std::prev(after)->up;
    // Onsets at the same time (a doubled part) are not re-strikes: look past them.
    size_t j = k + 1;
    while (j < order.size() && notes[order[j]].pitch == n.pitch && notes[order[j]].start == n.start) ++j;
    if (j < order.size() && notes[order[j]].pitch == n.pitch) n.end = std::min(n.end, notes[order[j]].start);
  }
  return notes;
}

std::vector<Note> transpose(std::vector<Note> notes, int semitones) {
  std::vector<Note> out;
  out.reserve(notes.size());
  for (auto n : notes) {
    if (!n.drum) n.pitch += semitones;
    if (n.pitch >= 0 && n.pitch <= 127) out.push_back(n);
  }
  return out;
}

std::pair<int, int> transpositions_in_range(const std::vector<Note>& notes, int max_shift, int min_pitch,
                                            int max_pitch) {
  int lowest = max_pitch + 1, highest = min_pitch - 1;
  for (const auto& n : notes)
    if (!n.drum && n.pitch >= min_pitch && n.pitch <= max_pitch)
      lowest = std::min(lowest, n.pitch), highest = std::max(highest, n.pitch);
  if (lowest > highest) return {0, 0};
  // lo <= 0 <= hi: the piece's own notes are in the range.
  return {std::max(-max_shift, min_pitch - lowest), std::min(max_shift, max_pitch - highest)};
}

std::vector<Note> stretch_time(std::vector<Note> notes, double stretch) {
  if (!(stretch > 0)) throw std::invalid_argument("time stretch must be > 0, got " + std::to_string(stretch));
  for (auto& n : notes) n.start *= stretch, n.end *= stretch;
  return notes;
}

}  // namespace xformer::data
