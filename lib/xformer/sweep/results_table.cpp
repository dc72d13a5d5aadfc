#include "xformer/sweep/results_table.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "xformer/sweep/sweep_spec.h"
#include "xformer/core/error.h"
#include "xformer/sweep/sweep_state.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace xformer::sweep {

namespace {

struct Row {
  int index = 0;
  std::string name, status;
  json settings = json::object();
  int64_t step = -1;
  json best_valid;  // null when none
  json eval;        // null when none
  std::optional<double> key;
  int group = 0;  // 0 done with metric, 1 done without, 2 running/pending/interrupted, 3 failed
};

std::string format_number(const json& v, bool full) {
  if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d)) return std::isnan(d) ? "nan" : (d > 0 ? "inf" : "-inf");
    char buf[64];
    std::snprintf(buf, sizeof buf, full ? "%.10g" : "%.4g", d);
    return buf;
  }
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "";
  return v.dump();
}

// The numeric metrics of a metrics.jsonl line (step, split, epoch and paths left out).
std::vector<std::string> metric_keys(const json& line) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : line.items())
    if (v.is_number() && k != "step" && k != "epoch") keys.push_back(k);
  return keys;
}

void read_metrics(const std::string& run_dir, const std::string& metric, bool higher,
                  const std::string& eval_split, Row& row) {
  std::ifstream in((fs::path(run_dir) / "metrics.jsonl").string());
  std::string line;
  while (std::getline(in, line)) {
    json j;
    try {
      j = json::parse(line);
    } catch (const json::parse_error&) {
      continue;  // a line being written right now
    }
    if (!j.is_object()) continue;
    if (j.contains("step") && j["step"].is_number_integer()) row.step = std::max<int64_t>(row.step, j["step"].get<int64_t>());
    const std::string split = j.value("split", "");
    if (j.contains("checkpoint")) {  // a line written by `xformer eval`; not one with --set, --no-ema or --ensemble
      if (split == eval_split && !j.contains("set") && j.value("ema", true) && !j.contains("ensemble")) row.eval = j;
      continue;
    }
    if (split != "valid" || !j.contains(metric) || !j[metric].is_number()) continue;
    const double v = j[metric].get<double>();
    if (std::isnan(v)) continue;
    if (!row.key || (higher ? v > *row.key : v < *row.key)) {
      row.key = v;
      row.best_valid = j;
    }
  }
}

std::string this_host() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

}  // namespace

