#include "cli/cli_helpers.h"

#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>

#include "test_support.h"
#include "xformer/core/registry.h"

namespace xformer::testing {

CommandResult run_shell(const std::string& command) {
  CommandResult r;
  const std::string full = "cd '" + std::string(XFORMER_SOURCE_DIR) + "' && " + command + " 2>&1";
  FILE* pipe = popen(full.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

CommandResult run_xformer(const std::string& args) {
  return run_shell("'" + std::string(XFORMER_BINARY) + "' " + args);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

std::vector<nlohmann::json> read_metrics(const std::string& run_dir, const std::string& split) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.value("split", "") == split) out.push_back(j);
  }
  return out;
}

std::string tiny_args(const std::string& run_dir, const std::string& spm_cache) {
  return "--config configs/translation/tiny.json --run-dir '" + run_dir +
         "' --set task.spm_cache='" + spm_cache + "' --set train.threads=1 --set train.blas_threads=1";
}

void check_exact_resume(const std::string& dir, const std::function<std::string(const std::string&)>& train_args,
                        int first, int steps, const std::string& resume_prefix) {
  const std::string full = dir + "/full", split = dir + "/split";
  auto a_run = run_xformer("train " + train_args(full) + " --set train.max_steps=" + std::to_string(steps));
  INFO(a_run.output);
  REQUIRE(a_run.exit_code == 0);
  auto b_run = run_xformer("train " + train_args(split) + " --set train.max_steps=" + std::to_string(first));
  INFO(b_run.output);
  REQUIRE(b_run.exit_code == 0);
  auto rest = run_xformer("train " + resume_prefix + " --resume --run-dir '" + split +
                          "' --set train.max_steps=" + std::to_string(steps));
  INFO(rest.output);
  REQUIRE(rest.exit_code == 0);
  auto a = read_metrics(full, "train"), b = read_metrics(split, "train");
  REQUIRE(a.size() == static_cast<size_t>(steps));
  REQUIRE(b.size() == static_cast<size_t>(steps));
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("step " << i + 1);
    CHECK(b[i]["step"] == a[i]["step"]);
    CHECK(b[i]["loss"].get<double>() == a[i]["loss"].get<double>());  // exact, on the CPU
    CHECK(b[i]["lr"].get<double>() == a[i]["lr"].get<double>());
  }
}

void check_metrics_declared(const std::string& run_dir) {
  std::ifstream in(run_dir + "/config.json");
  const auto config = nlohmann::json::parse(in);
  register_builtins();
  const auto declared = Registry::get().task(config["task"]["name"]).metrics(config);
  const auto valid = read_metrics(run_dir, "valid");
  REQUIRE(!valid.empty());
  for (const auto& [name, value] : valid.back().items()) {
    if (name == "step" || name == "split") continue;
    CAPTURE(name);
    CHECK(std::find(declared.begin(), declared.end(), name) != declared.end());
  }
}

}  // namespace xformer::testing
