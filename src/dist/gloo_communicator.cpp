// The only translation unit that includes gloo (through ProcessGroupGloo.hpp): Debian's libgloo-dev
// headers against the gloo symbols the PyPI torch wheel exports.
#include "dist/backends.h"

#ifdef PHI_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif

#include "phi/core/error.h"

namespace phi {

#ifndef PHI_WITH_GLOO
bool gloo_available() { return false; }
c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const DistEnv&, const CommunicatorOptions&,
                                                    const c10::intrusive_ptr<c10d::Store>&) {
  return {};
}
#else
bool gloo_available() { return true; }

c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const DistEnv& env, const CommunicatorOptions& options,
                                                    const c10::intrusive_ptr<c10d::Store>& store) {
  auto pg_options = c10d::ProcessGroupGloo::Options::create();
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME")) {
    pg_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost") {
    pg_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    pg_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  pg_options->timeout = options.timeout;
  try {
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size, pg_options);
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(env.rank) + " could not join the Gloo group: " + exception_text(e));
  }
}
#endif

}  // namespace phi
