#include "phi/kernels/kernel_choice.h"

#include <nlohmann/json.hpp>

#include "phi/kernels/cuda_kernels.h"

namespace phi {

KernelChoice KernelChoice::current() { return {attention_backend(), elementwise_backend(), phi::flash_kernel()}; }

void KernelChoice::apply() const {
  if (!attention.empty()) set_attention_backend(attention);
  if (!elementwise.empty()) set_elementwise_backend(elementwise);
  if (!flash_kernel.empty()) set_flash_kernel(flash_kernel);
}

nlohmann::json KernelChoice::to_json() const {
  return {{"attention", attention}, {"elementwise", elementwise}, {"flash_kernel", flash_kernel}};
}

}  // namespace phi
