#include "xformer/data/parallel_corpus.h"

#include <filesystem>
#include <fstream>
#include <iostream>

#include "xformer/core/error.h"

namespace xformer::data {

bool is_blank(const std::string& line) { return line.find_first_not_of(" \t\r\f\v") == std::string::npos; }

bool is_valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    const int extra = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
    if (extra < 0) return false;
    uint32_t cp = extra == 0 ? c : c & (0x3F >> extra);
    for (int k = 1; k <= extra; ++k) {
      if (i + k >= s.size() || (static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8 (RFC 3629).
    static const uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return false;
    i += extra + 1;
  }
  return true;
}

namespace {
void strip_cr(std::string& line) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
}

// Line `n` (1-based) without its "\r" and, on the first line, without a UTF-8 byte-order mark
// (which some editors write and which would otherwise start the first sentence).
void clean_line(std::string& line, int64_t n) {
  strip_cr(line);
  if (n == 1 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3);
}

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n";
  auto b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::ifstream open_or_throw(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw DataError("corpus file '" + path + "' is a folder");
  // A path that names nothing is a mistake in the config or the command line (exit 2).
  if (!std::filesystem::exists(path, ec)) throw ConfigError("corpus file '" + path + "' does not exist");
  std::ifstream in(path);
  if (!in) throw DataError("cannot open corpus file '" + path + "'");
  return in;
}
}  // namespace

void check_input_file(const std::string& path) {
  if (path == "-") return;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw ConfigError("usage error: cannot open input file '" + path + "' (it does not exist)");
  std::ifstream file(path);
  if (!file || std::filesystem::is_directory(path))
    throw DataError("cannot open input file '" + path + "'" + (file ? " (it is a folder)" : ""));
}

void check_output_apart_from_input(const std::string& out, const std::string& input,
                                   const std::vector<std::string>& outputs, const std::string& option) {
  namespace fs = std::filesystem;
  if (out.empty() || input.empty() || out == "-" || input == "-") return;
  std::error_code ec;
  if (fs::equivalent(input, out, ec))
    throw ConfigError("usage error: the output '" + out + "' is the " + option + " " +
                      (fs::is_directory(input, ec) ? "folder" : "file"));
  if (!fs::is_directory(input, ec)) {  // a file: only an output of the same name replaces it
    for (const auto& o : outputs)
      if (fs::equivalent(o, input, ec))
        throw ConfigError("usage error: the output '" + o + "' would replace the " + option + " file '" + input +
                          "': choose another --out");
    return;
  }
  auto resolved = [&](const std::string& p) {  // absolute, links resolved, no trailing separator
    auto r = fs::weakly_canonical(p, ec);
    return r.has_filename() ? r : r.parent_path();
  };
  const auto rel = resolved(out).lexically_relative(resolved(input));
  if (!rel.empty() && *rel.begin() != "..")
    throw ConfigError("usage error: the output '" + out + "' is inside the " + option + " folder '" + input +
                      "' (outputs would replace inputs or be read as inputs): choose another --out");
}

void check_output_folder(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec))
    throw ConfigError("usage error: --out '" + dir + "' is a file; this task writes a folder of files there");
}

void for_each_line(const std::string& path, const std::function<void(const std::string&)>& fn) {
  check_input_file(path);
  std::ifstream file;
  if (path != "-") file.open(path);
  std::istream& in = path == "-" ? std::cin : file;
  int64_t n = 0;
  for (std::string line; std::getline(in, line);) clean_line(line, ++n), fn(line);
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  for_each_line(path, [&](const std::string& line) { lines.push_back(line); });
  return lines;
}

std::pair<std::string, std::string> split_pair_line(const std::string& line, const std::string& where) {
  const auto tab = line.find('\t');
  if (tab == std::string::npos || line.find('\t', tab + 1) != std::string::npos)
    throw DataError(where + ": expected 'source<TAB>target' (" +
                    (tab == std::string::npos ? "no TAB" : "more than one TAB") + ")");
  if (!is_valid_utf8(line)) throw DataError(where + ": not valid UTF-8");
  return {line.substr(0, tab), line.substr(tab + 1)};
}

ParallelCorpus read_parallel_corpus(const nlohmann::json& spec) {
  ParallelCorpus c;
  auto add = [&](std::string src, std::string tgt) {
    src = trim(src), tgt = trim(tgt);
    if (src.empty() || tgt.empty()) ++c.skipped_empty;
    else c.source.push_back(std::move(src)), c.target.push_back(std::move(tgt));
  };
  std::string line;
  if (spec.is_string()) {
    const std::string path = spec.get<std::string>();
    c.description = path;
    auto in = open_or_throw(path);
    for (int64_t n = 1; std::getline(in, line); ++n) {
      clean_line(line, n);
      if (is_blank(line)) continue;
      auto [source, target] = split_pair_line(line, path + ":" + std::to_string(n));
      add(std::move(source), std::move(target));
    }
    return c;
  }
  const auto paths = spec.get<std::vector<std::string>>();
  c.description = paths.at(0) + " + " + paths.at(1);
  auto src = open_or_throw(paths[0]);
  auto tgt = open_or_throw(paths[1]);
  std::string other;
  for (int64_t n = 1;; ++n) {
    bool a = static_cast<bool>(std::getline(src, line));
    bool b = static_cast<bool>(std::getline(tgt, other));
    if (!a && !b) break;
    if (a != b)
      throw DataError(paths[a ? 1 : 0] + ": ends at line " + std::to_string(n - 1) + " but '" +
                      paths[a ? 0 : 1] + "' goes on: the files must be line-aligned");
    clean_line(line, n), clean_line(other, n);
    for (const auto* s : {&line, &other})
      if (!is_valid_utf8(*s))
        throw DataError(paths[s == &line ? 0 : 1] + ":" + std::to_string(n) + ": not valid UTF-8");
    add(line, other);
  }
  return c;
}

}  // namespace xformer::data
