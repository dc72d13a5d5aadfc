// Configuration: JSON files with "extends", command-line overrides, and one schema that declares
// every key (type, default, one-line doc). Validation happens in one place: unknown keys are
// errors with a "did you mean" hint, wrong types name the key and the expected type.
//
// Keys are grouped as task.*, model.*, optim.*, train.*. The trainer declares optim/train keys,
// each task its task.* keys and each architecture its model.* keys (see core/registry.h), so
// the schema of a config depends on its task.name and model.arch.
#pragma once
#include <nlohmann/json.hpp>

#include <map>
#include <set>
#include <string>
#include <vector>

namespace xformer {

using json = nlohmann::json;

enum class KeyType { Int, Float, Bool, String, IntList, FloatList, StringList, PathOrPair };

struct KeyDef {
  std::string path;  // "optim.lr"
  KeyType type;
  json default_value;  // null = no default (optional, or required when `required`)
  std::string doc;
  std::vector<std::string> choices;  // allowed values of a String key; empty = any
  json minimum;  // a number: the least value of a numeric key (each element of a list); null = any
  json bound;    // a number that the values must stay below (probabilities: 1); null = none
  size_t length = 0;  // a list key's number of elements; 0 = any
};

class Schema {
 public:
  Schema& add(const std::string& path, KeyType type, json default_value, std::string doc,
              std::vector<std::string> choices = {});
  // The key added last must be at least `least` (numbers, and each number of a list):
  //   s.add("train.log_every", KeyType::Int, 50, "...").at_least(1);
  Schema& at_least(json least);
  // ... must be below `bound` (e.g. 1 for a probability), or hold exactly n elements (lists).
  Schema& below(json bound);
  Schema& length(size_t n);
  const KeyDef* find(const std::string& path) const;
  const std::vector<KeyDef>& keys() const { return keys_; }
  std::vector<std::string> paths() const;

 private:
  std::vector<KeyDef> keys_;
};

// A raw config: the merged JSON of a file and its "extends" chain plus --set overrides, and
// where each part came from (for error messages).
struct RawConfig {
  json value = json::object();
  std::string file;                // the top-level file, "" if none
  std::map<std::string, std::string> origins;  // dotted leaf path -> the file (of the extends chain) it is from
  std::set<std::string> overridden;  // dotted paths set on the command line
};

// Reads FILE, following "extends" (relative to the including file). ConfigError on a missing
// file, invalid JSON, or an extends cycle.
RawConfig load_config_file(const std::string& path);

// Applies "a.b.c=VALUE". VALUE is parsed as JSON when it can be (numbers, booleans, lists,
// quoted strings), otherwise taken as a plain string.
void apply_override(RawConfig& raw, const std::string& assignment);

// Checks every key of `raw` against `schema` and fills in defaults. Returns the resolved config.
json resolve_config(const RawConfig& raw, const Schema& schema);

// Dotted-path access into a JSON object; throws ConfigError naming the path if absent.
const json& at_path(const json& config, const std::string& path);
void set_path(json& config, const std::string& path, json value);

// The closest candidate by edit distance, or "" when nothing is close.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

std::string key_type_name(KeyType type);

}  // namespace xformer
