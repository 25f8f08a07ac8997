// RAII autocast state for one device type: sets enabled / dtype, restores the previous state on
// exit, and clears the autocast cast cache when the region had autocast on (cached casts of
// weights must not outlive an optimizer update).
#pragma once

#include <ATen/autocast_mode.h>

namespace phi {

class AutocastGuard {
 public:
  AutocastGuard(c10::DeviceType device, bool enabled, at::ScalarType dtype)
      : device_(device),
        enabled_(enabled),
        was_enabled_(at::autocast::is_autocast_enabled(device)),
        old_dtype_(at::autocast::get_autocast_dtype(device)) {
    at::autocast::set_autocast_dtype(device_, dtype);
    at::autocast::set_autocast_enabled(device_, enabled);
  }
  ~AutocastGuard() {
    at::autocast::set_autocast_enabled(device_, was_enabled_);
    at::autocast::set_autocast_dtype(device_, old_dtype_);
    if (enabled_) at::autocast::clear_cache();
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  c10::DeviceType device_;
  bool enabled_;
  bool was_enabled_;
  at::ScalarType old_dtype_;
};

}  // namespace phi
