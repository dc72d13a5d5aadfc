#include "xformer/sweep/sweep_spec.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "xformer/core/config.h"
#include "xformer/core/error.h"
#include "xformer/core/json_file.h"
#include "xformer/core/registry.h"
#include "xformer/train/checkpoint_choice.h"
#include "xformer/train/config_checks.h"

namespace fs = std::filesystem;

namespace xformer::sweep {

namespace {

constexpr size_t kMaxValuesPerAxis = 10000;
constexpr size_t kMaxTrials = 100000;
constexpr size_t kMaxNameLength = 120;

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  throw ConfigError("sweep file '" + file + "': " + what);
}

void check_keys(const ordered_json& obj, const std::vector<std::string>& allowed,
                const std::string& file, const std::string& where) {
  for (const auto& item : obj.items()) {
    if (std::find(allowed.begin(), allowed.end(), item.key()) != allowed.end()) continue;
    std::string msg = "unknown key '" + where + item.key() + "'";
    const std::string hint = closest_match(item.key(), allowed);
    if (!hint.empty()) msg += " (did you mean '" + where + hint + "'?)";
    std::string known;
    for (const auto& k : allowed) known += (known.empty() ? "" : ", ") + k;
    fail(file, msg + "; expected one of: " + known);
  }
}

// Rounds to `digits` significant digits (so that 0.1 * 3 reads 0.3, and a sampled learning rate
// reads 0.003162 rather than 0.0031622776601683794).
double round_significant(double x, int digits) {
  if (x == 0 || !std::isfinite(x)) return x;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, x);
  return std::strtod(buf, nullptr);
}

double number(const ordered_json& v, const std::string& file, const std::string& where) {
  if (!v.is_number()) fail(file, "'" + where + "' must be a number, got " + v.dump());
  return v.get<double>();
}

// Converts an ordered_json leaf value to the (sorted-object) json used elsewhere.
nlohmann::json plain(const ordered_json& v) { return nlohmann::json::parse(v.dump()); }

// An axis of the grid: a list of values, {"range": [start, stop, step]} (stop included when
// reached) or {"log_range": [low, high, n]} (n values evenly spaced in log space).
std::vector<nlohmann::json> grid_values(const std::string& axis, const ordered_json& spec,
                                        const std::string& file) {
  const std::string where = "grid." + axis;
  std::vector<nlohmann::json> values;
  if (spec.is_array()) {
    if (spec.empty()) fail(file, "'" + where + "' is an empty list");
    for (const auto& v : spec) {
      if (v.is_object()) fail(file, "'" + where + "' values must be numbers, strings, booleans or lists, got " + v.dump());
      values.push_back(plain(v));
    }
    return values;
  }
  if (!spec.is_object() || spec.size() != 1)
    fail(file, "'" + where + "' must be a list of values, {\"range\": [start, stop, step]} or "
               "{\"log_range\": [low, high, n]}, got " + spec.dump());
  const std::string kind = spec.begin().key();
  const ordered_json& args = spec.begin().value();
  if (kind == "uniform" || kind == "log_uniform" || kind == "int_uniform" || kind == "choice")
    fail(file, "'" + where + "': '" + kind + "' is a random-search distribution; put it under random.axes");
  check_keys(spec, {"range", "log_range"}, file, where + ".");
  if (!args.is_array() || args.size() != 3)
    fail(file, "'" + where + "." + kind + "' must be a list of 3 numbers, got " + args.dump());
  if (kind == "range") {
    const double start = number(args[0], file, where + ".range"), stop = number(args[1], file, where + ".range"),
                 step = number(args[2], file, where + ".range");
    if (!(step > 0) || stop < start)
      fail(file, "'" + where + ".range' needs start <= stop and step > 0, got " + args.dump());
    const bool ints = args[0].is_number_integer() && args[1].is_number_integer() && args[2].is_number_integer();
    const double n = std::floor((stop - start) / step + 1e-9) + 1;
    if (n > kMaxValuesPerAxis) fail(file, "'" + where + ".range' gives more than 10000 values");
    for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) {
      if (ints)
        values.emplace_back(args[0].get<int64_t>() + i * args[2].get<int64_t>());
      else
        values.emplace_back(round_significant(start + i * step, 12));
    }
    return values;
  }
  const double low = number(args[0], file, where + ".log_range"), high = number(args[1], file, where + ".log_range");
  if (!args[2].is_number_integer() || args[2].get<int64_t>() < 1)
    fail(file, "'" + where + ".log_range' needs a whole number of values >= 1 as its third item, got " + args[2].dump());
  if (!(low > 0) || !(high > 0))
    fail(file, "'" + where + ".log_range' needs positive bounds, got " + args.dump());
  const int64_t n = args[2].get<int64_t>();
  if (n > static_cast<int64_t>(kMaxValuesPerAxis)) fail(file, "'" + where + ".log_range' asks for more than 10000 values");
  for (int64_t i = 0; i < n; ++i) {
    const double t = n == 1 ? 0.0 : static_cast<double>(i) / (n - 1);
    values.emplace_back(round_significant(std::exp(std::log(low) + t * (std::log(high) - std::log(low))), 6));
  }
  return values;
}

