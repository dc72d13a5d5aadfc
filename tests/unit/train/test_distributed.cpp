// The c10d layer under multi-process training: the environment it reads, and its collectives
// checked against sums computed here, with two ranks as two threads of this process.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "test_support.h"
#include "xformer/core/error.h"
#include "xformer/core/subprocess.h"
#include "xformer/train/distributed.h"
#include "xformer/train/grad_reducer.h"

using namespace xformer;
using namespace xformer::train;
using xformer::testing::free_port;

namespace {

// Sets environment variables for one scope and restores the previous values after it.
class ScopedEnv {
 public:
  explicit ScopedEnv(std::initializer_list<std::pair<std::string, std::string>> vars) {
    for (const auto& [k, v] : vars) {
      const char* old = std::getenv(k.c_str());
      saved_.push_back({k, old ? std::optional<std::string>(old) : std::nullopt});
      setenv(k.c_str(), v.c_str(), 1);
    }
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : saved_) v ? setenv(k.c_str(), v->c_str(), 1) : unsetenv(k.c_str());
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

const std::vector<std::string> kDistVars = {"WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                                            "MASTER_ADDR", "MASTER_PORT", "SLURM_STEP_NUM_TASKS",
                                            "SLURM_PROCID", "SLURM_LOCALID", "SLURM_STEP_TASKS_PER_NODE"};

// Every distribution variable unset for the scope.
struct CleanEnv {
  std::vector<std::pair<std::string, std::string>> saved;
  CleanEnv() {
    for (const auto& k : kDistVars)
      if (const char* v = std::getenv(k.c_str())) saved.push_back({k, v}), unsetenv(k.c_str());
  }
  ~CleanEnv() {
    for (const auto& k : kDistVars) unsetenv(k.c_str());
    for (const auto& [k, v] : saved) setenv(k.c_str(), v.c_str(), 1);
  }
};


}  // namespace

TEST_CASE("the distributed environment: torchrun's variables, srun's, and mistakes", "[distributed]") {
  CleanEnv clean;
  SECTION("nothing set: one process") {
    auto e = distributed_env_from_environment();
    CHECK(e.world_size == 1);
    CHECK(e.rank == 0);
    CHECK_FALSE(e.active());
  }
  SECTION("torchrun") {
    ScopedEnv env({{"WORLD_SIZE", "4"}, {"RANK", "3"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                   {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "1234"}});
    auto e = distributed_env_from_environment();
    CHECK(e.active());
    CHECK(e.world_size == 4);
    CHECK(e.rank == 3);
    CHECK(e.local_rank == 1);
    CHECK(e.local_world_size == 2);
    CHECK(e.master_addr == "node7");
    CHECK(e.master_port == 1234);
  }
  SECTION("srun") {
    ScopedEnv env({{"SLURM_STEP_NUM_TASKS", "8"}, {"SLURM_PROCID", "5"}, {"SLURM_LOCALID", "1"},
                   {"SLURM_STEP_TASKS_PER_NODE", "4(x2)"}, {"MASTER_ADDR", "n1"}});
    auto e = distributed_env_from_environment();
    CHECK(e.world_size == 8);
    CHECK(e.rank == 5);
    CHECK(e.local_rank == 1);
    CHECK(e.local_world_size == 4);
    CHECK(e.master_port == 29500);
  }
  SECTION("srun without MASTER_ADDR") {
    ScopedEnv env({{"SLURM_STEP_NUM_TASKS", "2"}, {"SLURM_PROCID", "0"}});
    CHECK_THROWS_WITH(distributed_env_from_environment(), Catch::Contains("MASTER_ADDR"));
  }
  SECTION("malformed or inconsistent values name the variable") {
    {
      ScopedEnv env({{"WORLD_SIZE", "two"}, {"RANK", "0"}});
      CHECK_THROWS_WITH(distributed_env_from_environment(), Catch::Contains("WORLD_SIZE='two'"));
    }
    {
      ScopedEnv env({{"WORLD_SIZE", "2"}, {"RANK", "2"}});
      CHECK_THROWS_WITH(distributed_env_from_environment(), Catch::Contains("rank 2 is not below"));
    }
    {
      ScopedEnv env({{"WORLD_SIZE", "2"}});
      CHECK_THROWS_WITH(distributed_env_from_environment(), Catch::Contains("RANK is not set"));
    }
    {
      ScopedEnv env({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_PORT", "70000"}});
      CHECK_THROWS_WITH(distributed_env_from_environment(), Catch::Contains("MASTER_PORT"));
    }
  }
}

namespace {

// Runs body(rank, communicator) on two ranks over Gloo on loopback, as two threads of this
// process. Returns each rank's error message ("" when it finished).
std::vector<std::string> on_two_ranks(const std::function<void(int, Communicator&)>& body) {
  const int port = free_port();
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      try {
        DistributedEnv e;
        e.rank = r, e.world_size = 2, e.local_rank = r, e.master_port = port;
        Communicator comm(e, torch::kCPU, std::chrono::seconds(30));
        body(r, comm);
      } catch (const std::exception& ex) {
        errors[r] = ex.what();
      }
    });
  for (auto& t : threads) t.join();
  return errors;
}

}  // namespace

// Without Gloo the multi-process cases pass by skipping: where the build must have it
// (scripts/test.sh sets XFORMER_REQUIRE_GLOO; setup.sh installs libgloo-dev), its absence fails.
TEST_CASE("multi-process training is built where the run requires it", "[distributed]") {
  if (std::getenv("XFORMER_REQUIRE_GLOO") != nullptr) REQUIRE(distributed_available());
}

TEST_CASE("collectives over Gloo: all-reduce, values, average, broadcast, all-gather", "[distributed]") {
  if (!distributed_available()) {
    WARN("this build has no c10d Gloo: skipped");
    return;
  }
  const int world = 2;
  // Per rank r: tensors of two dtypes, sizes that need several 64-byte buckets, and one big one.
  auto make = [](int r) {
    std::vector<torch::Tensor> t = {
        torch::arange(5, torch::kFloat) * (r + 1), torch::full({3, 4}, 0.5 * (r + 1), torch::kDouble),
        torch::arange(40, torch::kFloat).reshape({2, 20}) + 100 * r, torch::ones({1}, torch::kFloat) * r,
        torch::arange(7, torch::kDouble).neg() * r};
    return t;
  };
  std::vector<std::vector<torch::Tensor>> reduced(world), averaged(world), broadcast(world), gathered(world);
  std::vector<std::vector<double>> values(world);
  const auto errors = on_two_ranks([&](int r, Communicator& comm) {
    reduced[r] = make(r);
    std::vector<std::function<void()>> waits;  // all started before the first is waited on
    for (const auto& t : reduced[r]) waits.push_back(comm.start_all_reduce(t.view(-1)));
    for (auto& wait : waits) wait();
    values[r] = comm.all_reduce_values({1.0 * r, 2.5, -r * 3.0});
    averaged[r] = {torch::full({3}, 1.0 + 2 * r), torch::full({2, 2}, -4.0 * r, torch::kDouble)};
    comm.average(averaged[r]);
    broadcast[r] = {torch::full({4}, 10.0 * r + 1), torch::full({2, 2}, -1.0 * r)};
    comm.broadcast_from_rank0(broadcast[r]);
    gathered[r] = comm.all_gather(torch::full({3}, static_cast<int64_t>(r + 7), torch::kLong));
    comm.barrier();
  });
  for (int r = 0; r < world; ++r) {
    INFO("rank " << r);
    REQUIRE(errors[r].empty());
    auto a = make(0), b = make(1);
    for (size_t i = 0; i < a.size(); ++i) CHECK(torch::equal(reduced[r][i], a[i] + b[i]));
    CHECK(values[r] == std::vector<double>{1.0, 5.0, -3.0});
    CHECK(torch::equal(averaged[r][0], torch::full({3}, 2.0)));
    CHECK(torch::equal(averaged[r][1], torch::full({2, 2}, -2.0, torch::kDouble)));
    CHECK(torch::equal(broadcast[r][0], torch::full({4}, 1.0)));
    CHECK(torch::equal(broadcast[r][1], torch::full({2, 2}, -0.0)));
    REQUIRE(gathered[r].size() == 2);
    CHECK(torch::equal(gathered[r][0], torch::full({3}, 7, torch::kLong)));
    CHECK(torch::equal(gathered[r][1], torch::full({3}, 8, torch::kLong)));
  }
}

namespace {

// Two ranks' parameters and batches for the GradReducer test: a chain x -> (x * u) w1^T -> tanh
// -> w2^T, so backward reaches w2, then w1, then u; rank 1's batches skip u (it never uses it).
// u (6), w1 (8, 6), w2 (4, 8); two batches (4, 6) per rank.
struct ReducerCase {
  std::vector<torch::Tensor> init = {torch::randn({6}), torch::randn({8, 6}), torch::randn({4, 8})};
  std::vector<std::vector<torch::Tensor>> batches = {{torch::randn({4, 6}), torch::randn({4, 6})},
                                                     {torch::randn({4, 6}), torch::randn({4, 6})}};
  std::vector<torch::Tensor> fresh_params() const {
    std::vector<torch::Tensor> p;
    for (const auto& t : init) p.push_back(t.clone().requires_grad_(true));
    return p;
  }
  void backward(const std::vector<torch::Tensor>& p, int rank, int batch) const {
    auto x = rank == 0 ? batches[rank][batch] * p[0] : batches[rank][batch];
    torch::tanh(x.matmul(p[1].t())).matmul(p[2].t()).pow(2).sum().backward();
  }
};

}  // namespace

TEST_CASE("gradients are summed over the ranks in buckets sent during backward", "[distributed]") {
  if (!distributed_available()) return;
  torch::manual_seed(3);
  const ReducerCase c;
  // The sums the ranks must end with: every rank's gradients of both of its batches.
  auto expected = c.fresh_params();
  for (int r = 0; r < 2; ++r)
    for (int b = 0; b < 2; ++b) c.backward(expected, r, b);
  auto check = [&](const std::vector<torch::Tensor>& got, const std::vector<torch::Tensor>& want) {
    for (size_t i = 0; i < want.size(); ++i) {
      INFO("parameter " << i);
      REQUIRE(got[i].grad().defined());
      CHECK(torch::allclose(got[i].grad(), want[i].grad(), 1e-6, 1e-6));
    }
  };

  SECTION("two updates of two batches per rank; rank 1 never uses u; buckets follow the arrivals") {
    std::vector<std::vector<torch::Tensor>> params(2);
    std::vector<int64_t> buckets(2);
    std::vector<std::vector<int64_t>> first_send(2);
    const auto errors = on_two_ranks([&](int r, Communicator& comm) {
      params[r] = c.fresh_params();
      // Given first-to-last as w2, w1, u, the first buckets (last parameter first) are u, w1, w2:
      // u's gradient arrives last (and never on rank 1), so the first update sends nothing early.
      GradReducer reducer(comm, {params[r][2], params[r][1], params[r][0]}, /*bucket_bytes=*/8);
      for (int update = 0; update < 2; ++update) {
        for (auto& p : params[r]) p.mutable_grad() = torch::Tensor();
        c.backward(params[r], r, 0);  // accumulates, nothing sent
        reducer.arm();
        c.backward(params[r], r, 1);
        reducer.finish();
        first_send[r].push_back(reducer.first_send_after());
      }
      buckets[r] = reducer.buckets();
    });
    for (int r = 0; r < 2; ++r) {
      INFO("rank " << r);
      REQUIRE(errors[r].empty());
      check(params[r], expected);
      CHECK(buckets[r] == 3);  // one parameter each
    }
    // Update 1: rank 0 sends when its last gradient (u) arrives; rank 1 only after backward,
    // with 2 of 3 gradients. Then the buckets follow rank 0's arrivals (w2, w1, u): both ranks
    // send w2's bucket as soon as it arrives.
    CHECK(first_send[0] == std::vector<int64_t>{3, 1});
    CHECK(first_send[1] == std::vector<int64_t>{2, 1});
  }

  SECTION("a rank with no batch in the update sends zeros, and its gradients become the sum") {
    std::vector<std::vector<torch::Tensor>> params(2);
    std::vector<torch::Tensor> never_used(2);
    const auto errors = on_two_ranks([&](int r, Communicator& comm) {
      params[r] = c.fresh_params();
      // A parameter no rank uses keeps no gradient (the optimizer then skips it, as in one
      // process), in the bucket of the others.
      never_used[r] = torch::ones({3}).requires_grad_(true);
      std::vector<torch::Tensor> all = params[r];
      all.push_back(never_used[r]);
      GradReducer reducer(comm, all, 1 << 20);
      if (r == 0) {
        c.backward(params[r], 0, 0);
        reducer.arm();
        c.backward(params[r], 0, 1);
      }
      reducer.finish();
    });
    auto rank0_only = c.fresh_params();
    for (int b = 0; b < 2; ++b) c.backward(rank0_only, 0, b);
    for (int r = 0; r < 2; ++r) {
      INFO("rank " << r);
      REQUIRE(errors[r].empty());
      check(params[r], rank0_only);
      CHECK_FALSE(never_used[r].grad().defined());
    }
  }
}

TEST_CASE("a rank whose peer never comes fails within the timeout, naming itself", "[distributed]") {
  if (!distributed_available()) return;
  DistributedEnv e;
  e.rank = 0, e.world_size = 2, e.master_port = free_port();
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(Communicator(e, torch::kCPU, std::chrono::seconds(2)),
                    Catch::Contains("rank 0 of 2") && Catch::Contains("dist_timeout"));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));
}

