// Private: the process-group backends behind Communicator, each in its own translation unit.
#pragma once

#include <memory>

#include <torch/csrc/distributed/c10d/Store.hpp>

#include "phi/dist/communicator.h"

#include <c10/util/Exception.h>

namespace phi {

/// An exception's message without LibTorch's C++ backtrace.
inline std::string exception_text(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

/// NCCL (CUDA tensors); nullptr when this build has no CUDA.
std::unique_ptr<Communicator> make_nccl_communicator(const DistEnv& env, const CommunicatorOptions& options,
                                                     const c10::intrusive_ptr<c10d::Store>& store);
bool nccl_available();

/// Gloo (CPU tensors); nullptr when this build has no Gloo.
std::unique_ptr<Communicator> make_gloo_communicator(const DistEnv& env, const CommunicatorOptions& options,
                                                     const c10::intrusive_ptr<c10d::Store>& store);

}  // namespace phi
