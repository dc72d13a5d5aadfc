// Reading a parallel corpus: a TSV file of `source<TAB>target` lines, or two line-aligned files.
// A malformed line (no TAB, several TABs, invalid UTF-8) is an error naming file and line;
// pairs with an empty side are skipped and counted.
#pragma once
#include <nlohmann/json.hpp>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace xformer::data {

// True for a line of nothing but whitespace: skipped in corpora, left blank in outputs.
bool is_blank(const std::string& line);

struct ParallelCorpus {
  std::vector<std::string> source, target;
  int64_t skipped_empty = 0;
  std::string description;  // "file.tsv" or "a.en + a.de", for messages
  size_t size() const { return source.size(); }
};

// `spec` is a path (TSV) or a list of two paths. DataError on a missing or malformed file.
ParallelCorpus read_parallel_corpus(const nlohmann::json& spec);

// One `source<TAB>target` line split at its TAB. DataError "WHERE: expected 'source<TAB>target'
// (no TAB)" (or more than one TAB), or "WHERE: not valid UTF-8"; WHERE is e.g. "file.tsv:3".
std::pair<std::string, std::string> split_pair_line(const std::string& line, const std::string& where);

// Lines of a text file, or of stdin for "-" (without their line ends, "\r\n" included).
// DataError naming the file if unreadable.
std::vector<std::string> read_lines(const std::string& path);
// The same lines handed to `fn` one at a time, each as soon as it has been read.
void for_each_line(const std::string& path, const std::function<void(const std::string&)>& fn);
// The DataError those two throw for a path they cannot read, before anything is read.
void check_input_file(const std::string& path);
// ConfigError (a usage error) when `sample` would write over its input. `out` is where it
// writes (--out, or the run's samples/ folder it defaults to): it may not be the input, nor lie
// inside a folder of inputs (outputs would replace inputs, or be read as inputs the next time);
// beside an input file, none of `outputs` (the files it will write there) may be that file.
// `out` or `input` may be empty (not given) or "-"; `option` names the input in the message.
void check_output_apart_from_input(const std::string& out, const std::string& input,
                                   const std::vector<std::string>& outputs = {},
                                   const std::string& option = "--input");

// ConfigError (a usage error) when `dir`, the folder `sample` writes its files into, exists and
// is not a folder.
void check_output_folder(const std::string& dir);

bool is_valid_utf8(const std::string& s);

}  // namespace xformer::data
