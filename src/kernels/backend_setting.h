// A kernel-backend switch, initialised from an environment variable and settable at run time:
// PHI_ATTENTION (attention.cpp) and PHI_KERNELS (ops.cpp), "aten" or "fused"; PHI_FLASH_KERNEL
// (attention.cpp), "wmma" or "mma". The first choice is the default.
#pragma once

#include <cstdlib>
#include <string>

#include "phi/core/error.h"

namespace phi {

class BackendSetting {
 public:
  /// `what` names the switch in errors ("attention backend"); `first` (the default) and `second`
  /// are the accepted values.
  BackendSetting(const char* env_var, const char* what, const char* first = "aten", const char* second = "fused")
      : what_(what), first_(first), second_(second) {
    const char* env = std::getenv(env_var);
    value_ = first_;
    // A misspelt value is an error at first use, not a silent default (function-local statics
    // that throw are initialised again at the next call).
    if (env != nullptr && *env != 0) {
      if (std::string(env) != first_ && std::string(env) != second_) {
        throw Error(std::string(env_var) + "=" + env + ": the " + what_ + " must be " + first_ + " or " + second_, "",
                    "unset " + std::string(env_var) + " or give one of those values");
      }
      value_ = env;
    }
  }
  const std::string& get() const { return value_; }
  void set(const std::string& name) {
    if (name != first_ && name != second_) {
      throw Error(what_ + " must be " + first_ + " or " + second_ + ", got \"" + name + "\"");
    }
    value_ = name;
  }

 private:
  std::string what_, first_, second_;
  std::string value_;
};

}  // namespace phi
