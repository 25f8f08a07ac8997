// A kernel-backend switch, "aten" or "fused", initialised from an environment variable and
// settable at run time: PHI_ATTENTION (attention.cpp) and PHI_KERNELS (ops.cpp).
#pragma once

#include <cstdlib>
#include <string>

#include "phi/core/error.h"

namespace phi {

class BackendSetting {
 public:
  /// `what` names the switch in errors ("attention backend").
  BackendSetting(const char* env_var, const char* what) : what_(what) {
    const char* env = std::getenv(env_var);
    value_ = env != nullptr && *env != 0 ? env : "aten";
  }
  const std::string& get() const { return value_; }
  void set(const std::string& name) {
    if (name != "aten" && name != "fused") throw Error(what_ + " must be aten or fused, got \"" + name + "\"");
    value_ = name;
  }

 private:
  std::string what_;
  std::string value_;
};

}  // namespace phi
