// phi launch --nproc N [--master-port P] [--log-dir DIR] -- <phi arguments>: N local processes of
// this binary with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR=127.0.0.1, MASTER_PORT), no Python needed. Rank 0 writes to this console, every rank
// to DIR/rank-R.log as well. When one rank fails, the others get SIGTERM (then SIGKILL after the
// grace period), its log's end is printed, and its exit code is this command's.
//
// phi dist check [--elements N]: under a launcher, every collective checked on every rank, and the
// all-reduce bandwidth (a cluster's first test, like nccl-tests).
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "cli/commands.h"
#include "phi/core/error.h"
#include "phi/dist/communicator.h"

namespace phi::cli {

namespace {

struct LaunchOptions {
  int nproc = 2;
  int master_port = 0;  // 0: a free port
  std::string log_dir;
  double grace_seconds = 10;
  std::vector<std::string> args;
};

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error("cannot open a socket to find a free port");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    throw Error("cannot find a free port on 127.0.0.1", "", "pass --master-port");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

std::string tail_of(const std::string& path, size_t bytes) {
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text.size() > bytes ? "..." + text.substr(text.size() - bytes) : text;
}

volatile sig_atomic_t g_forwarded_signal = 0;
void remember_signal(int sig) { g_forwarded_signal = sig; }

int run_launch(const LaunchOptions& o) {
  PHI_CHECK(o.nproc >= 1 && o.nproc <= 1024, "--nproc must be in [1, 1024]");
  if (o.args.empty()) throw Error("phi launch needs the command to run after --", "", "phi launch --nproc 2 -- train --config R.json");
  const int port = o.master_port > 0 ? o.master_port : free_port();
  const std::string log_dir =
      o.log_dir.empty() ? (std::filesystem::temp_directory_path() / ("phi-launch-" + std::to_string(getpid()))).string()
                        : o.log_dir;
  std::filesystem::create_directories(log_dir);
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::vector<std::string> argv_strings = {self};
  argv_strings.insert(argv_strings.end(), o.args.begin(), o.args.end());
  std::vector<char*> argv;
  for (auto& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  struct sigaction action{};
  action.sa_handler = remember_signal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  std::cerr << fmt::format("phi launch: {} ranks on 127.0.0.1:{}, logs in {}\n", o.nproc, port, log_dir);
  std::map<pid_t, int> rank_of;
  for (int rank = 0; rank < o.nproc; ++rank) {
    const std::string log = log_dir + "/rank-" + std::to_string(rank) + ".log";
    const pid_t pid = fork();
    if (pid < 0) throw Error(std::string("cannot start rank ") + std::to_string(rank) + ": " + std::strerror(errno));
    if (pid == 0) {
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      setenv("PHI_RANK_LOG", log.c_str(), 1);
      if (rank > 0) {
        FILE* f = std::freopen(log.c_str(), "w", stdout);
        if (f == nullptr || dup2(fileno(stdout), STDERR_FILENO) < 0) _exit(127);
      }
      execv(self.c_str(), argv.data());
      _exit(127);
    }
    rank_of[pid] = rank;
  }
  int first_failed_rank = -1, exit_code = 0;
  auto deadline = std::chrono::steady_clock::time_point::max();
  bool terminated = false;
  while (!rank_of.empty()) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      const int rank = rank_of[pid];
      rank_of.erase(pid);
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (code != 0 && first_failed_rank < 0) {
        first_failed_rank = rank;
        exit_code = code;
      }
      continue;
    }
    if ((first_failed_rank >= 0 || g_forwarded_signal != 0) && !terminated) {
      for (const auto& [p, r] : rank_of) kill(p, SIGTERM);
      terminated = true;
      deadline = std::chrono::steady_clock::now() +
                 std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(o.grace_seconds));
    }
    if (terminated && std::chrono::steady_clock::now() > deadline) {
      for (const auto& [p, r] : rank_of) kill(p, SIGKILL);
      deadline = std::chrono::steady_clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (first_failed_rank >= 0) {
    const std::string log = log_dir + "/rank-" + std::to_string(first_failed_rank) + ".log";
    std::cerr << fmt::format("phi launch: rank {} failed first (exit code {}); its log {}:\n{}\n", first_failed_rank,
                             exit_code, log, first_failed_rank == 0 ? "(on this console)" : tail_of(log, 2000));
    return exit_code;
  }
  if (g_forwarded_signal != 0) return 128 + g_forwarded_signal;
  return 0;
}

struct DistCheckOptions {
  std::string backend = "auto";
  std::string device = "cpu";
  int64_t elements = 1 << 20;
  int64_t repeats = 5;
  double timeout = 60;
  int fail_rank = -1;  // for tests: this rank exits after joining, before the collectives
};

int run_dist_check(const DistCheckOptions& o) {
  const auto env = read_dist_env();
  CommunicatorOptions options;
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout * 1000));
  options.backend = o.backend;
  const auto device = o.device == "cuda" ? c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank))
                                         : c10::Device(o.device);
  options.cuda = device.is_cuda();
  auto comm = make_communicator(env, options);
  if (o.fail_rank == env.rank) {
    std::cerr << "rank " << env.rank << " exits on purpose after joining (--simulate-failure-rank)\n";
    std::_Exit(3);
  }
  const int r = comm->rank(), w = comm->world_size();
  std::vector<std::string> failures;
  auto expect = [&](const char* what, const at::Tensor& got, const at::Tensor& want) {
    if (!at::allclose(got, want)) failures.push_back(what);
  };
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  auto t = at::full({7}, static_cast<float>(r + 1), f32);
  comm->all_reduce(t);
  expect("all_reduce sum", t.cpu(), at::full({7}, static_cast<float>(w * (w + 1) / 2)));
  auto m = at::full({3}, static_cast<float>(r), f32);
  comm->all_reduce(m, ReduceOp::kMax);
  expect("all_reduce max", m.cpu(), at::full({3}, static_cast<float>(w - 1)));
  auto b = at::full({5}, static_cast<float>(r * 10), f32);
  comm->broadcast(b, w - 1);
  expect("broadcast", b.cpu(), at::full({5}, static_cast<float>((w - 1) * 10)));
  auto gathered = at::empty({w * 2}, f32);
  comm->all_gather(at::full({2}, static_cast<float>(r), f32), gathered);
  expect("all_gather", gathered.cpu(), at::arange(w, at::kFloat).repeat_interleave(2));
  auto scattered = at::empty({3}, f32);
  comm->reduce_scatter(at::arange(w * 3, f32), scattered);
  expect("reduce_scatter", scattered.cpu(), at::arange(r * 3, r * 3 + 3, at::kFloat) * w);
  comm->barrier();
  auto big = at::ones({o.elements}, f32);
  comm->all_reduce(big);  // warm-up
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < o.repeats; ++i) comm->all_reduce(big);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / o.repeats;
  // Bus bandwidth as nccl-tests reports it: 2 (w - 1) / w of the buffer crosses each link.
  const double bytes = static_cast<double>(o.elements) * 4.0;
  const double bus = w > 1 ? bytes * 2.0 * (w - 1) / w / seconds / 1e9 : 0.0;
  if (!failures.empty()) {
    std::string list;
    for (const auto& f : failures) list += (list.empty() ? "" : ", ") + f;
    throw Error("rank " + std::to_string(r) + ": wrong results from " + list);
  }
  if (r == 0) {
    std::cout << fmt::format("dist check: {} ranks ({}, {}), every collective correct; all_reduce of {} floats "
                             "{:.2f} ms, bus bandwidth {:.2f} GB/s\n",
                             w, comm->backend(), env.launcher, o.elements, seconds * 1e3, bus);
  }
  return 0;
}

}  // namespace

