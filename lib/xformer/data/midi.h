// Standard MIDI Files (SMF) <-> notes.
//
// Reading handles formats 0 and 1 (and 2, read as parallel tracks), running status, several
// tracks, tempo changes anywhere (a tempo map over all tracks), SMPTE time division, note-on
// with velocity 0 as note-off, the sustain pedal (CC64 >= 64 is down) per channel, and the
// General MIDI drum channel (10) dropped unless asked for. Writing produces a format 0 file.
//
// The parser is our own (~200 lines) rather than Debian's libsmf: it must reject any corrupt or
// truncated file with a message and never crash, hang or allocate without bound, which the
// tests check by fuzzing, and libsmf (unmaintained since 2010, GLib-based) reports errors by
// logging them. Every read is bounds-checked; every loop consumes input.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "xformer/data/performance.h"

namespace xformer::data {

struct MidiReadOptions {
  bool include_drums = false;  // channel 10 (index 9)
  bool apply_sustain = true;   // extend notes held by the sustain pedal
};

struct MidiContents {
  std::vector<Note> notes;           // sorted by start, then pitch
  std::vector<PedalInterval> pedal;  // all channels, for inspection
  int format = 0, tracks = 0;
};

// Throws xformer::Error (DataError) naming `name` and what is wrong.
MidiContents parse_midi(const std::vector<uint8_t>& bytes, const std::string& name,
                        const MidiReadOptions& options = {});
MidiContents read_midi(const std::string& path, const MidiReadOptions& options = {});

// Format 0, 480 ticks per quarter at 120 bpm (960 ticks per second), channel 1.
std::vector<uint8_t> midi_bytes(const std::vector<Note>& notes);
void write_midi(const std::string& path, const std::vector<Note>& notes);

}  // namespace xformer::data
