// The launcher environment: torchrun's and Slurm's variables, malformed values named.
#include <cstdlib>

#include <gtest/gtest.h>

#include "phi/core/error.h"
#include "phi/dist/env.h"

namespace {

// Sets variables for one test and restores a clean slate after.
class EnvScope {
 public:
  EnvScope() { clear(); }
  ~EnvScope() { clear(); }
  void set(const char* name, const char* value) { setenv(name, value, 1); }

 private:
  static void clear() {
    for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                             "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_ERROR_FILE", "SLURM_PROCID",
                             "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE", "SLURM_NODELIST",
                             "SLURM_JOB_NODELIST"}) {
      unsetenv(name);
    }
  }
};

TEST(DistEnv, SingleProcessByDefault) {
  EnvScope scope;
  const auto e = phi::read_dist_env();
  EXPECT_EQ(e.world_size, 1);
  EXPECT_FALSE(e.distributed());
  EXPECT_EQ(e.launcher, "single");
}

TEST(DistEnv, Torchrun) {
  EnvScope scope;
  scope.set("RANK", "5");
  scope.set("WORLD_SIZE", "8");
  scope.set("LOCAL_RANK", "1");
  scope.set("LOCAL_WORLD_SIZE", "4");
  scope.set("MASTER_ADDR", "node7");
  scope.set("MASTER_PORT", "1234");
  scope.set("TORCHELASTIC_USE_AGENT_STORE", "True");
  const auto e = phi::read_dist_env();
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 4);
  EXPECT_EQ(e.master_addr, "node7");
  EXPECT_EQ(e.master_port, 1234);
  EXPECT_TRUE(e.agent_store);
  EXPECT_EQ(e.launcher, "torchrun");
}

TEST(DistEnv, SlurmTakesTheFirstHostOfTheNodeList) {
  EnvScope scope;
  scope.set("SLURM_PROCID", "3");
  scope.set("SLURM_NTASKS", "16");
  scope.set("SLURM_LOCALID", "3");
  scope.set("SLURM_NTASKS_PER_NODE", "8");
  scope.set("SLURM_NODELIST", "gpu[012-013,020],login1");
  const auto e = phi::read_dist_env();
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 16);
  EXPECT_EQ(e.local_rank, 3);
  EXPECT_EQ(e.master_addr, "gpu012");
  EXPECT_EQ(e.launcher, "slurm");
  EXPECT_EQ(phi::first_slurm_host("a1,b2"), "a1");
  EXPECT_EQ(phi::first_slurm_host("rack[7]-node[3-4]"), "rack7-node3");
  EXPECT_THROW(phi::first_slurm_host("node[1-"), phi::Error);
}

TEST(DistEnv, MalformedValuesNameTheVariable) {
  EnvScope scope;
  scope.set("WORLD_SIZE", "2");
  scope.set("RANK", "2");
  try {
    phi::read_dist_env();
    FAIL() << "RANK 2 of 2 was accepted";
  } catch (const phi::Error& e) {
    EXPECT_NE(std::string(e.what()).find("RANK='2'"), std::string::npos) << e.what();
  }
  scope.set("RANK", "0");
  scope.set("MASTER_PORT", "http");
  EXPECT_THROW(phi::read_dist_env(), phi::Error);
}

}  // namespace
