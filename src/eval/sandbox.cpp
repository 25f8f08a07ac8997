#include "phi/eval/sandbox.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/mount.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "phi/core/error.h"

namespace phi {

std::string SandboxIsolation::describe() const {
  std::string out;
  auto add = [&](bool on, const char* name) {
    if (on) out += (out.empty() ? "" : ",") + std::string(name);
  };
  add(pid_namespace, "pid-ns");
  add(network_namespace, "net-ns");
  add(seccomp_no_sockets, "seccomp-no-sockets");
  add(mount_namespace, "mount-ns");
  add(read_only_root, "read-only-root");
  add(process_cgroup, "pids-cgroup");
  add(memory_cgroup, "memory-cgroup");
  add(user_namespace, "user-ns");
  add(capabilities_dropped, "no-capabilities");
  return out.empty() ? "none" : out;
}

namespace {

enum : uint32_t {
  kPidNs = 1u << 0,
  kNetNs = 1u << 1,
  kMountNs = 1u << 2,
  kUserNs = 1u << 3,
  kTmpfs = 1u << 4,
  kReadOnly = 1u << 5,
  kCapsDropped = 1u << 6,
  kSeccomp = 1u << 7,
};

#if defined(__x86_64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#else
constexpr uint32_t kAuditArch = 0;
#endif

// Refuses socket() for every family but AF_UNIX (the fallback when no network namespace exists).
bool install_socket_filter() {
  if (kAuditArch == 0) return false;
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EACCES & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog program = {static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) == 0;
}

bool drop_capabilities() {
  for (int cap = 0; cap < 64; ++cap) prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capset, &header, data) != 0) return false;
  struct __user_cap_data_struct check[2] = {};
  if (syscall(SYS_capget, &header, check) != 0) return false;
  return check[0].effective == 0 && check[0].permitted == 0 && check[1].effective == 0 && check[1].permitted == 0;
}

bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool write_small_file(const char* path, const char* text) {
  const int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = write_all(fd, text, std::strlen(text));
  close(fd);
  return ok;
}

// Everything the child needs, prepared before fork(): after it, only system calls (no allocation).
struct ChildPlan {
  std::vector<char*> argv, envp;
  const char* workdir = nullptr;
  std::string tmpfs_options;
  std::vector<std::string> file_paths;
  std::vector<const std::string*> file_contents;
  std::vector<std::string> cgroup_procs;
  std::string uid_map, gid_map;
  bool root = false;
  const SandboxLimits* limits = nullptr;
  int stdin_r = -1, out_w = -1, err_w = -1, channel_w = -1, setup_w = -1, status_w = -1;
};

[[noreturn]] void run_inner(const ChildPlan& plan, uint32_t mask) {
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (mask & kMountNs) {
    mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr);
    if (mount("tmpfs", plan.workdir, "tmpfs", MS_NOSUID | MS_NODEV, plan.tmpfs_options.c_str()) == 0) mask |= kTmpfs;
    if (mask & kPidNs) mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, nullptr);
    struct mount_attr ro = {};
    ro.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID;
    if (syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &ro, sizeof ro) == 0) {
      struct mount_attr rw = {};
      rw.attr_clr = MOUNT_ATTR_RDONLY;
      if ((mask & kTmpfs) && syscall(SYS_mount_setattr, AT_FDCWD, plan.workdir, 0, &rw, sizeof rw) == 0) {
        mask |= kReadOnly;
      }
    }
  }
  for (size_t i = 0; i < plan.file_paths.size(); ++i) {
    const int fd = open(plan.file_paths[i].c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || !write_all(fd, plan.file_contents[i]->data(), plan.file_contents[i]->size())) _exit(126);
    close(fd);
  }
  dup2(plan.stdin_r, 0);
  dup2(plan.out_w, 1);
  dup2(plan.err_w, 2);
  dup2(plan.channel_w, 3);
  dup2(plan.setup_w, 4);
  fcntl(4, F_SETFD, FD_CLOEXEC);
  syscall(SYS_close_range, 5u, ~0u, 0u);
  const auto& L = *plan.limits;
  auto limit = [](int resource, rlim_t value) {
    struct rlimit r = {value, value};
    setrlimit(resource, &r);
  };
  limit(RLIMIT_CPU, static_cast<rlim_t>(L.cpu_seconds));
  limit(RLIMIT_AS, static_cast<rlim_t>(L.memory_bytes));
  limit(RLIMIT_FSIZE, static_cast<rlim_t>(L.file_bytes));
  limit(RLIMIT_NPROC, static_cast<rlim_t>(L.processes));
  limit(RLIMIT_NOFILE, 256);
  limit(RLIMIT_CORE, 0);
  if (chdir(plan.workdir) != 0) _exit(126);
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  if (drop_capabilities()) mask |= kCapsDropped;
  if (!(mask & kNetNs) && install_socket_filter()) mask |= kSeccomp;
  write_all(4, reinterpret_cast<const char*>(&mask), sizeof mask);
  execve(plan.argv[0], plan.argv.data(), plan.envp.data());
  const int error = errno;
  write_all(4, reinterpret_cast<const char*>(&error), sizeof error);
  _exit(127);
}