// The keys of a grid axis: "optim.lr" -> {"optim.lr"}; "task.max_tokens,train.max_steps" -> both.
std::vector<std::string> linked_keys(const std::string& axis) {
  std::vector<std::string> keys;
  std::stringstream in(axis);
  for (std::string key; std::getline(in, key, ',');) {  // "a.x, b.y" reads as "a.x,b.y"
    const auto first = key.find_first_not_of(" \t"), last = key.find_last_not_of(" \t");
    keys.push_back(first == std::string::npos ? "" : key.substr(first, last - first + 1));
  }
  if (keys.empty() || axis.back() == ',') keys.emplace_back();  // "a," names an empty key: refused later
  return keys;
}

// Each value of a linked axis of n keys is a list of n values, one per key.
void check_linked_values(const std::string& axis, size_t n, const std::vector<nlohmann::json>& values,
                         const std::string& file) {
  for (const auto& v : values)
    if (!v.is_array() || v.size() != n)
      fail(file, "'grid." + axis + "' sets " + std::to_string(n) + " keys together, so each value must be a list of " +
                     std::to_string(n) + " values (one per key), got " + v.dump());
}

// A random-search axis: a list (= choice), {"choice": [...]}, {"uniform": [low, high]},
// {"log_uniform": [low, high]} or {"int_uniform": [low, high]} (both ends included).
struct Distribution {
  std::string kind;
  std::vector<nlohmann::json> choices;
  double low = 0, high = 0;
  int64_t ilow = 0, ihigh = 0;

  nlohmann::json draw(SweepRng& rng) const {
    const double u = rng.uniform();
    if (kind == "choice") {
      size_t i = std::min(choices.size() - 1, static_cast<size_t>(u * choices.size()));
      return choices[i];
    }
    if (kind == "int_uniform") {
      const auto span = static_cast<uint64_t>(ihigh - ilow) + 1;
      return ilow + static_cast<int64_t>(std::min<uint64_t>(span - 1, static_cast<uint64_t>(u * span)));
    }
    // Rounded to 4 significant digits (readable names), then kept inside [low, high]: rounding
    // may not step past a bound (dropout 0.99999 -> 1.0).
    const double x = kind == "log_uniform" ? std::exp(std::log(low) + u * (std::log(high) - std::log(low)))
                                           : low + u * (high - low);
    return std::clamp(round_significant(x, 4), low, high);
  }
};

Distribution distribution(const std::string& axis, const ordered_json& spec, const std::string& file) {
  const std::string where = "random.axes." + axis;
  Distribution d;
  if (spec.is_array()) {
    d.kind = "choice";
    if (spec.empty()) fail(file, "'" + where + "' is an empty list");
    for (const auto& v : spec) d.choices.push_back(plain(v));
    return d;
  }
  if (!spec.is_object() || spec.size() != 1)
    fail(file, "'" + where + "' must be a list of values or one of {\"choice\": [...]}, {\"uniform\": [low, high]}, "
               "{\"log_uniform\": [low, high]}, {\"int_uniform\": [low, high]}, got " + spec.dump());
  d.kind = spec.begin().key();
  const ordered_json& args = spec.begin().value();
  if (d.kind == "range" || d.kind == "log_range")
    fail(file, "'" + where + "': '" + d.kind + "' is a grid axis; random search takes choice, uniform, log_uniform or int_uniform");
  check_keys(spec, {"choice", "uniform", "log_uniform", "int_uniform"}, file, where + ".");
  const std::string sub = where + "." + d.kind;
  if (d.kind == "choice") {
    if (!args.is_array() || args.empty()) fail(file, "'" + sub + "' must be a non-empty list, got " + args.dump());
    for (const auto& v : args) d.choices.push_back(plain(v));
    return d;
  }
  if (!args.is_array() || args.size() != 2)
    fail(file, "'" + sub + "' must be a list [low, high], got " + args.dump());
  if (d.kind == "int_uniform") {
    if (!args[0].is_number_integer() || !args[1].is_number_integer() || args[1].get<int64_t>() < args[0].get<int64_t>())
      fail(file, "'" + sub + "' needs whole numbers low <= high, got " + args.dump());
    d.ilow = args[0].get<int64_t>();
    d.ihigh = args[1].get<int64_t>();
    return d;
  }
  d.low = number(args[0], file, sub);
  d.high = number(args[1], file, sub);
  if (!(d.low <= d.high)) fail(file, "'" + sub + "' needs low <= high, got " + args.dump());
  if (d.kind == "log_uniform" && !(d.low > 0))
    fail(file, "'" + sub + "' needs positive bounds (it samples the logarithm), got " + args.dump());
  return d;
}

