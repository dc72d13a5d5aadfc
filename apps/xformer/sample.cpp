// xformer sample --run DIR [--input FILE|-] [--stream] [--scores | --score-pairs] [--beam N --lenpen A | --temperature T] [--top-k K]
//                [--top-p P] [--num N] [--seed S] [--out FILE|DIR] [--length N] [--primer FILE]
//                [--attention FILE.html [--attention-layer L]] [--wav] [--checkpoint C] [--no-ema]
//                [--ensemble RUN]... [--set KEY=VALUE]...
#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "verbs.h"
#include "xformer/core/error.h"
#include "xformer/core/registry.h"
#include "xformer/train/run_dir.h"

namespace xformer::app {

namespace {
// What every run takes; the rest is the task's (TaskEntry::sample_options).
const std::vector<std::string> kEveryTaskOptions = {"--run", "--checkpoint", "--no-ema", "--set"};

struct SampleArgs {
  std::string run_dir;
  CheckpointChoice checkpoint;
  std::vector<std::string> sets;  // config keys changed for this command (task.max_len_b, ...)
  std::vector<std::string> ensemble;  // other runs whose models decode with this one's
  SampleOptions options;
  double temperature = 0, lenpen = 0;
  bool temperature_given = false, beam_given = false, lenpen_given = false;
  std::vector<std::string> given;  // the options on the command line ("--run", "--beam", ...)
  bool given_option(const std::string& name) const { return std::find(given.begin(), given.end(), name) != given.end(); }
};

constexpr int kMostSamples = 10000;
constexpr int64_t kMostEvents = 10'000'000;

// Refused before the run is loaded; the negated comparisons also catch nan.
void check_options(const SampleArgs& a) {
  const auto& o = a.options;
  auto bad = [](const std::string& option, const std::string& expected, auto value) {
    return ConfigError(fmt::format("usage error: {} must be {}, got {}", option, expected, value));
  };
  if (a.temperature_given && !(a.temperature > 0 && std::isfinite(a.temperature)))
    throw bad("--temperature", "a number > 0", a.temperature);
  if (a.beam_given && o.beam < 1) throw bad("--beam", ">= 1", o.beam);
  if (a.lenpen_given && !(a.lenpen >= 0 && std::isfinite(a.lenpen))) throw bad("--lenpen", "a number >= 0", a.lenpen);
  if (o.top_k < 0) throw bad("--top-k", ">= 0", o.top_k);
  if (!(o.top_p > 0 && o.top_p <= 1)) throw bad("--top-p", "in (0, 1]", o.top_p);
  // Upper bounds far beyond use, so that a slip of the keyboard is an error, not hours of work
  // or a failed allocation.
  if (o.num < 1 || o.num > kMostSamples) throw bad("--num", fmt::format("in 1..{}", kMostSamples), o.num);
  if (a.given_option("--length") && (o.length < 1 || o.length > kMostEvents))
    throw bad("--length", fmt::format("in 1..{}", kMostEvents), o.length);
  // Inputs that name nothing (a pattern with wildcards may match files the task lists).
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto name = fs::path(o.input).filename().string();
  if (!o.input.empty() && o.input != "-" && !fs::exists(o.input, ec) && name.find_first_of("*?[") == std::string::npos)
    throw ConfigError("usage error: --input '" + o.input + "' does not exist");
  if (!o.primer.empty() && !fs::is_regular_file(o.primer, ec))
    throw ConfigError("usage error: --primer '" + o.primer + "' " +
                      (fs::exists(o.primer, ec) ? "is not a file" : "does not exist"));
  if (a.given_option("--attention-layer") && o.attention.empty())
    throw ConfigError("usage error: --attention-layer chooses the layer --attention FILE.html shows; give --attention too");
}

// An option the run's task does not take is refused, never ignored (--length for translation,
// --beam for music, ...). Read from the run's config before its model is loaded.
void check_task_takes(const SampleArgs& a) {
  const std::string task = train::read_run_config(a.run_dir)["task"]["name"];
  const auto& takes = Registry::get().task(task).sample_options;
  auto listed = [](const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  for (const auto& name : a.given)
    if (!listed(kEveryTaskOptions, name) && !listed(takes, name) && name != "--ensemble")  // load_run checks that one
      throw ConfigError(fmt::format("usage error: {} is not for {} runs; their sample options are {}", name, task,
                                    fmt::join(takes, ", ")));
  // A task that searches (beam) draws nothing at random unless it samples.
  if (listed(takes, "--beam") && a.given_option("--seed") && !a.temperature_given)
    throw ConfigError("usage error: --seed seeds sampling: give --temperature too (search is deterministic)");
}

int sample(SampleArgs a) {
  check_options(a);
  check_task_takes(a);
  if (a.temperature_given) a.options.temperature = a.temperature;
  if (a.lenpen_given) a.options.lenpen = a.lenpen;
  auto run = load_run(a.run_dir, a.checkpoint, a.sets, a.ensemble);
  torch::NoGradGuard no_grad;
  AutocastScope autocast(run.precision, run.device);
  run.task->sample(a.options);
  return 0;
}
}  // namespace

void add_sample(CLI::App& app, Action& run) {
  auto args = std::make_shared<SampleArgs>();
  auto& o = args->options;
  auto* cmd = app.add_subcommand("sample", "Generate with a trained run (translate, sample, ...)");
  cmd->add_option("--run", args->run_dir, "Run directory")->required()->check(kNotEmpty);
  add_checkpoint_options(cmd, args->checkpoint);
  add_ensemble_option(cmd, args->ensemble);
  add_set_option(cmd, args->sets);
  cmd->add_option("-i,--input", o.input, "Input file, or - for stdin (default stdin)");
  cmd->add_flag("--stream", o.stream,
                "Translate each input line as soon as it is read (the default when stdin is a terminal) "
                "instead of reading to the end and batching (translation)");
  cmd->add_flag("--scores", o.scores,
                "Print each translation after its log-probability under the model (natural log, end of "
                "sentence included) and a tab (translation)");
  cmd->add_flag("--score-pairs", o.score_pairs,
                "Score given translations instead of translating: each input line is source<TAB>target; print "
                "log p(target | source) (natural log, end of sentence included), a tab and the target's piece "
                "count (translation)");
  auto* beam = cmd->add_option("--beam", o.beam, "Beam search with this width (default: the run's task.beam)");
  auto* lenpen = cmd->add_option("--lenpen", args->lenpen,
                                 "GNMT length penalty alpha for beam search (default: the run's task.lenpen)")
                     ->needs(beam);
  auto* temp = cmd->add_option("-t,--temperature", args->temperature,
                               "Sample from softmax(logits / T) instead of searching");
  cmd->add_option("--top-k", o.top_k,
                  "Sample among the K most likely tokens (classification: print the K best classes)");
  cmd->add_option("--top-p", o.top_p, "Sample from the smallest set with mass >= P");
  cmd->add_option("-n,--num", o.num, "Samples per input (with --beam: the N best translations)")->capture_default_str();
  // Digits only, within 64 bits: "-1" or 2^64 would otherwise wrap or saturate to another seed.
  const CLI::Validator seed_range(
      [](std::string& v) {
        if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || v.size() > 20 ||
            (v.size() == 20 && v > "18446744073709551615"))
          return std::string("must be an integer in 0..18446744073709551615");
        return std::string();
      },
      "", "SEED");
  cmd->add_option("--seed", o.seed, "Random seed for sampling")->check(seed_range)->capture_default_str();
  cmd->add_option("-o,--out", o.out, "Output file (default stdout), or folder for tasks that write files");
  cmd->add_option("--length", o.length, "Tokens/events to generate (tasks that generate freely)");
  cmd->add_option("--primer", o.primer, "A prefix to continue, e.g. a .mid file for music");
  cmd->add_option("--attention", o.attention,
                  "Write the first sample's attention weights as an HTML page (music)");
  cmd->add_flag("--wav", o.wav, "Also render each sample to WAV (music; needs fluidsynth and a GM soundfont)");
  cmd->add_option("--attention-layer", o.attention_layer,
                  "Layer shown by --attention; negative counts from the last")->capture_default_str();
  beam->excludes(temp);
  // Which options each task takes, from the registry that check_task_takes consults.
  std::string by_task =
      fmt::format("\nBesides {}, each task takes its own options:\n", fmt::join(kEveryTaskOptions, " "));
  for (const auto& task : Registry::get().tasks())
    by_task += fmt::format("  {}: {}{}\n", task.name, fmt::join(task.sample_options, " "),
                           task.ensembles ? " --ensemble" : "");
  cmd->footer(by_task);
  cmd->callback([args, cmd, beam, temp, lenpen, &run] {
    for (const CLI::Option* option : cmd->get_options())
      if (option->count() > 0) args->given.push_back(option->get_name());
    args->temperature_given = temp->count() > 0;
    args->beam_given = beam->count() > 0;
    args->lenpen_given = lenpen->count() > 0;
    run = [args] { return sample(*args); };
  });
}

}  // namespace xformer::app