[[noreturn]] void run_child(const ChildPlan& plan) {
  setsid();
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  for (const auto& procs : plan.cgroup_procs) write_small_file(procs.c_str(), "0");
  uint32_t mask = 0;
  const int all = CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
  if (plan.root && unshare(all) == 0) {
    mask = kPidNs | kNetNs | kMountNs;
  } else if (unshare(all | CLONE_NEWUSER) == 0) {
    mask = kPidNs | kNetNs | kMountNs | kUserNs;
    write_small_file("/proc/self/setgroups", "deny");
    write_small_file("/proc/self/uid_map", plan.uid_map.c_str());
    write_small_file("/proc/self/gid_map", plan.gid_map.c_str());
  } else if (unshare(CLONE_NEWNET) == 0) {
    mask = kNetNs;
  }
  const pid_t inner = fork();
  if (inner == 0) run_inner(plan, mask);
  close(plan.setup_w);
  for (int fd : {0, 1, 2, 3, plan.stdin_r, plan.out_w, plan.err_w, plan.channel_w}) close(fd);
  const int32_t reported = inner;
  write_all(plan.status_w, reinterpret_cast<const char*>(&reported), sizeof reported);
  int status = 0;
  if (inner > 0) {
    while (waitpid(inner, &status, 0) < 0 && errno == EINTR) {
    }
  } else {
    status = 127 << 8;
  }
  write_all(plan.status_w, reinterpret_cast<const char*>(&status), sizeof status);
  _exit(0);
}

// pids / memory cgroups for one run (v2 unified or v1 hierarchies), where they are writable.
struct Cgroups {
  std::vector<std::string> dirs;
  bool v2 = false, pids = false, memory = false;
};

bool write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  return static_cast<bool>(out);
}

Cgroups make_cgroups(const SandboxLimits& limits) {
  static std::atomic<uint64_t> counter{0};
  const std::string name = "phi-sandbox-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
  Cgroups c;
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string root = "/sys/fs/cgroup";
  if (fs::exists(root + "/cgroup.controllers", ec)) {
    const auto dir = root + "/" + name;
    if (fs::create_directory(dir, ec) && !ec) {
      c.v2 = true;
      c.dirs.push_back(dir);
      c.pids = write_text(dir + "/pids.max", std::to_string(limits.processes));
      c.memory = write_text(dir + "/memory.max", std::to_string(limits.memory_bytes));
      write_text(dir + "/memory.swap.max", "0");
    }
    return c;
  }
  const auto pids_dir = root + "/pids/" + name;
  if (fs::is_directory(root + "/pids", ec) && fs::create_directory(pids_dir, ec) && !ec) {
    c.dirs.push_back(pids_dir);
    c.pids = write_text(pids_dir + "/pids.max", std::to_string(limits.processes));
  }
  const auto memory_dir = root + "/memory/" + name;
  if (fs::is_directory(root + "/memory", ec) && fs::create_directory(memory_dir, ec) && !ec) {
    c.dirs.push_back(memory_dir);
    c.memory = write_text(memory_dir + "/memory.limit_in_bytes", std::to_string(limits.memory_bytes));
  }
  return c;
}

std::vector<pid_t> cgroup_members(const std::string& dir) {
  std::vector<pid_t> pids;
  std::ifstream in(dir + "/cgroup.procs");
  for (long pid; in >> pid;) pids.push_back(static_cast<pid_t>(pid));
  return pids;
}