// Flattens {"train": {"max_steps": 3}} and {"train.max_steps": 3} alike into dotted keys.
void flatten(const ordered_json& obj, const std::string& prefix, std::vector<Setting>& out) {
  for (const auto& item : obj.items()) {
    const std::string key = prefix.empty() ? item.key() : prefix + "." + item.key();
    if (item.value().is_object())
      flatten(item.value(), key, out);
    else
      out.emplace_back(key, plain(item.value()));
  }
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Names every trial from its settings: "key=value" joined with ',', the key being the last
// component of the config path unless two axes share it. Unique: a repeated name gets ",dup=K".
void name_trials(std::vector<Trial>& trials, const std::vector<std::string>& axes) {
  std::map<std::string, int> leaf_count;
  auto leaf = [](const std::string& path) { return path.substr(path.rfind('.') + 1); };
  for (const auto& a : axes) ++leaf_count[leaf(a)];
  std::map<std::string, int> seen;
  for (auto& t : trials) {
    std::string name;
    for (const auto& [key, value] : t.settings)
      name += (name.empty() ? "" : ",") + (leaf_count[leaf(key)] > 1 ? key : leaf(key)) + "=" + value_label(value);
    if (name.empty()) name = "base";
    name = sanitize_name(name);
    if (name.size() > kMaxNameLength) name = name.substr(0, 100) + "-" + hex64(fnv1a(name)).substr(0, 8);
    // A repeated name gets the first free ",dup=K" (a value may itself end in one).
    std::string unique = name;
    for (int k = 2; seen.count(unique); ++k) unique = name + ",dup=" + std::to_string(k);
    ++seen[unique];
    t.name = unique;
  }
}

}  // namespace

uint64_t SweepRng::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double SweepRng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

std::string value_label(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array()) {
    std::string s;
    for (const auto& v : value) s += (s.empty() ? "" : "-") + value_label(v);
    return s;
  }
  return value.dump();
}

std::string sanitize_name(const std::string& name) {
  std::string out = name;
  for (char& c : out) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '=' || c == ',' || c == '+' || c == '-';
    if (!ok) c = '_';
  }
  if (out == "." || out == "..") out = "_";
  return out;
}

