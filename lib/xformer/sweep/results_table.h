// The results table of a sweep: one row per trial with its status, its axis settings, the step
// it reached, its best validation line (chosen by the sweep's metric and mode) and the metrics of
// its eval run if there was one. Rows are sorted by the metric, best first; trials without it
// (pending, running, failed) follow in trial order.
#pragma once
#include <string>
#include <vector>

namespace xformer::sweep {

struct ResultsTable {
  std::string title;                         // "Sweep NAME: 4 trials, sorted by valid bleu (max)"
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;      // Markdown cells (numbers to 4 digits)
  std::vector<std::vector<std::string>> csv_rows;  // CSV cells (full precision)
  std::vector<std::string> notes;            // failed trials and their logs
};

// Reads OUTPUT/sweep.json, the trials' status files and their metrics.jsonl.
ResultsTable build_results(const std::string& output);

std::string to_markdown(const ResultsTable& table);
std::string to_csv(const ResultsTable& table);
std::string csv_quote(const std::string& cell);

// Builds the table and writes OUTPUT/results.md and OUTPUT/results.csv; returns the Markdown.
std::string write_results(const std::string& output);

}  // namespace xformer::sweep