// Kills every process of the cgroups and removes them (bounded: about two seconds).
void destroy_cgroups(const Cgroups& c) {
  for (const auto& dir : c.dirs) {
    if (c.v2) write_text(dir + "/cgroup.kill", "1");
    for (int attempt = 0; attempt < 200; ++attempt) {
      const auto members = cgroup_members(dir);
      for (auto pid : members) kill(pid, SIGKILL);
      if (rmdir(dir.c_str()) == 0 || errno == ENOENT) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
}

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

}  // namespace

std::string resolve_interpreter(const std::string& name) {
  std::string path = name;
  if (name.find('/') == std::string::npos) {
    path.clear();
    const char* env = std::getenv("PATH");
    std::stringstream dirs(env ? env : "/usr/bin:/bin");
    for (std::string dir; std::getline(dirs, dir, ':');) {
      const auto candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
      if (access(candidate.c_str(), X_OK) == 0) {
        path = candidate;
        break;
      }
    }
    if (path.empty()) throw Error("'" + name + "' was not found on PATH", "", "pass the interpreter's full path");
  }
  if (access(path.c_str(), X_OK) != 0) throw Error("'" + path + "' is not an executable program");
  // A launcher script (a pyenv shim) would need the caller's environment inside the sandbox: ask it
  // which interpreter it runs.
  std::string command = "'" + path + "' -c 'import sys; print(sys.executable)' 2>/dev/null";
  if (FILE* p = popen(command.c_str(), "r")) {
    char buffer[4096] = {};
    const bool got = std::fgets(buffer, sizeof buffer, p) != nullptr;
    const int rc = pclose(p);
    std::string exe = got ? std::string(buffer) : "";
    while (!exe.empty() && (exe.back() == '\n' || exe.back() == '\r')) exe.pop_back();
    if (rc == 0 && !exe.empty() && exe[0] == '/' && access(exe.c_str(), X_OK) == 0) return exe;
  }
  return std::filesystem::absolute(path).string();
}

SandboxRun run_sandboxed(const std::vector<std::string>& argv,
                         const std::vector<std::pair<std::string, std::string>>& files, const std::string& input,
                         const SandboxLimits& limits) {
  PHI_CHECK(!argv.empty() && !argv[0].empty() && argv[0][0] == '/', "the sandboxed program needs an absolute path");
  for (const auto& f : files) {
    PHI_CHECK(!f.first.empty() && f.first.find('/') == std::string::npos && f.first != "." && f.first != "..",
              "sandbox file names are plain names, got '", f.first, "'");
  }
  // A program that dies before reading its stdin must not kill the evaluator with SIGPIPE.
  static const bool sigpipe_ignored = (signal(SIGPIPE, SIG_IGN), true);
  (void)sigpipe_ignored;
  const char* tmp_root = std::getenv("PHI_SANDBOX_TMP");
  std::string templ = std::string(tmp_root ? tmp_root : "/tmp") + "/phi-sandbox-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) throw Error(std::string("cannot create a sandbox directory: ") + std::strerror(errno), templ);
  const std::string workdir = templ;

  std::vector<std::string> env_strings = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + workdir,
                                          "TMPDIR=" + workdir, "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1",
                                          "PYTHONHASHSEED=0", "OMP_NUM_THREADS=1"};
  std::vector<std::string> argv_strings = argv;
  ChildPlan plan;
  for (auto& a : argv_strings) plan.argv.push_back(a.data());
  plan.argv.push_back(nullptr);
  for (auto& e : env_strings) plan.envp.push_back(e.data());
  plan.envp.push_back(nullptr);
  plan.workdir = workdir.c_str();
  plan.tmpfs_options = "size=" + std::to_string(limits.workdir_bytes) + ",mode=0700";
  for (const auto& f : files) {
    plan.file_paths.push_back(workdir + "/" + f.first);
    plan.file_contents.push_back(&f.second);
  }
  plan.root = geteuid() == 0;
  plan.uid_map = "0 " + std::to_string(geteuid()) + " 1";
  plan.gid_map = "0 " + std::to_string(getegid()) + " 1";
  plan.limits = &limits;
  const Cgroups cgroups = make_cgroups(limits);
  for (const auto& dir : cgroups.dirs) plan.cgroup_procs.push_back(dir + "/cgroup.procs");

  int in_p[2], out_p[2], err_p[2], chan_p[2], setup_p[2], status_p[2];
  bool piped = pipe2(in_p, O_CLOEXEC) == 0;
  piped = piped && pipe2(out_p, O_CLOEXEC) == 0 && pipe2(err_p, O_CLOEXEC) == 0 && pipe2(chan_p, O_CLOEXEC) == 0;
  piped = piped && pipe2(setup_p, O_CLOEXEC) == 0 && pipe2(status_p, O_CLOEXEC) == 0;
  if (!piped) {
    destroy_cgroups(cgroups);
    rmdir(workdir.c_str());
    throw Error(std::string("cannot create the sandbox's pipes: ") + std::strerror(errno));
  }
  plan.stdin_r = in_p[0];
  plan.out_w = out_p[1];
  plan.err_w = err_p[1];
  plan.channel_w = chan_p[1];
  plan.setup_w = setup_p[1];
  plan.status_w = status_p[1];
  const auto start = std::chrono::steady_clock::now();
  const pid_t child = fork();
  if (child < 0) {
    destroy_cgroups(cgroups);
    rmdir(workdir.c_str());
    throw Error(std::string("cannot fork the sandbox: ") + std::strerror(errno));
  }
  if (child == 0) run_child(plan);
  for (int fd : {in_p[0], out_p[1], err_p[1], chan_p[1], setup_p[1], status_p[1]}) close(fd);

  SandboxRun run;
  std::string setup, status;
  size_t input_written = 0;
  int input_fd = in_p[1];
  set_nonblocking(input_fd);
  struct Stream {
    int fd;
    std::string* into;
    size_t cap;
  };
  std::vector<Stream> streams = {{out_p[0], &run.out, static_cast<size_t>(limits.output_bytes)},
                                 {err_p[0], &run.err, static_cast<size_t>(limits.output_bytes)},
                                 {chan_p[0], &run.channel, static_cast<size_t>(limits.output_bytes)},
                                 {setup_p[0], &setup, 64},
                                 {status_p[0], &status, 64}};
  for (auto& s : streams) set_nonblocking(s.fd);
  const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(limits.wall_seconds));
  size_t open_streams = streams.size();
  char buffer[65536];
  while (open_streams > 0) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      run.timed_out = true;
      break;
    }
    std::vector<pollfd> fds;
    for (const auto& s : streams) {
      if (s.fd >= 0) fds.push_back({s.fd, POLLIN, 0});
    }
    if (input_fd >= 0) fds.push_back({input_fd, POLLOUT, 0});
    const auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
    const int ready = poll(fds.data(), fds.size(), static_cast<int>(std::min<int64_t>(wait_ms, 1000)));
    if (ready < 0 && errno != EINTR) break;
    if (input_fd >= 0) {
      if (input_written < input.size()) {
        const ssize_t n = write(input_fd, input.data() + input_written, input.size() - input_written);
        if (n > 0) input_written += static_cast<size_t>(n);
        if (n < 0 && errno != EAGAIN && errno != EINTR) input_written = input.size();
      }
      if (input_written >= input.size()) {
        close(input_fd);
        input_fd = -1;
      }
    }
    for (auto& s : streams) {
      if (s.fd < 0) continue;
      const ssize_t n = read(s.fd, buffer, sizeof buffer);
      if (n > 0) {
        const size_t keep = std::min(static_cast<size_t>(n), s.cap > s.into->size() ? s.cap - s.into->size() : 0);
        s.into->append(buffer, keep);
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        close(s.fd);
        s.fd = -1;
        --open_streams;
      }
    }
  }
  // The whole tree dies whatever happened: the namespace's init, the session, the cgroups.
  if (status.size() >= sizeof(int32_t)) {
    int32_t inner = 0;
    std::memcpy(&inner, status.data(), sizeof inner);
    if (inner > 0) kill(inner, SIGKILL);
  }
  kill(-child, SIGKILL);
  destroy_cgroups(cgroups);
  kill(child, SIGKILL);
  while (waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
  }
  if (input_fd >= 0) close(input_fd);
  for (auto& s : streams) {
    if (s.fd >= 0) close(s.fd);
  }
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  uint32_t mask = 0;
  if (setup.size() >= sizeof mask) std::memcpy(&mask, setup.data(), sizeof mask);
  run.isolation.pid_namespace = mask & kPidNs;
  run.isolation.network_namespace = mask & kNetNs;
  run.isolation.mount_namespace = mask & kMountNs;
  run.isolation.user_namespace = mask & kUserNs;
  run.isolation.read_only_root = mask & kReadOnly;
  run.isolation.capabilities_dropped = mask & kCapsDropped;
  run.isolation.seccomp_no_sockets = mask & kSeccomp;
  run.isolation.process_cgroup = cgroups.pids;
  run.isolation.memory_cgroup = cgroups.memory;
  if (setup.size() >= sizeof mask + sizeof(int)) {
    int error = 0;
    std::memcpy(&error, setup.data() + sizeof mask, sizeof error);
    run.err += std::string("sandbox: cannot execute ") + argv[0] + ": " + std::strerror(error);
  }
  if (!run.timed_out && status.size() >= sizeof(int32_t) + sizeof(int)) {
    int wait_status = 0;
    std::memcpy(&wait_status, status.data() + sizeof(int32_t), sizeof wait_status);
    if (WIFEXITED(wait_status)) {
      run.exit_code = WEXITSTATUS(wait_status);
    } else if (WIFSIGNALED(wait_status)) {
      run.term_signal = WTERMSIG(wait_status);
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(workdir, ec);
  return run;
}

}  // namespace phi
