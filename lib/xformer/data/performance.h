// Music as a language of performance events (Oore et al. 2018), as the Music Transformer
// (Huang et al. 2018) models it: a piece is a sequence of
//   NOTE_ON(pitch)  NOTE_OFF(pitch)  TIME_SHIFT(1..100 steps of 10 ms)  SET_VELOCITY(bin)
// with 128 + 128 + 100 + 32 = 388 events by default, after the ids PAD, BOS, EOS.
//
// Times are quantized to `step_seconds` (10 ms); a silence longer than 100 steps (1 s) becomes
// several TIME_SHIFTs. A NOTE_ON takes the velocity of the last SET_VELOCITY, which is emitted
// only when the bin changes. No LibTorch here: notes and events are plain data.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace xformer::data {

struct Note {
  int pitch = 60;         // MIDI 0..127
  int velocity = 64;      // MIDI 1..127
  double start = 0, end = 0;  // seconds, end > start
  bool drum = false;          // from the General MIDI drum channel: never transposed
};

struct PerformanceOptions {
  int min_pitch = 0, max_pitch = 127;  // 21..108: the piano range
  int time_shift_steps = 100;          // longest single TIME_SHIFT, in steps
  double step_seconds = 0.01;
  int velocity_bins = 32;
};

// Event ids: PAD 0, BOS 1, EOS 2, then NOTE_ON per pitch, NOTE_OFF per pitch, TIME_SHIFT 1..S
// steps, SET_VELOCITY per bin.
class PerformanceVocab {
 public:
  static constexpr int kPad = 0, kBos = 1, kEos = 2;
  explicit PerformanceVocab(const PerformanceOptions& options = {});

  int size() const { return velocity_base_ + options_.velocity_bins; }
  int note_on(int pitch) const { return note_on_base_ + pitch - options_.min_pitch; }
  int note_off(int pitch) const { return note_off_base_ + pitch - options_.min_pitch; }
  int time_shift(int steps) const { return shift_base_ + steps - 1; }  // steps 1..S
  int set_velocity(int bin) const { return velocity_base_ + bin; }
  int velocity_bin(int velocity) const;      // MIDI velocity 1..127 -> bin
  int bin_velocity(int bin) const;           // bin -> the middle MIDI velocity of its range
  bool in_range(int pitch) const { return pitch >= options_.min_pitch && pitch <= options_.max_pitch; }
  std::string describe(int id) const;        // "NOTE_ON(60)", "TIME_SHIFT(250ms)", ...
  const PerformanceOptions& options() const { return options_; }

  // Notes -> events (without BOS/EOS). Notes outside the pitch range are dropped; a note that
  // quantizes to zero length lasts one step; a note struck again while still sounding ends there.
  std::vector<int> encode(std::vector<Note> notes) const;
  // Events -> notes, sorted by start. Specials are ignored; a NOTE_ON of a sounding pitch ends
  // it first; a NOTE_OFF of a silent pitch is ignored; notes still on at the end close there.
  std::vector<Note> decode(const std::vector<int>& events) const;

 private:
  PerformanceOptions options_;
  int note_on_base_, note_off_base_, shift_base_, velocity_base_;
};

// A sustain pedal interval [down, up) in seconds.
struct PedalInterval {
  double down = 0, up = 0;
};

// As Magenta does: a note released while the pedal is down sounds until the pedal comes up, or
// until the same pitch is struck again, whichever is first.
// Linear-logarithmic in notes and intervals.
std::vector<Note> apply_sustain(std::vector<Note> notes, std::vector<PedalInterval> pedal);

// Augmentation: shift every pitch but the drums' by `semitones` (notes leaving 0..127 are
// dropped) and scale every time by `stretch` (> 0).
std::vector<Note> transpose(std::vector<Note> notes, int semitones);
// The shifts {lo, hi} within +-max_shift that keep every pitched note of [min_pitch, max_pitch]
// inside that range, so that augmentation never cuts notes off a piece (as Magenta does);
// lo <= 0 <= hi ({0, 0} for a piece without a pitched note in the range).
std::pair<int, int> transpositions_in_range(const std::vector<Note>& notes, int max_shift, int min_pitch,
                                            int max_pitch);
std::vector<Note> stretch_time(std::vector<Note> notes, double stretch);

}  // namespace xformer::data
