// What a sweep keeps on disk, so that it can be resumed, run as a Slurm array (one process per
// trial, all writing at once) and summarised at any time:
//
//   OUTPUT/sweep.json          the plan: the expanded trials, their overrides, metric, eval split
//   OUTPUT/trials/NAME.json    one status file per trial (each written by the one process that
//                              runs the trial, so concurrent Slurm tasks never share a file)
//   OUTPUT/logs/NAME.log       stdout + stderr of every attempt of the trial
//   OUTPUT/NAME/               the trial's run directory (config.json, metrics.jsonl, ...)
//   OUTPUT/results.md, .csv    the results table
//
// Every file is written to a temporary name and renamed into place.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "xformer/core/atomic_file.h"
#include "xformer/sweep/sweep_spec.h"

namespace xformer::sweep {

// Trial status values.
inline constexpr const char* kPending = "pending";
inline constexpr const char* kRunning = "running";
inline constexpr const char* kDone = "done";
inline constexpr const char* kFailed = "failed";
inline constexpr const char* kInterrupted = "interrupted";

std::string plan_path(const std::string& output);
std::string status_path(const std::string& output, const std::string& trial);
std::string log_path(const std::string& output, const std::string& trial);
std::string run_path(const std::string& output, const std::string& trial);


// The plan of a sweep as JSON, and writing/reading it (DataError naming the file).
nlohmann::json plan_json(const SweepSpec& spec);
void write_plan(const SweepSpec& spec);
nlohmann::json read_plan(const std::string& output);

// A trial's status file; an object with "status": "pending" when there is none yet.
nlohmann::json read_status(const std::string& output, const std::string& trial);
void write_status(const std::string& output, const std::string& trial, const nlohmann::json& status);

}  // namespace xformer::sweep
