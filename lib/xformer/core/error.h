// Errors that reach the user. Every message is one line naming the file/key/value at fault and
// what was expected; the exit code tells usage/config mistakes (2) from runtime failures (1).
#pragma once
#include <stdexcept>
#include <string>

namespace xformer {

enum ExitCode : int { kExitOk = 0, kExitFailure = 1, kExitUsage = 2, kExitInterrupted = 130 };

class Error : public std::runtime_error {
 public:
  Error(const std::string& message, int exit_code = kExitFailure)
      : std::runtime_error(message), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

// A mistake in the command line or the configuration: exit code 2.
inline Error ConfigError(const std::string& message) { return Error(message, kExitUsage); }
// Unreadable or corrupt input data, a failed write, ...: exit code 1.
inline Error DataError(const std::string& message) { return Error(message, kExitFailure); }

}  // namespace xformer
