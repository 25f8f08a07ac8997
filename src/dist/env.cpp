#include "phi/dist/env.h"

#include <cstdlib>
#include <ctime>
#include <fstream>

#include <nlohmann/json.hpp>

#include "phi/core/error.h"

namespace phi {

namespace {

const char* env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

int env_int(const char* name, int fallback, int low, int high) {
  const char* value = env(name);
  if (value == nullptr) return fallback;
  char* end = nullptr;
  const long parsed = std::strtol(value, &end, 10);
  if (end == value || *end != '\0' || parsed < low || parsed > high) {
    throw Error(std::string("environment variable ") + name + "='" + value + "' is not an integer in [" +
                std::to_string(low) + ", " + std::to_string(high) + "]");
  }
  return static_cast<int>(parsed);
}

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  // The first entry: up to a comma outside brackets; "prefix[a-b,c]suffix" expands to prefix + a.
  size_t end = 0;
  int depth = 0;
  for (; end < nodelist.size(); ++end) {
    if (nodelist[end] == '[') ++depth;
    if (nodelist[end] == ']') --depth;
    if (nodelist[end] == ',' && depth == 0) break;
  }
  std::string host = nodelist.substr(0, end);
  if (host.empty()) throw Error("SLURM_NODELIST is empty");
  // Each bracket group ("[03-05,07]") stands for its first value.
  for (auto open = host.find('['); open != std::string::npos; open = host.find('[')) {
    const auto close = host.find(']', open);
    if (close == std::string::npos) throw Error("SLURM_NODELIST='" + nodelist + "' has an unclosed '['");
    const auto inside = host.substr(open + 1, close - open - 1);
    const auto low = inside.substr(0, inside.find_first_of(",-"));
    if (low.empty()) throw Error("SLURM_NODELIST='" + nodelist + "' has an empty range");
    host = host.substr(0, open) + low + host.substr(close + 1);
  }
  return host;
}

DistEnv read_dist_env() {
  DistEnv e;
  if (env("RANK") != nullptr || env("WORLD_SIZE") != nullptr) {
    e.launcher = "torchrun";
    e.world_size = env_int("WORLD_SIZE", 1, 1, 1 << 20);
    e.rank = env_int("RANK", 0, 0, e.world_size - 1);
    e.local_world_size = env_int("LOCAL_WORLD_SIZE", e.world_size, 1, e.world_size);
    e.local_rank = env_int("LOCAL_RANK", e.rank % e.local_world_size, 0, e.local_world_size - 1);
    if (const char* addr = env("MASTER_ADDR")) e.master_addr = addr;
    e.master_port = env_int("MASTER_PORT", e.master_port, 1, 65535);
    if (const char* agent = env("TORCHELASTIC_USE_AGENT_STORE")) e.agent_store = std::string(agent) == "True";
  } else if (env("SLURM_PROCID") != nullptr && env("SLURM_NTASKS") != nullptr) {
    e.launcher = "slurm";
    e.world_size = env_int("SLURM_NTASKS", 1, 1, 1 << 20);
    e.rank = env_int("SLURM_PROCID", 0, 0, e.world_size - 1);
    e.local_world_size = env_int("SLURM_NTASKS_PER_NODE", e.world_size, 1, e.world_size);
    e.local_rank = env_int("SLURM_LOCALID", e.rank % e.local_world_size, 0, e.local_world_size - 1);
    if (const char* addr = env("MASTER_ADDR")) {
      e.master_addr = addr;
    } else if (const char* nodes = env("SLURM_NODELIST") ? env("SLURM_NODELIST") : env("SLURM_JOB_NODELIST")) {
      e.master_addr = first_slurm_host(nodes);
    }
    e.master_port = env_int("MASTER_PORT", e.master_port, 1, 65535);
  }
  if (const char* file = env("TORCHELASTIC_ERROR_FILE")) e.error_file = file;
  return e;
}

void write_torchelastic_error(const DistEnv& env, const std::string& message) {
  if (env.error_file.empty()) return;
  // torchrun's ProcessFailure reads {"message": {"message": ..., "extraInfo": {"py_callstack", "timestamp"}}}.
  const nlohmann::json record = {
      {"message",
       {{"message", "phi (rank " + std::to_string(env.rank) + "): " + message},
        {"extraInfo", {{"py_callstack", message}, {"timestamp", std::to_string(std::time(nullptr))}}}}}};
  std::ofstream out(env.error_file, std::ios::trunc);
  out << record.dump();
}

}  // namespace phi
