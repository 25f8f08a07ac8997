// Where this process sits in a multi-process job, read from the launcher's environment:
//   torchrun (and `phi launch`): RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
//     MASTER_PORT; TORCHELASTIC_USE_AGENT_STORE=True when torchrun's agent already serves the
//     store (every rank then connects as a client); TORCHELASTIC_ERROR_FILE for the failure record;
//   Slurm (srun): SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE, and the first
//     host of SLURM_NODELIST as the master (MASTER_PORT, else 29500);
//   neither: one process (rank 0 of 1).
#pragma once

#include <string>

namespace phi {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool agent_store = false;  // torchrun's agent serves the TCPStore: rank 0 is a client too
  std::string error_file;    // TORCHELASTIC_ERROR_FILE
  std::string launcher = "single";  // "single", "torchrun" or "slurm"
  bool distributed() const { return world_size > 1; }
};

/// Reads the environment; a malformed or inconsistent value (RANK >= WORLD_SIZE, a port out of
/// range, a Slurm node list that cannot be parsed) is an error naming the variable.
DistEnv read_dist_env();

/// The first host of a Slurm node list: "node[03-05,07],gpu1" gives "node03".
std::string first_slurm_host(const std::string& nodelist);

/// Writes `message` to TORCHELASTIC_ERROR_FILE (when set) in torchrun's error-file format, so that
/// torchrun names this rank's failure as the root cause.
void write_torchelastic_error(const DistEnv& env, const std::string& message);

}  // namespace phi