SweepSpec parse_sweep(const ordered_json& doc, const std::string& file) {
  if (!doc.is_object()) fail(file, "expected a JSON object at the top level");
  check_keys(doc, {"description", "base", "output", "set", "grid", "random", "eval", "metric", "mode",
                   "retries", "slurm"},
             file, "");
  SweepSpec spec;
  spec.file = file;
  spec.name = fs::path(file).stem().string();

  if (!doc.contains("base") || !doc["base"].is_string() || doc["base"].get<std::string>().empty())
    fail(file, "'base' (the config file to start from, relative to the sweep file) must be given as a string");
  fs::path base = doc["base"].get<std::string>();
  if (base.is_relative()) base = fs::path(file).parent_path() / base;
  spec.base = base.lexically_normal().string();

  spec.output = (fs::path("runs") / "sweeps" / spec.name).string();
  if (doc.contains("output")) {
    if (!doc["output"].is_string() || doc["output"].get<std::string>().empty())
      fail(file, "'output' must be a directory path, got " + doc["output"].dump());
    spec.output = doc["output"].get<std::string>();
  }

  if (doc.contains("set")) {
    if (!doc["set"].is_object()) fail(file, "'set' must be an object of config keys, got " + doc["set"].dump());
    flatten(doc["set"], "", spec.set);
  }

  // Grid axes; an axis of several keys ("a.x,b.y") sets them together: values [x, y] per point.
  std::vector<std::vector<std::string>> grid_keys;        // per axis: its keys
  std::vector<std::vector<nlohmann::json>> grid;          // per axis: its values (lists when linked)
  if (doc.contains("grid")) {
    if (!doc["grid"].is_object()) fail(file, "'grid' must be an object {\"config.key\": values}, got " + doc["grid"].dump());
    for (const auto& item : doc["grid"].items()) {
      grid_keys.push_back(linked_keys(item.key()));
      grid.push_back(grid_values(item.key(), item.value(), file));
      if (grid_keys.back().size() > 1) check_linked_values(item.key(), grid_keys.back().size(), grid.back(), file);
      for (const auto& key : grid_keys.back()) {
        if (std::find(spec.axes.begin(), spec.axes.end(), key) != spec.axes.end())
          fail(file, "'" + key + "' is in more than one grid axis");
        spec.axes.push_back(key);
      }
    }
  }
  // Random axes.
  std::vector<Distribution> dists;
  int64_t count = 0;
  uint64_t seed = 1;
  if (doc.contains("random")) {
    const auto& r = doc["random"];
    if (!r.is_object()) fail(file, "'random' must be an object {\"count\": N, \"seed\": S, \"axes\": {...}}");
    check_keys(r, {"count", "seed", "axes"}, file, "random.");
    if (!r.contains("count") || !r["count"].is_number_integer() || r["count"].get<int64_t>() < 1)
      fail(file, "'random.count' (the number of samples) must be a whole number >= 1");
    count = r["count"].get<int64_t>();
    if (count > static_cast<int64_t>(kMaxTrials)) fail(file, "'random.count' is above 100000");
    if (r.contains("seed")) {
      if (!r["seed"].is_number_integer()) fail(file, "'random.seed' must be a whole number, got " + r["seed"].dump());
      seed = static_cast<uint64_t>(r["seed"].get<int64_t>());
    }
    if (!r.contains("axes") || !r["axes"].is_object() || r["axes"].empty())
      fail(file, "'random.axes' must be a non-empty object {\"config.key\": distribution}");
    for (const auto& item : r["axes"].items()) {
      if (std::find(spec.axes.begin(), spec.axes.end(), item.key()) != spec.axes.end())
        fail(file, "'" + item.key() + "' is both a grid axis and a random axis");
      spec.axes.push_back(item.key());
      dists.push_back(distribution(item.key(), item.value(), file));
    }
  }
  for (const auto& [key, value] : spec.set)
    if (std::find(spec.axes.begin(), spec.axes.end(), key) != spec.axes.end())
      fail(file, "'" + key + "' is both in 'set' and an axis");
  for (const auto& axis : spec.axes)
    if (axis.find(',') != std::string::npos)
      fail(file, "random axis '" + axis + "': only grid axes set several keys together");
  for (const auto& axis : spec.axes)
    if (axis.empty() || axis.front() == '.' || axis.back() == '.' || axis.find("..") != std::string::npos)
      fail(file, "axis '" + axis + "' is not a dotted config key such as optim.lr");

  // Expansion: grid points (last axis fastest) x random samples.
  size_t n_grid = 1;
  for (const auto& g : grid) {
    n_grid *= g.size();
    if (n_grid > kMaxTrials) fail(file, "the grid has more than 100000 points");
  }
  std::vector<std::vector<nlohmann::json>> samples;
  SweepRng rng(seed);
  for (int64_t s = 0; s < count; ++s) {
    std::vector<nlohmann::json> sample;
    for (const auto& d : dists) sample.push_back(d.draw(rng));
    samples.push_back(std::move(sample));
  }
  const size_t n_random = dists.empty() ? 1 : samples.size();
  if (n_grid * n_random > kMaxTrials) fail(file, "the sweep has more than 100000 trials");
  for (size_t g = 0; g < n_grid; ++g) {
    std::vector<Setting> point;
    size_t rest = g;
    std::vector<size_t> pick(grid.size());  // value index per axis, the last axis fastest
    for (size_t a = grid.size(); a-- > 0;) {
      pick[a] = rest % grid[a].size();
      rest /= grid[a].size();
    }
    for (size_t a = 0; a < grid.size(); ++a) {
      const auto& value = grid[a][pick[a]];
      if (grid_keys[a].size() == 1) point.emplace_back(grid_keys[a][0], value);
      else
        for (size_t k = 0; k < grid_keys[a].size(); ++k) point.emplace_back(grid_keys[a][k], value[k]);
    }
    const size_t n_grid_keys = point.size();
    for (size_t s = 0; s < n_random; ++s) {
      Trial t;
      t.index = static_cast<int>(spec.trials.size());
      t.settings = point;
      if (!dists.empty())
        for (size_t a = 0; a < dists.size(); ++a) t.settings.emplace_back(spec.axes[n_grid_keys + a], samples[s][a]);
      spec.trials.push_back(std::move(t));
    }
  }
  name_trials(spec.trials, spec.axes);

  if (doc.contains("eval")) {
    const auto& e = doc["eval"];
    if (e.is_boolean()) {
      spec.eval.enabled = e.get<bool>();
    } else if (e.is_object()) {
      check_keys(e, {"split", "checkpoint"}, file, "eval.");
      spec.eval.enabled = true;
      if (e.contains("split")) {
        if (!e["split"].is_string() || (e["split"] != "valid" && e["split"] != "test"))
          fail(file, "'eval.split' must be \"valid\" or \"test\", got " + e["split"].dump());
        spec.eval.split = e["split"].get<std::string>();
      }
      if (e.contains("checkpoint")) {
        if (!e["checkpoint"].is_string() || e["checkpoint"].get<std::string>().empty())
          fail(file, "'eval.checkpoint' must be \"best\", \"last\", \"average:N\" or a path, got " + e["checkpoint"].dump());
        spec.eval.checkpoint = e["checkpoint"].get<std::string>();
        int averaged = 0;
        try {
          averaged = train::averaged_checkpoint_count(spec.eval.checkpoint);
        } catch (const Error& err) {
          fail(file, "'eval.checkpoint': " + std::string(err.what()));
        }
        if (averaged == 0 && spec.eval.checkpoint != "best" && spec.eval.checkpoint != "last")
          fail(file, "'eval.checkpoint' must be \"best\", \"last\" or \"average:N\" (each trial's own), got \"" +
                         spec.eval.checkpoint + "\"");
      }
    } else if (!e.is_null()) {
      fail(file, "'eval' must be false, true or {\"split\": ..., \"checkpoint\": ...}, got " + e.dump());
    }
  }
  if (doc.contains("metric")) {
    if (!doc["metric"].is_string() || doc["metric"].get<std::string>().empty())
      fail(file, "'metric' must be the name of a validation metric such as \"bleu\" or \"loss\"");
    spec.metric = doc["metric"].get<std::string>();
  }
  if (doc.contains("mode")) {
    if (!doc["mode"].is_string() || (doc["mode"] != "min" && doc["mode"] != "max"))
      fail(file, "'mode' must be \"min\" or \"max\", got " + doc["mode"].dump());
    spec.mode = doc["mode"].get<std::string>();
  }
  if (doc.contains("retries")) {
    if (!doc["retries"].is_number_integer() || doc["retries"].get<int64_t>() < 0 || doc["retries"].get<int64_t>() > 100)
      fail(file, "'retries' must be a whole number from 0 to 100, got " + doc["retries"].dump());
    spec.retries = doc["retries"].get<int>();
  }
  if (doc.contains("slurm")) {
    const auto& s = doc["slurm"];
    if (!s.is_object()) fail(file, "'slurm' must be an object, got " + s.dump());
    check_keys(s, {"partition", "account", "time", "mem", "gpus", "cpus_per_task", "max_parallel", "setup"}, file,
               "slurm.");
    auto text = [&](const char* key, std::string& out) {
      if (!s.contains(key)) return;
      if (s[key].is_string()) out = s[key].get<std::string>();
      else if (s[key].is_number_integer()) out = std::to_string(s[key].get<int64_t>());
      else fail(file, std::string("'slurm.") + key + "' must be a string, got " + s[key].dump());
      if (out.find_first_of("\n\r \t") != std::string::npos)
        fail(file, std::string("'slurm.") + key + "' must be one word (no spaces or line breaks), got " + s[key].dump());
    };
    text("partition", spec.slurm.partition);
    text("account", spec.slurm.account);
    text("time", spec.slurm.time);
    text("mem", spec.slurm.mem);
    text("gpus", spec.slurm.gpus);
    auto integer = [&](const char* key, int& out, int min) {
      if (!s.contains(key)) return;
      constexpr int64_t kMost = 1'000'000;
      if (!s[key].is_number_integer() || s[key].get<int64_t>() < min || s[key].get<int64_t>() > kMost ||
          (s[key].is_number_unsigned() && s[key].get<uint64_t>() > static_cast<uint64_t>(kMost)))
        fail(file, std::string("'slurm.") + key + "' must be a whole number from " + std::to_string(min) + " to " +
                       std::to_string(kMost) + ", got " + s[key].dump());
      out = s[key].get<int>();
    };
    integer("cpus_per_task", spec.slurm.cpus_per_task, 1);
    integer("max_parallel", spec.slurm.max_parallel, 0);
    if (s.contains("setup")) {
      if (!s["setup"].is_array()) fail(file, "'slurm.setup' must be a list of shell lines");
      for (const auto& line : s["setup"]) {
        if (!line.is_string()) fail(file, "'slurm.setup' must be a list of shell lines, got " + line.dump());
        spec.slurm.setup.push_back(line.get<std::string>());
      }
    }
  }
  return spec;
}

