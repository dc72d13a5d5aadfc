// Rendering MIDI to audio with FluidSynth's command-line program (Debian: `fluidsynth`) and a
// General MIDI soundfont (Debian: `timgm6mb-soundfont`). Optional: when either is missing the
// caller is told why and can go on without audio. A separate process, so no audio library is
// linked into xformer.
#pragma once
#include <string>

namespace xformer::data {

// The soundfont to use: `configured` when not empty (ConfigError naming task.soundfont when it is
// not a file), else the first General MIDI soundfont found in /usr/share/sounds/sf2/; "" when
// there is none.
std::string find_soundfont(const std::string& configured);

// Renders `midi` to a 44.1 kHz WAV file `wav`. Returns "" on success, otherwise what is missing
// or what failed, in one line.
std::string render_wav(const std::string& midi, const std::string& wav, const std::string& soundfont);

}  // namespace xformer::data