TEST_CASE("child processes: argument vectors, environment, output file, exit status", "[distributed][subprocess]") {
  testing::TempDir tmp("subprocess");
  const std::string out = tmp.str("out.txt");
  SpawnOptions o;
  o.env = {{"XFORMER_TEST_VALUE", "a b;c"}};
  o.output = out;
  // An argument with spaces and a semicolon reaches the program as one argument, unchanged.
  const pid_t pid = spawn_process({"/usr/bin/env"}, o);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(describe_exit_status(status) == "exited with code 0");
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  CHECK(text.str().find("XFORMER_TEST_VALUE=a b;c\n") != std::string::npos);

  const pid_t p2 = spawn_process({"/bin/sh", "-c", "kill -9 $$"});
  REQUIRE(waitpid(p2, &status, 0) == p2);
  CHECK(describe_exit_status(status).find("killed by signal 9") != std::string::npos);
  CHECK(exit_code_of(status) == 137);

  SpawnOptions quiet;
  quiet.output = tmp.str("missing.txt");
  const pid_t p3 = spawn_process({"/nonexistent/program"}, quiet);
  REQUIRE(waitpid(p3, &status, 0) == p3);
  CHECK(exit_code_of(status) == 127);
  std::ifstream missing(quiet.output);
  std::string line;
  std::getline(missing, line);
  CHECK(line == "cannot execute /nonexistent/program");
}

