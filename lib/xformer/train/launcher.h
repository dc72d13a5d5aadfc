// `xformer train --nproc N`: runs N ranks of the same command on this machine, as torchrun
// would (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT =
// a free port unless set), and supervises them: when one rank fails, the launcher names it,
// stops the others (SIGTERM, then SIGKILL after a grace period) and fails too. SIGINT/SIGTERM
// to the launcher reach every rank (the first: each saves a checkpoint and exits 130; a second:
// they exit at once, and any that cannot are killed after the grace period).
#pragma once
#include <chrono>
#include <string>
#include <vector>

namespace xformer::train {

// `args` are the ranks' arguments after the program name (e.g. {"train", "--config", F}).
// Returns the job's exit code: 0, the first failing rank's code (1 if it was killed by a
// signal), or 130 when interrupted.
int run_local_ranks(int nproc, const std::vector<std::string>& args,
                    std::chrono::seconds grace = std::chrono::seconds(10));

}  // namespace xformer::train
