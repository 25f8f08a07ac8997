// Which kernels run, as one value that commands take as options (--attention, --kernels,
// --flash-kernel), training recipes as their `kernels` section, and runs record in their resolved
// config. The environment variables PHI_ATTENTION, PHI_KERNELS and PHI_FLASH_KERNEL stay as
// aliases: they give the starting values, an option or a recipe key wins over them.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

namespace phi {

struct KernelChoice {
  std::string attention;    // "aten" (LibTorch SDPA / the reference) or "fused" (our CUDA kernels)
  std::string elementwise;  // "aten" or "fused": norms, activations, rotary on CUDA
  std::string flash_kernel; // "wmma" or "mma": the fused attention's flash kernels

  /// The choice in effect now (environment aliases, then whatever apply() set).
  static KernelChoice current();
  /// Sets the non-empty fields (each checked: an unknown value is an error naming it).
  void apply() const;
  /// {"attention": ..., "elementwise": ..., "flash_kernel": ...}
  nlohmann::json to_json() const;
};

}  // namespace phi