namespace {
volatile sig_atomic_t g_test_sigterm_seen = 0;
}

TEST_CASE("a child signalled at once is not lost to our handler; it starts with no signal blocked",
          "[distributed][subprocess]") {
  // Our SIGTERM handler only notes the signal (as the trainer's does). A SIGTERM sent the moment
  // fork returns must still stop the child, not run our handler in the child and vanish.
  struct sigaction handler {}, previous {};
  handler.sa_handler = [](int) { g_test_sigterm_seen = 1; };
  sigemptyset(&handler.sa_mask);
  REQUIRE(sigaction(SIGTERM, &handler, &previous) == 0);
  for (int i = 0; i < 20; ++i) {
    const pid_t pid = spawn_process({"/bin/sleep", "5"});  // a lost signal: it exits 0 after 5 s
    kill(pid, SIGTERM);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(describe_exit_status(status).find("killed by signal 15") != std::string::npos);
  }
  // The child's mask is clean: SigBlk in /proc/PID/status is all zeros (in the parent too, again).
  const pid_t pid = spawn_process({"/bin/sleep", "30"});
  std::string blocked;
  for (int tries = 0; tries < 200 && blocked.empty(); ++tries) {
    std::ifstream status_file("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    std::string name;
    while (std::getline(status_file, line))
      if (line.rfind("Name:", 0) == 0) name = line;
      else if (line.rfind("SigBlk:", 0) == 0 && name.find("sleep") != std::string::npos) blocked = line;
    if (blocked.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  CHECK(blocked.find_first_not_of("0", blocked.find_first_not_of("SigBlk:\t ")) == std::string::npos);
  sigset_t now;
  pthread_sigmask(SIG_SETMASK, nullptr, &now);
  CHECK(sigismember(&now, SIGTERM) == 0);
  CHECK(g_test_sigterm_seen == 0);
  sigaction(SIGTERM, &previous, nullptr);
}