SweepSpec load_sweep(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) throw ConfigError("cannot open sweep file '" + path + "'");
  return parse_sweep(read_json_file<ordered_json>(path, "sweep file '" + path + "'", kExitUsage), path);
}

namespace {
// The text after "KEY=" that `--set` reads back as `value`: JSON, except that a string which is
// not itself JSON (a path, a name) is written plainly, as a person would type it; one that
// starts like a list or an object ("[0-9]*.bin") stays quoted, as --set would refuse it.
std::string override_text(const nlohmann::json& value) {
  if (value.is_string()) {
    const std::string& s = value.get_ref<const std::string&>();
    if (!s.empty() && s[0] != '[' && s[0] != '{' && !nlohmann::json::accept(s)) return s;
  }
  return value.dump();
}
}  // namespace

std::vector<std::string> trial_overrides(const SweepSpec& spec, const Trial& trial) {
  std::vector<std::string> out;
  for (const auto& [key, value] : spec.set) out.push_back(key + "=" + override_text(value));
  for (const auto& [key, value] : trial.settings) out.push_back(key + "=" + override_text(value));
  return out;
}

nlohmann::json validate_trials(SweepSpec& spec, bool data_here) {
  RawConfig base;
  try {
    base = load_config_file(spec.base);
  } catch (const Error& e) {
    fail(spec.file, std::string("base config: ") + e.what());
  }
  nlohmann::json first;
  for (auto& t : spec.trials) {
    RawConfig raw = base;
    try {
      for (const auto& s : trial_overrides(spec, t)) apply_override(raw, s);
      nlohmann::json resolved = resolve(raw);
      train::check_training_config(resolved);
      if (data_here) {
        std::vector<std::string> splits = {"train", "valid"};
        if (spec.eval.enabled) splits.push_back(spec.eval.split);
        train::check_data_paths_exist(resolved, splits);
      }
      const int average = spec.eval.enabled ? train::averaged_checkpoint_count(spec.eval.checkpoint) : 0;
      const int64_t keep = resolved.at("train").at("keep_last");
      if (average > keep)
        throw ConfigError("eval.checkpoint " + spec.eval.checkpoint + " averages " + std::to_string(average) +
                          " step checkpoints but train.keep_last keeps " + std::to_string(keep));
      t.config_digest = hex64(fnv1a(resolved.dump()));
      if (first.is_null()) first = resolved;
    } catch (const Error& e) {
      fail(spec.file, "trial " + std::to_string(t.index) + " (" + t.name + "): " + e.what());
    }
  }
  const auto& train = first.at("train");
  if (spec.metric.empty()) {
    spec.metric = train.at("best_metric").get<std::string>();
    if (spec.mode.empty()) spec.mode = train.at("best_mode").get<std::string>();
  }
  if (spec.mode.empty()) {
    if (spec.metric != train.at("best_metric").get<std::string>())
      fail(spec.file, "'metric' is '" + spec.metric + "' but 'mode' is not given: say whether \"min\" or \"max\" is best");
    spec.mode = train.at("best_mode").get<std::string>();
  }
  const auto& task = Registry::get().task(first.at("task").at("name"));
  if (task.metrics) {
    const auto names = task.metrics(first);
    if (std::find(names.begin(), names.end(), spec.metric) == names.end()) {
      const std::string hint = closest_match(spec.metric, names);
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      fail(spec.file, "'metric' is '" + spec.metric + "', which the " + task.name + " evaluation does not report (it reports " +
                          list + ")" + (hint.empty() ? "" : "; did you mean '" + hint + "'?"));
    }
  }
  return first;
}

}  // namespace xformer::sweep