void add_launch_command(CLI::App& root, Runner& run) {
  auto o = std::make_shared<LaunchOptions>();
  auto* cmd = root.add_subcommand("launch", "Start N local ranks of a phi command (torchrun's environment)");
  cmd->add_option("--nproc", o->nproc, "processes (ranks)")->capture_default_str();
  cmd->add_option("--master-port", o->master_port, "rendezvous port on 127.0.0.1 (default: a free one)");
  cmd->add_option("--log-dir", o->log_dir, "where rank-R.log go (default: a new temporary directory)");
  cmd->add_option("--grace", o->grace_seconds, "seconds between SIGTERM and SIGKILL of the others after a failure")
      ->capture_default_str();
  cmd->add_option("args", o->args, "the phi command and its arguments, after --");
  cmd->callback([&run, o]() { run = [o]() { return run_launch(*o); }; });

  auto d = std::make_shared<DistCheckOptions>();
  auto* dist = root.add_subcommand("dist", "Distributed tools");
  dist->require_subcommand(1);
  auto* check = dist->add_subcommand("check", "check every collective across the launched ranks, time all_reduce");
  check->add_option("--backend", d->backend, "auto, gloo or nccl (nccl by name also with one process)")
      ->capture_default_str();
  check->add_option("--device", d->device, "cpu or cuda (each rank its LOCAL_RANK's GPU)")->capture_default_str();
  check->add_option("--elements", d->elements, "floats in the timed all_reduce")->capture_default_str();
  check->add_option("--repeats", d->repeats, "timed all_reduce calls")->capture_default_str();
  check->add_option("--timeout", d->timeout, "seconds a collective may wait for the others")->capture_default_str();
  check->add_option("--simulate-failure-rank", d->fail_rank, "(tests) this rank exits after joining, before the collectives");
  check->callback([&run, d]() { run = [d]() { return run_dist_check(*d); }; });
}

}  // namespace phi::cli
