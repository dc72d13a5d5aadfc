// Reading JSON that people write or edit: configs, sweep files, run files, annotations. Every
// failure is one Error naming the document (syntax, a number out of range, absurd nesting),
// never a library exception.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "xformer/core/error.h"

namespace xformer {

// Documents are walked recursively (merging, key listing, copies); deeper nesting is refused
// so that a pathological file cannot overflow the stack.
constexpr int kMaxJsonDepth = 100;

// Parses `input` (a string or an input stream); `what` names it in errors ("config error:
// 'FILE'"), which carry `exit_code`.
template <class Json = nlohmann::json, class Input>
Json parse_json(Input&& input, const std::string& what, int exit_code) {
  auto limit_depth = [&](int depth, typename Json::parse_event_t, Json&) {
    if (depth >= kMaxJsonDepth)
      throw Error(what + " nests JSON deeper than " + std::to_string(kMaxJsonDepth) + " levels", exit_code);
    return true;
  };
  try {
    return Json::parse(std::forward<Input>(input), limit_depth);
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
