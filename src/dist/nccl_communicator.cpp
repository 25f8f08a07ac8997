// ProcessGroupNCCL, in CUDA builds only (USE_C10D_NCCL), against the NCCL headers of the CUDA
// toolkit / the torch wheel. Its watchdog and TORCH_NCCL_ASYNC_ERROR_HANDLING turn a hung or failed
// collective into an error after the timeout.
#include "dist/backends.h"

#ifdef PHI_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "phi/core/error.h"

namespace phi {

#ifndef PHI_WITH_NCCL
bool nccl_available() { return false; }
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const DistEnv&, const CommunicatorOptions&,
                                                    const c10::intrusive_ptr<c10d::Store>&) {
  return {};
}
#else
bool nccl_available() { return true; }

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const DistEnv& env, const CommunicatorOptions& options,
                                                    const c10::intrusive_ptr<c10d::Store>& store) {
  auto pg_options = c10d::ProcessGroupNCCL::Options::create();
  pg_options->timeout = options.timeout;
  try {
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env.rank, env.world_size, pg_options);
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(env.rank) + " could not join the NCCL group: " + exception_text(e));
  }
}
#endif

}  // namespace phi
