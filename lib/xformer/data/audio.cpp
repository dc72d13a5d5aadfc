#include "xformer/data/audio.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <filesystem>
#include <vector>

#include "xformer/core/error.h"

extern char** environ;

namespace xformer::data {

namespace fs = std::filesystem;

std::string find_soundfont(const std::string& configured) {
  std::error_code ec;
  if (!configured.empty() && !fs::is_regular_file(configured, ec))
    throw ConfigError("config error: task.soundfont '" + configured + "' is not a file");
  if (!configured.empty()) return configured;
  for (const char* name : {"default-GM.sf2", "TimGM6mb.sf2", "FluidR3_GM.sf2"}) {
    const fs::path p = fs::path("/usr/share/sounds/sf2") / name;
    if (fs::exists(p)) return p.string();
  }
  return "";
}

std::string render_wav(const std::string& midi, const std::string& wav, const std::string& soundfont) {
  if (soundfont.empty() || !fs::exists(soundfont))
    return "no General MIDI soundfont (apt-get install timgm6mb-soundfont, or set task.soundfont)";
  // fluidsynth -n (no MIDI input) -i (no shell) -F file (render) -r rate soundfont midi
  std::vector<std::string> args = {"fluidsynth", "-n", "-i", "-q", "-F", wav, "-r", "44100", soundfont, midi};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int err = posix_spawnp(&pid, "fluidsynth", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) return "FluidSynth is not installed (apt-get install fluidsynth)";
  int status = 0;
  if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
      !fs::exists(wav) || fs::file_size(wav) == 0)
    return "fluidsynth failed to render '" + midi + "'";
  return "";
}

}  // namespace xformer::data