std::string csv_quote(const std::string& cell) {
  if (cell.find_first_of(",\"\n\r") == std::string::npos) return cell;
  std::string out = "\"";
  for (char c : cell) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

namespace {
ResultsTable tabulate(const std::string& output, const json& plan) {
  const std::string metric = plan.value("metric", "loss");
  const bool higher = plan.value("mode", "min") == "max";
  const json eval = plan.value("eval", json::object());
  const bool eval_enabled = eval.value("enabled", false);
  const std::string eval_split = eval.value("split", "test");
  std::vector<std::string> axes = plan.value("axes", std::vector<std::string>{});

  std::vector<Row> rows;
  for (const auto& t : plan.at("trials")) {
    Row r;
    r.index = t.value("index", 0);
    r.name = t.value("name", "");
    for (const auto& kv : t.value("settings", json::array()))
      if (kv.is_array() && kv.size() == 2) r.settings[kv[0].get<std::string>()] = kv[1];
    const json status = read_status(output, r.name);
    r.status = status.value("status", kPending);
    // A status written for other overrides (the sweep file changed since) is not this trial's.
    if (status.contains("overrides") && status["overrides"] != t.value("overrides", json::array()) &&
        r.status != kRunning)
      r.status = kPending;
    // "running" written by a sweep process on this machine that is gone (killed, or the machine
    // rebooted): the trial is not running any more. A re-run resumes it.
    if (r.status == kRunning && status.contains("sweep_pid") && status.value("host", "") == this_host() &&
        ::kill(static_cast<pid_t>(status["sweep_pid"].get<int64_t>()), 0) != 0 && errno == ESRCH)
      r.status = "stopped";
    read_metrics(run_path(output, r.name), metric, higher, eval_split, r);
    if (r.status == kDone) r.group = r.key ? 0 : 1;
    else if (r.status == kFailed) r.group = 3;
    else r.group = 2;
    rows.push_back(std::move(r));
  }
  std::stable_sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) {
    if (a.group != b.group) return a.group < b.group;
    if (a.group == 0 && *a.key != *b.key) return higher ? *a.key > *b.key : *a.key < *b.key;
    return a.index < b.index;
  });

  // Columns: the selection metric first, then the other metrics of the lines, alphabetically.
  std::vector<std::string> valid_keys{metric}, eval_keys;
  std::set<std::string> valid_seen{metric}, eval_seen;
  for (const auto& r : rows) {
    if (!r.best_valid.is_null())
      for (const auto& k : metric_keys(r.best_valid))
        if (valid_seen.insert(k).second) valid_keys.push_back(k);
    if (!r.eval.is_null())
      for (const auto& k : metric_keys(r.eval))
        if (eval_seen.insert(k).second) eval_keys.push_back(k);
  }
  std::sort(valid_keys.begin() + 1, valid_keys.end());
  std::sort(eval_keys.begin(), eval_keys.end());
  if (eval_seen.count(metric)) {
    eval_keys.erase(std::find(eval_keys.begin(), eval_keys.end(), metric));
    eval_keys.insert(eval_keys.begin(), metric);
  }

  ResultsTable table;
  table.title = "Sweep " + plan.value("name", std::string("?")) + ": " + std::to_string(rows.size()) +
                " trials, sorted by valid " + metric + " (" + (higher ? "higher" : "lower") + " is better)";
  table.header = {"rank", "trial", "status"};
  for (const auto& a : axes) table.header.push_back(a);
  table.header.push_back("step");
  table.header.push_back("valid_step");
  for (const auto& k : valid_keys) table.header.push_back("valid_" + k);
  // An eval of the valid split gets its own names, apart from the best validation line's.
  const std::string eval_prefix = eval_split == "valid" ? "eval_valid_" : eval_split + "_";
  for (const auto& k : eval_keys) table.header.push_back(eval_prefix + k);

  int rank = 0;
  for (const auto& r : rows) {
    std::vector<std::string> md, csv;
    auto cell = [&](const json& v) {
      md.push_back(format_number(v, false));
      csv.push_back(format_number(v, true));
    };
    cell(r.group == 0 ? json(++rank) : json());
    cell(r.name);
    cell(r.status);
    for (const auto& a : axes) cell(r.settings.contains(a) ? json(value_label(r.settings[a])) : json());
    cell(r.step >= 0 ? json(r.step) : json());
    cell(r.best_valid.is_null() ? json() : r.best_valid.value("step", json()));
    for (const auto& k : valid_keys) cell(r.best_valid.is_null() ? json() : r.best_valid.value(k, json()));
    for (const auto& k : eval_keys) cell(r.eval.is_null() ? json() : r.eval.value(k, json()));
    table.rows.push_back(std::move(md));
    table.csv_rows.push_back(std::move(csv));
    if (r.status == kFailed) {
      const json status = read_status(output, r.name);
      std::string codes;
      for (const auto& c : status.value("exit_codes", json::array())) codes += (codes.empty() ? "" : ", ") + c.dump();
      table.notes.push_back("failed: " + r.name + " after " + std::to_string(status.value("attempts", 0)) +
                            " attempt(s) (exit codes " + codes + "); log: " + log_path(output, r.name));
    }
  }
  if (eval_enabled && eval_keys.empty())
    table.notes.push_back("no " + eval_split + " evaluation has finished yet");
  return table;
}
}  // namespace

ResultsTable build_results(const std::string& output) {
  const json plan = read_plan(output);
  try {
    if (!plan.is_object()) throw DataError("sweep plan '" + plan_path(output) + "' is damaged (no JSON object)");
    return tabulate(output, plan);
  } catch (const nlohmann::json::exception& e) {  // a field of the wrong type
    throw DataError("sweep plan '" + plan_path(output) + "' is damaged (" + e.what() + ")");
  }
}

std::string to_markdown(const ResultsTable& table) {
  auto escape = [](const std::string& s) {
    std::string out;
    for (char c : s) {  // one table row per trial: escapes, and line breaks as spaces
      if (c == '\n' || c == '\r') c = ' ';
      if (c == '|' || c == '\\') out += '\\';
      out += c;
    }
    return out;
  };
  std::string md = "# " + table.title + "\n\n|";
  for (const auto& h : table.header) md += " " + escape(h) + " |";
  md += "\n|";
  for (size_t i = 0; i < table.header.size(); ++i) md += "---|";
  md += "\n";
  for (const auto& row : table.rows) {
    md += "|";
    for (const auto& c : row) md += " " + escape(c) + " |";
    md += "\n";
  }
  if (!table.notes.empty()) {
    md += "\n";
    for (const auto& n : table.notes) md += "- " + n + "\n";
  }
  return md;
}

std::string to_csv(const ResultsTable& table) {
  std::string csv;
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size(); ++i) csv += (i ? "," : "") + csv_quote(cells[i]);
    csv += "\n";
  };
  line(table.header);
  for (const auto& r : table.csv_rows) line(r);
  return csv;
}

std::string write_results(const std::string& output) {
  const ResultsTable table = build_results(output);
  const std::string md = to_markdown(table);
  write_file_atomically((fs::path(output) / "results.md").string(), md);
  write_file_atomically((fs::path(output) / "results.csv").string(), to_csv(table));
  return md;
}

}  // namespace xformer::sweep
