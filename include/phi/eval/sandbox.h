// Running untrusted programs (model-written code in HumanEval / MBPP) so that a hostile one cannot
// harm the machine or the evaluation. Each run gets, as far as the kernel allows (what was in
// effect is reported in SandboxIsolation, and docs/security.md says what each layer stops):
//   - its own session and process group, a PID namespace (the whole tree dies with its init, and
//     the evaluator's processes are invisible), and a pids / memory cgroup where one is writable;
//   - a network namespace with no interfaces up (else a seccomp filter refusing IP sockets);
//   - a mount namespace where every mount is read-only except a fresh, size-limited tmpfs as its
//     working directory (HOME and TMPDIR), and a read-only /proc of its own;
//   - rlimits on CPU seconds, address space, file size, open files and processes; no core dumps;
//   - every capability dropped and no_new_privs; a scrubbed environment; only fds 0-3 open;
//   - a wall-clock deadline after which the whole tree is killed (and always killed afterwards).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace phi {

struct SandboxLimits {
  double wall_seconds = 10.0;
  int64_t cpu_seconds = 10;
  int64_t memory_bytes = int64_t{2} << 30;     // address space per process; the cgroup's limit too
  int64_t file_bytes = int64_t{16} << 20;      // largest file a program may write
  int64_t workdir_bytes = int64_t{64} << 20;   // the tmpfs working directory
  int64_t processes = 32;                      // processes and threads of the run
  int64_t output_bytes = int64_t{64} << 10;    // stdout / stderr / channel bytes kept
};

/// Which layers a run had (false: the kernel or the permissions refused it).
struct SandboxIsolation {
  bool pid_namespace = false;
  bool network_namespace = false;
  bool seccomp_no_sockets = false;
  bool mount_namespace = false;
  bool read_only_root = false;
  bool process_cgroup = false;
  bool memory_cgroup = false;
  bool user_namespace = false;
  bool capabilities_dropped = false;
  /// "pid-ns,net-ns,..." for reports.
  std::string describe() const;
};

struct SandboxRun {
  int exit_code = -1;     // -1 when killed by a signal
  int term_signal = 0;
  bool timed_out = false;
  std::string out, err;   // the first output_bytes of stdout / stderr
  std::string channel;    // what the program wrote to fd 3 (the harness's verdict channel)
  double seconds = 0;
  SandboxIsolation isolation;
};

/// Runs `argv` (argv[0] an absolute path) in a sandbox: `files` (name, content) are written into its
/// empty working directory first; `input` is its stdin. Throws phi::Error only when the sandbox
/// itself cannot be set up (pipes, fork); a program that fails or is killed is a SandboxRun. The
/// first call sets SIGPIPE to ignored (a program that exits before reading its input must not end
/// the evaluator). Safe to call from several threads at once.
SandboxRun run_sandboxed(const std::vector<std::string>& argv,
                         const std::vector<std::pair<std::string, std::string>>& files, const std::string& input,
                         const SandboxLimits& limits);

/// The absolute path of a program found on PATH (or `name` itself when it holds a '/'); for Python
/// launchers (pyenv shims) the interpreter they run (`sys.executable`). Errors name what was missing.
std::string resolve_interpreter(const std::string& name);

}  // namespace phi
