#include "xformer/core/config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "xformer/core/error.h"
#include "xformer/core/json_file.h"

namespace fs = std::filesystem;

namespace xformer {

Schema& Schema::add(const std::string& path, KeyType type, json default_value, std::string doc,
                    std::vector<std::string> choices) {
  if (find(path)) throw std::logic_error("config key declared twice: " + path);
  keys_.push_back({path, type, std::move(default_value), std::move(doc), std::move(choices), json(), json(), 0});
  return *this;
}

Schema& Schema::at_least(json least) {
  if (keys_.empty() || !least.is_number()) throw std::logic_error("at_least() needs a number, after add()");
  keys_.back().minimum = std::move(least);
  return *this;
}

Schema& Schema::below(json bound) {
  if (keys_.empty() || !bound.is_number()) throw std::logic_error("below() needs a number, after add()");
  keys_.back().bound = std::move(bound);
  return *this;
}

Schema& Schema::length(size_t n) {
  if (keys_.empty()) throw std::logic_error("length() comes after add()");
  keys_.back().length = n;
  return *this;
}

const KeyDef* Schema::find(const std::string& path) const {
  for (const auto& k : keys_)
    if (k.path == path) return &k;
  return nullptr;
}

std::vector<std::string> Schema::paths() const {
  std::vector<std::string> out;
  for (const auto& k : keys_) out.push_back(k.path);
  return out;
}

std::string key_type_name(KeyType type) {
  switch (type) {
    case KeyType::Int: return "an integer";
    case KeyType::Float: return "a number";
    case KeyType::Bool: return "true or false";
    case KeyType::String: return "a string";
    case KeyType::IntList: return "a list of integers";
    case KeyType::FloatList: return "a list of numbers";
    case KeyType::StringList: return "a list of strings";
    case KeyType::PathOrPair: return "a path or a list of two paths";
  }
  return "?";
}

namespace {

// Objects merge key by key; anything else in `over` replaces `base`.
void deep_merge(json& base, const json& over) {
  for (auto it = over.begin(); it != over.end(); ++it) {
    if (it.value().is_object() && base.contains(it.key()) && base[it.key()].is_object())
      deep_merge(base[it.key()], it.value());
    else
      base[it.key()] = it.value();
  }
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '.')) parts.push_back(part);
  if (!path.empty() && path.back() == '.') parts.push_back("");  // "a.b." has an empty last part
  return parts;
}

// A file writes {"optim": {"lr": 1}}; the dotted form "optim.lr" is --set's only.
void refuse_dotted_keys(const json& j, const std::string& file, const std::string& prefix) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string p = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (it.key().find('.') != std::string::npos) {
      std::string nested = "...";  // "a.b.c" -> "a": {"b": {"c": ...}}
      const auto parts = split_path(it.key());
      for (auto part = parts.rbegin(); part != parts.rend(); ++part)
        nested = "\"" + *part + "\": " + (part == parts.rbegin() ? nested : "{" + nested + "}");
      throw ConfigError("config error: key '" + p + "' in '" + file + "': nest it (" + nested +
                        "); dotted names are for --set");
    }
    if (it.value().is_object()) refuse_dotted_keys(it.value(), file, p);
  }
}

void leaf_paths(const json& j, const std::string& prefix, std::vector<std::string>& out);

// `origins`: for each leaf's dotted path, the file whose value it holds (the last in the chain).
json load_with_extends(const fs::path& path, std::vector<std::string>& chain, std::map<std::string, std::string>& origins) {
  std::error_code ec;
  const std::string canonical = fs::weakly_canonical(path, ec).string();
  if (ec) throw ConfigError("config error: cannot resolve '" + path.string() + "': " + ec.message());
  if (std::find(chain.begin(), chain.end(), canonical) != chain.end())
    throw ConfigError("config error: \"extends\" cycle through '" + path.string() + "'");
  chain.push_back(canonical);

  if (!fs::is_regular_file(path))
    throw ConfigError("config error: cannot open config file '" + path.string() + "'" +
                      (fs::is_directory(path) ? " (it is a folder)" : ""));
  json doc = read_json_file(path.string(), "config error: '" + path.string() + "'", kExitUsage);
  if (!doc.is_object())
    throw ConfigError("config error: '" + path.string() + "' must hold a JSON object");
  refuse_dotted_keys(doc, path.string(), "");

  json merged = json::object();
  if (doc.contains("extends")) {
    if (!doc["extends"].is_string())
      throw ConfigError("config error: \"extends\" in '" + path.string() + "' must be a path");
    fs::path parent = path.parent_path() / doc["extends"].get<std::string>();
    merged = load_with_extends(parent, chain, origins);
    doc.erase("extends");
  }
  std::vector<std::string> leaves;
  leaf_paths(doc, "", leaves);
  for (const auto& leaf : leaves) origins[leaf] = path.string();
  deep_merge(merged, doc);
  return merged;
}

