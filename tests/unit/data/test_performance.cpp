// The performance-event encoding of music: vocabulary layout, a hand-written example, encode ->
// decode round trips within the quantization step and velocity bin, the sustain pedal, the
// piano range and augmentation.
#include "test_support.h"

#include <cmath>
#include <random>

#include "xformer/data/performance.h"

using xformer::data::Note;
using xformer::data::PedalInterval;
using xformer::data::PerformanceOptions;
using xformer::data::PerformanceVocab;

TEST_CASE("the performance vocabulary has the paper's 388 events after 3 specials", "[data][music]") {
  PerformanceVocab v;
  CHECK(v.size() == 3 + 128 + 128 + 100 + 32);
  CHECK(v.note_on(0) == 3);
  CHECK(v.note_off(0) == 3 + 128);
  CHECK(v.time_shift(1) == 3 + 256);
  CHECK(v.set_velocity(31) == v.size() - 1);
  CHECK(v.describe(v.time_shift(25)) == "TIME_SHIFT(250ms)");
  CHECK(v.describe(v.note_off(60)) == "NOTE_OFF(60)");
  PerformanceOptions piano;
  piano.min_pitch = 21, piano.max_pitch = 108;
  PerformanceVocab p(piano);
  CHECK(p.size() == 3 + 88 + 88 + 100 + 32);
  CHECK(p.describe(p.note_on(21)) == "NOTE_ON(21)");
  PerformanceOptions bad;
  bad.min_pitch = 90, bad.max_pitch = 80;
  CHECK_THROWS_WITH(PerformanceVocab(bad), Catch::Contains("90..80"));
}

TEST_CASE("velocity bins cover 1..127 and decode inside their bin", "[data][music]") {
  PerformanceVocab v;
  CHECK(v.velocity_bin(1) == 0);
  CHECK(v.velocity_bin(127) == 31);
  for (int vel = 1; vel <= 127; ++vel) {
    const int bin = v.velocity_bin(vel);
    CHECK(v.velocity_bin(v.bin_velocity(bin)) == bin);
    if (vel > 1) CHECK(bin - v.velocity_bin(vel - 1) <= 1);  // monotone, no gaps
  }
}

TEST_CASE("two notes encode to the expected events", "[data][music]") {
  PerformanceVocab v;
  // C4 0.00-0.50 s and E4 0.50-1.75 s, both velocity 80.
  const std::vector<Note> notes = {{60, 80, 0.0, 0.5}, {64, 80, 0.5, 1.75}};
  const std::vector<int> expected = {
      v.set_velocity(v.velocity_bin(80)), v.note_on(60),
      v.time_shift(50),                   v.note_off(60), v.note_on(64),
      v.time_shift(100), v.time_shift(25),  // 1.25 s: longer than one shift
      v.note_off(64)};
  CHECK(v.encode(notes) == expected);
}

TEST_CASE("encode then decode gives the notes back within 10 ms and their velocity bin",
          "[data][music]") {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> start(0.0, 20.0), length(0.001, 3.0);
  std::uniform_int_distribution<int> pitch(0, 127), velocity(1, 127);
  // Non-overlapping notes per pitch (a re-struck pitch is tested separately).
  std::vector<Note> notes;
  std::vector<double> free_from(128, 0.0);
  for (int i = 0; i < 400; ++i) {
    Note n;
    n.pitch = pitch(rng);
    n.velocity = velocity(rng);
    n.start = free_from[n.pitch] + start(rng) / 10;
    n.end = n.start + length(rng);
    free_from[n.pitch] = n.end + 0.02;
    notes.push_back(n);
  }
  PerformanceVocab v;
  auto decoded = v.decode(v.encode(notes));
  REQUIRE(decoded.size() == notes.size());
  std::sort(notes.begin(), notes.end(), [](const Note& a, const Note& b) {
    return std::tie(a.pitch, a.start) < std::tie(b.pitch, b.start);
  });
  std::sort(decoded.begin(), decoded.end(), [](const Note& a, const Note& b) {
    return std::tie(a.pitch, a.start) < std::tie(b.pitch, b.start);
  });
  for (size_t i = 0; i < notes.size(); ++i) {
    CHECK(decoded[i].pitch == notes[i].pitch);
    CHECK(std::abs(decoded[i].start - notes[i].start) <= 0.005 + 1e-9);
    // Ends: rounded to 10 ms, and at least one step after the start.
    CHECK(std::abs(decoded[i].end - std::max(notes[i].end, decoded[i].start + 0.01)) <= 0.005 + 1e-9);
    CHECK(v.velocity_bin(decoded[i].velocity) == v.velocity_bin(notes[i].velocity));
  }
}

