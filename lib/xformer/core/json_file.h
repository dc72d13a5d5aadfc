// Reading JSON that people write or edit: configs, sweep files, run files, annotations. Every
// failure is one Error naming the document (syntax, a number out of range, absurd nesting),
// never a library exception.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "xformer/core/error.h"

namespace xformer {

// Documents are walked recursively (merging, key listing, copies); deeper nesting is refused
// so that a pathological file cannot overflow the stack.
constexpr int kMaxJsonDepth = 100;

// Parses `input` (a string or an input stream); `what` names it in errors ("config error:
// 'FILE'"), which carry `exit_code`.
// A key given twice in one object is refused (the parser would keep the last silently).
template <class Json = nlohmann::json, class Input>
Json parse_json(Input&& input, const std::string& what, int exit_code) {
  using Event = typename Json::parse_event_t;
  std::vector<std::set<std::string>> keys;  // the keys seen so far in each open object
  auto check = [&](int depth, Event event, Json& parsed) {
    if (depth >= kMaxJsonDepth)
      throw Error(what + " nests JSON deeper than " + std::to_string(kMaxJsonDepth) + " levels", exit_code);
    if (event == Event::object_start) keys.emplace_back();
    if (event == Event::object_end && !keys.empty()) keys.pop_back();
    if (event == Event::key && !keys.empty() && !keys.back().insert(parsed.template get<std::string>()).second)
      throw Error(what + ": key \"" + parsed.template get<std::string>() + "\" appears twice in one object", exit_code);
    return true;
  };
  try {
    return Json::parse(std::forward<Input>(input), check);
  } catch (const typename Json::exception& e) {
    throw Error(what + " is not valid JSON: " + e.what(), exit_code);
  }
}

// Reads and parses the file at `path`, streaming ("cannot be read" when it cannot be opened).
template <class Json = nlohmann::json>
Json read_json_file(const std::string& path, const std::string& what, int exit_code) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw Error(what + " is a folder, not a JSON file", exit_code);
  std::ifstream in(path);
  if (!in) throw Error(what + " cannot be read", exit_code);
  return parse_json<Json>(in, what, exit_code);
}

}  // namespace xformer