// Collects the dotted paths of all leaves of `j`: values that are not objects, and empty
// objects below the top level (a key given {} is a value to check; an empty group holds no keys).
void leaf_paths(const json& j, const std::string& prefix, std::vector<std::string>& out) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string p = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (it.value().is_object() && !(it.value().empty() && !prefix.empty()))
      leaf_paths(it.value(), p, out);
    else
      out.push_back(p);
  }
}

// JSON integers beyond int64 (parsed as unsigned) would wrap when read.
bool is_int64(const json& v) {
  return v.is_number_integer() &&
         !(v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
}

bool all_int64(const json& v) { return v.is_array() && std::all_of(v.begin(), v.end(), is_int64); }

bool all_of_type(const json& v, bool (json::*pred)() const noexcept) {
  if (!v.is_array()) return false;
  for (const auto& e : v)
    if (!(e.*pred)()) return false;
  return true;
}

bool type_matches(const json& v, KeyType type) {
  switch (type) {
    case KeyType::Int: return is_int64(v);
    case KeyType::Float: return v.is_number();
    case KeyType::Bool: return v.is_boolean();
    case KeyType::String: return v.is_string();
    case KeyType::IntList: return all_int64(v);
    case KeyType::FloatList: return all_of_type(v, &json::is_number);
    case KeyType::StringList: return all_of_type(v, &json::is_string);
    case KeyType::PathOrPair:
      return v.is_string() || (all_of_type(v, &json::is_string) && v.size() == 2);
  }
  return false;
}

std::string origin_of(const RawConfig& raw, const std::string& path) {
  if (raw.overridden.count(path)) return "--set " + path;
  if (auto it = raw.origins.find(path); it != raw.origins.end()) return "'" + it->second + "'";
  return raw.file.empty() ? "the config" : "'" + raw.file + "'";
}

}  // namespace

RawConfig load_config_file(const std::string& path) {
  std::vector<std::string> chain;
  RawConfig raw;
  raw.value = load_with_extends(path, chain, raw.origins);
  raw.file = path;
  return raw;
}

void apply_override(RawConfig& raw, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError("usage error: --set expects KEY=VALUE (e.g. optim.lr=5e-4), got '" +
                      assignment + "'");
  std::string key = assignment.substr(0, eq);
  std::string text = assignment.substr(eq + 1);
  json value;
  try {
    value = parse_json(text, "--set " + key, kExitUsage);
  } catch (const Error& e) {
    if (!text.empty() && (text[0] == '{' || text[0] == '['))  // meant as an object or a list
      throw ConfigError(std::string(e.what()) + " (a string that starts with [ or { is given quoted: " + key +
                        "='\"" + text + "\"')");
    value = text;  // not JSON: a plain string such as a path or a name
  }
  for (const auto& part : split_path(key))
    if (part.empty())
      throw ConfigError("usage error: --set key '" + key + "' has an empty component");
  // An object merges into the group it names (--set 'optim={"lr":1}' keeps the other optim keys).
  json* existing = &raw.value;
  for (const auto& part : split_path(key)) existing = existing && existing->is_object() && existing->contains(part) ? &(*existing)[part] : nullptr;
  // A group takes an object only: `--set train=5` would drop every train key of the file.
  if (existing && existing->is_object() && !value.is_object()) {
    const std::string example = existing->empty() ? "" : " (e.g. " + key + "." + existing->begin().key() + "=...)";
    throw ConfigError("usage error: --set " + key + ": '" + key + "' is a group of keys, not a value; set its keys" +
                      example + " or give it an object");
  }
  if (value.is_object() && existing && existing->is_object()) {
    deep_merge(*existing, value);
    std::vector<std::string> leaves;
    leaf_paths(value, key, leaves);
    raw.overridden.insert(leaves.begin(), leaves.end());
  } else {
    if (value.is_object() && !value.empty()) {  // a new group: its keys come from --set too
      std::vector<std::string> leaves;
      leaf_paths(value, key, leaves);
      raw.overridden.insert(leaves.begin(), leaves.end());
    }
    set_path(raw.value, key, value);
    raw.overridden.insert(key);
  }
}