TEST_CASE("a re-struck pitch, out-of-range pitches and stray events are handled",
          "[data][music]") {
  PerformanceOptions piano;
  piano.min_pitch = 21, piano.max_pitch = 108;
  PerformanceVocab v(piano);
  // Pitch 60 struck again at 0.3 s while sounding (to 1.0 s); pitch 10 is below the piano.
  auto decoded = v.decode(v.encode({{60, 64, 0.0, 1.0}, {60, 64, 0.3, 0.6}, {10, 64, 0.0, 1.0}}));
  REQUIRE(decoded.size() == 2);
  CHECK(decoded[0].start == Approx(0.0));
  CHECK(decoded[0].end == Approx(0.3));
  CHECK(decoded[1].start == Approx(0.3));
  CHECK(decoded[1].end == Approx(0.6));
  // Decoding ignores specials and a NOTE_OFF of a silent pitch, and closes what is still on.
  auto loose = v.decode({PerformanceVocab::kBos, v.note_off(70), v.note_on(70), v.time_shift(20),
                         PerformanceVocab::kPad, v.note_on(72), v.time_shift(5)});
  REQUIRE(loose.size() == 2);
  CHECK(loose[0].pitch == 70);
  CHECK(loose[0].end == Approx(0.25));
  CHECK(loose[1].pitch == 72);
  CHECK(loose[1].start == Approx(0.2));
}

TEST_CASE("the sustain pedal extends released notes until it comes up", "[data][music]") {
  const std::vector<PedalInterval> pedal = {{0.5, 2.0}};
  auto out = xformer::data::apply_sustain(
      {
          {60, 64, 0.0, 1.0},  // released under the pedal: sounds until 2.0
          {62, 64, 0.0, 0.4},  // released before the pedal went down: unchanged
          {64, 64, 0.6, 1.0},  // re-struck at 1.5 below: ends there
          {64, 64, 1.5, 1.7},  // released under the pedal: until 2.0
          {67, 64, 1.0, 2.0},  // released exactly as the pedal comes up: unchanged
      },
      pedal);
  CHECK(out[0].end == Approx(2.0));
  CHECK(out[1].end == Approx(0.4));
  CHECK(out[2].end == Approx(1.5));
  CHECK(out[3].end == Approx(2.0));
  CHECK(out[4].end == Approx(2.0));

  // Several pedal presses, given out of order: each note looks at the press it was released in.
  auto two = xformer::data::apply_sustain({{60, 64, 3.1, 3.5}, {62, 64, 2.0, 2.5}, {64, 64, 0.0, 1.0}},
                                          {{3.0, 4.0}, {0.5, 2.0}});
  CHECK(two[0].end == Approx(4.0));
  CHECK(two[1].end == Approx(2.5));  // released between the presses
  CHECK(two[2].end == Approx(2.0));

  // A doubled part (two onsets of one pitch at once) stops at the next re-strike, not past it.
  auto doubled = xformer::data::apply_sustain({{60, 64, 0.0, 0.5}, {60, 64, 0.0, 0.5}, {60, 64, 1.0, 1.5}},
                                              {{0.25, 3.0}});
  CHECK(doubled[0].end == Approx(1.0));
  CHECK(doubled[1].end == Approx(1.0));
  CHECK(doubled[2].end == Approx(3.0));
}

TEST_CASE("transposition and time stretch", "[data][music]") {
  auto up = xformer::data::transpose({{60, 64, 0.0, 1.0}, {126, 64, 0.0, 1.0}}, 3);
  REQUIRE(up.size() == 1);  // 129 leaves the MIDI range
  CHECK(up[0].pitch == 63);
  // Drums keep their instrument.
  Note kick{36, 100, 0.0, 0.1};
  kick.drum = true;
  auto with_drums = xformer::data::transpose({kick, {60, 64, 0.0, 1.0}}, -2);
  CHECK(with_drums[0].pitch == 36);
  CHECK(with_drums[1].pitch == 58);
  // Shifts that keep a piece's pitched notes on the piano (21..108): none downwards for a
  // piece reaching 22, one upwards for a piece reaching 107; drums and notes already outside
  // the range do not count.
  Note low_drum{10, 64, 0.0, 1.0};
  low_drum.drum = true;
  using xformer::data::transpositions_in_range;
  CHECK(transpositions_in_range({{22, 64, 0.0, 1.0}, {60, 64, 0.0, 1.0}, low_drum}, 3, 21, 108) == std::pair{-1, 3});
  CHECK(transpositions_in_range({{107, 64, 0.0, 1.0}, {5, 64, 0.0, 1.0}}, 3, 21, 108) == std::pair{-3, 1});
  CHECK(transpositions_in_range({{21, 64, 0.0, 1.0}, {108, 64, 0.0, 1.0}}, 3, 21, 108) == std::pair{0, 0});
  CHECK(transpositions_in_range({}, 3, 21, 108) == std::pair{0, 0});
  auto slow = xformer::data::stretch_time({{60, 64, 1.0, 2.0}}, 1.05);
  CHECK(slow[0].start == Approx(1.05));
  CHECK(slow[0].end == Approx(2.1));
  CHECK_THROWS_WITH(xformer::data::stretch_time({}, 0.0), Catch::Contains("> 0"));
}
