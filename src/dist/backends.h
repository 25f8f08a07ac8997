// Private: the c10d process groups behind Communicator. Each backend's headers stay in its own
// translation unit (gloo_communicator.cpp, nccl_communicator.cpp), which only builds the group;
// the collectives over any c10d::Backend live in communicator.cpp.
#pragma once

#include <memory>
#include <string>

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include "phi/dist/communicator.h"

namespace phi {

/// An exception's message without LibTorch's C++ backtrace.
inline std::string exception_text(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

/// ProcessGroupGloo; undefined when this build has no Gloo.
c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const DistEnv& env, const CommunicatorOptions& options,
                                                    const c10::intrusive_ptr<c10d::Store>& store);
/// ProcessGroupNCCL; undefined when this build has no CUDA.
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const DistEnv& env, const CommunicatorOptions& options,
                                                    const c10::intrusive_ptr<c10d::Store>& store);
bool nccl_available();

}  // namespace phi