json resolve_config(const RawConfig& raw, const Schema& schema) {
  std::vector<std::string> given;
  leaf_paths(raw.value, "", given);
  const std::vector<std::string> known = schema.paths();
  for (const auto& path : given) {
    const KeyDef* def = schema.find(path);
    if (!def) {
      std::string hint = closest_match(path, known);
      if (hint.empty()) {  // right key in the wrong group, e.g. train.lr for optim.lr
        std::string leaf = path.substr(path.rfind('.') + 1);
        for (const auto& k : known)
          if (k.substr(k.rfind('.') + 1) == leaf) hint = k;
      }
      throw ConfigError("config error: unknown key '" + path + "' in " + origin_of(raw, path) +
                        (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
    }
    const json& v = at_path(raw.value, path);
    if (v.is_null()) continue;  // explicit null = use the default
    if (!type_matches(v, def->type))
      throw ConfigError("config error: '" + path + "' in " + origin_of(raw, path) + " must be " +
                        key_type_name(def->type) + ", got " + v.dump());
    if (!def->choices.empty() &&
        std::find(def->choices.begin(), def->choices.end(), v.get<std::string>()) ==
            def->choices.end()) {
      std::string allowed;
      for (const auto& c : def->choices) allowed += (allowed.empty() ? "" : "|") + c;
      throw ConfigError("config error: '" + path + "' in " + origin_of(raw, path) +
                        " must be one of " + allowed + ", got " + v.dump());
    }
    auto refuse = [&](const std::string& expected) {
      return ConfigError("config error: '" + path + "' in " + origin_of(raw, path) + " must " + expected +
                         ", got " + v.dump());
    };
    for (const auto& x : v.is_array() ? v : json::array({v})) {
      if (!x.is_number()) continue;
      if (def->minimum.is_number() && x.get<double>() < def->minimum.get<double>())
        throw refuse("be at least " + def->minimum.dump());
      if (def->bound.is_number() && !(x.get<double>() < def->bound.get<double>()))
        throw refuse("be below " + def->bound.dump());
    }
    if (def->length > 0 && v.size() != def->length) throw refuse("have " + std::to_string(def->length) + " elements");
  }
  json resolved = json::object();
  for (const auto& def : schema.keys()) {
    json v = def.default_value;
    try {
      const json& given_v = at_path(raw.value, def.path);
      if (!given_v.is_null()) v = given_v;
    } catch (const Error&) {
    }
    // Floats given as integers ("lr": 1) are stored as floats so that readers can rely on type.
    if (def.type == KeyType::Float && v.is_number_integer()) v = v.get<double>();
    set_path(resolved, def.path, v);
  }
  // The one rule across keys that every attention model shares: heads split the width evenly.
  const json model = resolved.value("model", json::object());
  if (model.contains("d_model") && model.contains("heads") && model["heads"].get<int64_t>() > 0 &&
      model["d_model"].get<int64_t>() % model["heads"].get<int64_t>() != 0)
    throw ConfigError("config error: 'model.d_model' (" + model["d_model"].dump() + ") must be divisible by " +
                      "'model.heads' (" + model["heads"].dump() + ")");
  return resolved;
}

const json& at_path(const json& config, const std::string& path) {
  const json* node = &config;
  for (const auto& part : split_path(path)) {
    if (!node->is_object() || !node->contains(part))
      throw ConfigError("config error: missing key '" + path + "'");
    node = &(*node)[part];
  }
  return *node;
}

void set_path(json& config, const std::string& path, json value) {
  json* node = &config;
  auto parts = split_path(path);
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    json& child = (*node)[parts[i]];
    if (!child.is_object()) child = json::object();
    node = &child;
  }
  (*node)[parts.back()] = std::move(value);
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  auto distance = [](const std::string& a, const std::string& b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= b.size(); ++j)
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
      std::swap(prev, cur);
    }
    return prev[b.size()];
  };
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& c : candidates) {
    size_t d = distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  // Accept up to a third of the word's length in edits (typos, a wrong group prefix).
  return best_d <= std::max<size_t>(2, word.size() / 3) ? best : "";
}

}  // namespace xformer
