// Audio rendering is optional: without a soundfont (or FluidSynth) it says why and writes nothing;
// with both installed it writes a WAV file.
#include "test_support.h"

#include <fstream>

#include "xformer/data/audio.h"
#include "xformer/data/midi.h"

TEST_CASE("render_wav explains what is missing", "[data][audio]") {
  const auto e = xformer::testing::thrown_error([] { xformer::data::find_soundfont("/nonexistent/gm.sf2"); });
  CHECK(std::string(e.what()).find("task.soundfont '/nonexistent/gm.sf2' is not a file") != std::string::npos);
  xformer::testing::TempDir dir("audio_missing");
  xformer::data::write_midi(dir.str("a.mid"), {{60, 80, 0.0, 0.5}});
  const auto why = xformer::data::render_wav(dir.str("a.mid"), dir.str("a.wav"), "");
  CHECK(why.find("soundfont") != std::string::npos);
  CHECK(!std::filesystem::exists(dir.str("a.wav")));
}

TEST_CASE("render_wav writes a WAV file when FluidSynth and a soundfont are installed",
          "[data][audio]") {
  const auto soundfont = xformer::data::find_soundfont("");
  xformer::testing::TempDir dir("audio_render");
  xformer::data::write_midi(dir.str("a.mid"), {{60, 80, 0.0, 0.5}, {64, 80, 0.5, 1.0}});
  const auto why = xformer::data::render_wav(dir.str("a.mid"), dir.str("a.wav"), soundfont);
  if (soundfont.empty() || system("command -v fluidsynth >/dev/null 2>&1") != 0) {
    // Not installed here: the reason names what to install.
    CHECK((why.find("soundfont") != std::string::npos || why.find("fluidsynth") != std::string::npos));
    return;
  }
  REQUIRE(why.empty());
  std::ifstream in(dir.str("a.wav"), std::ios::binary);
  char head[12] = {};
  in.read(head, 12);
  CHECK(std::string(head, 4) == "RIFF");
  CHECK(std::string(head + 8, 4) == "WAVE");
}
