// The MIDI reader and writer: write -> read round trips, a hand-assembled format 1 file with
// running status, a tempo change, note-on velocity 0, the sustain pedal and a drum channel,
// SMPTE time, clear errors on corrupt files, and a fuzz run that must never crash or hang.
#include "test_support.h"

#include <fstream>
#include <random>

#include "xformer/core/error.h"
#include "xformer/data/midi.h"

using xformer::data::Note;
using xformer::data::parse_midi;

namespace {

using Bytes = std::vector<uint8_t>;

Bytes chunk(const std::string& id, const Bytes& body) {
  Bytes out(id.begin(), id.end());
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(body.size() >> s));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Bytes header(int format, int tracks, uint16_t division) {
  return chunk("MThd", {0, static_cast<uint8_t>(format), 0, static_cast<uint8_t>(tracks),
                        static_cast<uint8_t>(division >> 8), static_cast<uint8_t>(division & 0xff)});
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// Format 1, 480 ticks per quarter. Track 0: tempo 500000 us/quarter, then 250000 from tick 960.
// Track 1 (channel 1): C4 on at 0; E4 on at 480 by running status; pedal down at 480; C4 off at
// 960 as note-on velocity 0; E4 off at 1440; pedal up at 1920. Channel 10 (drums): one note.
// Seconds: tick 480 = 0.5, 960 = 1.0, 1440 = 1.25, 1920 = 1.5.
Bytes format1_file() {
  const Bytes tempo_track = {0x00, 0xff, 0x51, 0x03, 0x07, 0xa1, 0x20,        // 500000
                             0x87, 0x40, 0xff, 0x51, 0x03, 0x03, 0xd0, 0x90,  // +960: 250000
                             0x00, 0xff, 0x2f, 0x00};
  const Bytes notes_track = {
      0x00, 0xff, 0x03, 0x04, 'P', 'i', 'a', 'n',  // track name
      0x00, 0x90, 60, 100,                         // C4 on
      0x83, 0x60, 64, 90,                          // +480: E4 on (running status)
      0x00, 0xb0, 64, 127,                         // pedal down
      0x00, 0x99, 36, 100,                         // drum on
      0x83, 0x60, 0x90, 60, 0,                     // +480 (960): C4 off as velocity 0
      0x00, 0x89, 36, 0,                           // drum off
      0x83, 0x60, 0x80, 64, 0,                     // +480 (1440): E4 off
      0x83, 0x60, 0xb0, 64, 0,                     // +480 (1920): pedal up
      0x00, 0xff, 0x2f, 0x00};
  return concat({header(1, 2, 480), chunk("MTrk", tempo_track), chunk("MTrk", notes_track)});
}

}  // namespace

TEST_CASE("MIDI write then read gives the notes back", "[data][midi]") {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> start(0.0, 30.0), length(0.01, 2.0);
  std::uniform_int_distribution<int> pitch(0, 127), velocity(1, 127);
  std::vector<Note> notes;
  for (int i = 0; i < 300; ++i) {
    const double s = start(rng);
    notes.push_back({pitch(rng), velocity(rng), s, s + length(rng)});
  }
  // One note per pitch at a time, as a MIDI file can hold them.
  std::sort(notes.begin(), notes.end(), [](const Note& a, const Note& b) {
    return std::tie(a.pitch, a.start) < std::tie(b.pitch, b.start);
  });
  for (size_t i = 0; i + 1 < notes.size(); ++i)
    if (notes[i].pitch == notes[i + 1].pitch) notes[i].end = std::min(notes[i].end, notes[i + 1].start - 0.01);
  notes.erase(std::remove_if(notes.begin(), notes.end(), [](const Note& n) { return n.end <= n.start + 0.005; }),
              notes.end());
  xformer::testing::TempDir dir("midi_roundtrip");
  xformer::data::write_midi(dir.str("a.mid"), notes);
  auto back = xformer::data::read_midi(dir.str("a.mid"));
  CHECK(back.format == 0);
  REQUIRE(back.notes.size() == notes.size());
  std::sort(back.notes.begin(), back.notes.end(), [](const Note& a, const Note& b) {
    return std::tie(a.pitch, a.start) < std::tie(b.pitch, b.start);
  });
  for (size_t i = 0; i < notes.size(); ++i) {
    CHECK(back.notes[i].pitch == notes[i].pitch);
    CHECK(back.notes[i].velocity == notes[i].velocity);
    CHECK(std::abs(back.notes[i].start - notes[i].start) <= 0.5 / 960 + 1e-9);
    CHECK(std::abs(back.notes[i].end - notes[i].end) <= 0.5 / 960 + 1e-9);
  }
}

TEST_CASE("a format 1 file with running status, tempo change, pedal and drums", "[data][midi]") {
  const auto bytes = format1_file();
  SECTION("with the sustain pedal, without drums (the defaults)") {
    auto m = parse_midi(bytes, "f1.mid");
    CHECK(m.format == 1);
    CHECK(m.tracks == 2);
    REQUIRE(m.notes.size() == 2);
    CHECK(m.notes[0].pitch == 60);
    CHECK(m.notes[0].velocity == 100);
    CHECK(m.notes[0].start == Approx(0.0));
    CHECK(m.notes[0].end == Approx(1.5));  // released at 1.0 under the pedal
    CHECK(m.notes[1].pitch == 64);
    CHECK(m.notes[1].start == Approx(0.5));
    CHECK(m.notes[1].end == Approx(1.5));  // released at 1.25 under the pedal
    REQUIRE(m.pedal.size() == 1);
    CHECK(m.pedal[0].down == Approx(0.5));
    CHECK(m.pedal[0].up == Approx(1.5));
  }
  SECTION("without the pedal, with drums") {
    xformer::data::MidiReadOptions o;
    o.apply_sustain = false;
    o.include_drums = true;
    auto m = parse_midi(bytes, "f1.mid", o);
    REQUIRE(m.notes.size() == 3);
    CHECK(m.notes[0].pitch == 60);
    CHECK(m.notes[0].end == Approx(1.0));
    CHECK(m.notes[1].pitch == 36);  // the drum, 0.5 .. 1.0
    CHECK(m.notes[1].start == Approx(0.5));
    CHECK(m.notes[2].pitch == 64);
    CHECK(m.notes[2].end == Approx(1.25));  // after the tempo change: 480 ticks = 0.25 s
  }
}

TEST_CASE("SMPTE time division", "[data][midi]") {
  // 25 frames/s x 40 ticks/frame = 1000 ticks per second; a note from tick 0 to 500.
  const uint16_t division = static_cast<uint16_t>((static_cast<uint8_t>(-25) << 8) | 40);
  const Bytes track = {0x00, 0x90, 60, 80, 0x83, 0x74, 0x80, 60, 0, 0x00, 0xff, 0x2f, 0x00};
  auto m = parse_midi(concat({header(0, 1, division), chunk("MTrk", track)}), "smpte.mid");
  REQUIRE(m.notes.size() == 1);
  CHECK(m.notes[0].end == Approx(0.5));
}

TEST_CASE("corrupt MIDI files are refused with the file named", "[data][midi]") {
  auto refused = [](const Bytes& bytes, const std::string& why) {
    try {
      parse_midi(bytes, "bad.mid");
      FAIL("accepted a corrupt file expected to fail with: " << why);
    } catch (const xformer::Error& e) {
      CHECK_THAT(e.what(), Catch::Contains("bad.mid") && Catch::Contains(why));
    }
  };
  refused({'R', 'I', 'F', 'F', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "no MThd header");
  auto good = format1_file();
  refused(Bytes(good.begin(), good.begin() + 30), "runs past the end");
  refused(concat({header(0, 1, 480), chunk("MTrk", {0x00, 60, 100})}), "running status before any event");
  refused(concat({header(0, 1, 480), chunk("MTrk", {0xff, 0xff, 0xff, 0xff, 0x7f})}), "longer than 4 bytes");
  refused(concat({header(0, 1, 480), chunk("MTrk", {0x00, 0x90, 60, 200})}), "above 127");
  refused(concat({header(0, 1, 0), chunk("MTrk", {})}), "division of 0");
  refused(concat({header(0, 1, 0x8000), chunk("MTrk", {})}), "invalid SMPTE time division 0x8000");
  refused(concat({header(7, 1, 480), chunk("MTrk", {})}), "unknown format 7");
  // Cut after the first of its two tracks: refused, not read as a piece without its second part.
  refused(concat({header(1, 2, 480), chunk("MTrk", {0x00, 0x90, 60, 100, 0x83, 0x60, 0x80, 60, 0, 0x00, 0xff, 0x2f, 0x00})}),
          "ends after 1 of the 2 tracks");
  CHECK_THROWS_WITH(xformer::data::read_midi("/nonexistent/x.mid"), Catch::Contains("/nonexistent/x.mid"));
  // A few bytes declaring days of silence (slowest tempo, 1 tick per quarter, a 2^28-tick gap)
  // are refused instead of becoming millions of TIME_SHIFT events.
  refused(concat({header(0, 1, 1), chunk("MTrk", {0x00, 0xff, 0x51, 0x03, 0xff, 0xff, 0xff, 0x00, 0x90, 60, 64,
                                                  0xff, 0xff, 0xff, 0x7f, 0x80, 60, 0})}),
          "at most 6 expected");
}

TEST_CASE("fuzzed MIDI files are parsed or refused, never crash", "[data][midi]") {
  const auto good = format1_file();
  std::mt19937 rng(11);
  int refused = 0, parsed = 0;
  for (int i = 0; i < 3000; ++i) {
    Bytes b = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 3) {
        case 0: b[rng() % b.size()] = static_cast<uint8_t>(rng()); break;               // overwrite
        case 1: b.resize(rng() % (b.size() + 1)); break;                                 // truncate
        default: b.insert(b.begin() + rng() % (b.size() + 1), static_cast<uint8_t>(rng()));  // insert
      }
      if (b.empty()) b.push_back(0);
    }
    try {
      auto m = parse_midi(b, "fuzz.mid");
      for (const auto& n : m.notes) REQUIRE(n.end > n.start);
      ++parsed;
    } catch (const xformer::Error&) {
      ++refused;
    }
  }
  CHECK(parsed > 0);
  CHECK(refused > 0);
}

TEST_CASE("a note without a note-off lasts until the file ends", "[data][midi]") {
  // C4 on at tick 0, end of track at tick 1920 (2 s at 120 bpm, 480 per quarter), no note-off;
  // E4 from 0 to 480 (0.5 s), the last channel event.
  const Bytes track = {0x00, 0x90, 60, 100, 0x00, 0x90, 64, 100, 0x83, 0x60, 0x80, 64, 0,
                       0x8b, 0x20, 0xff, 0x2f, 0x00};
  const auto midi = parse_midi(concat({header(0, 1, 480), chunk("MTrk", track)}), "hanging.mid");
  REQUIRE(midi.notes.size() == 2);
  CHECK(midi.notes[0].pitch == 60);
  CHECK(midi.notes[0].end == Approx(2.0));
  CHECK(midi.notes[1].end == Approx(0.5));
}
