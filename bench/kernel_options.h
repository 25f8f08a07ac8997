// The bench programs take the CLI's kernel options (--attention, --kernels, --flash-kernel, each
// "--name VALUE" or "--name=VALUE"), as `phi forward/generate/chat/serve` do; the environment
// aliases PHI_ATTENTION, PHI_KERNELS and PHI_FLASH_KERNEL give the starting values. Rows that name
// their own backend (bench_gpu's aten / fused pairs) still set it for themselves.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "phi/kernels/kernel_choice.h"

namespace phi::bench {

/// Applies and removes the kernel options from argv (the rest goes on to Google Benchmark);
/// returns the choice in effect.
inline KernelChoice take_kernel_options(int& argc, char** argv) {
  KernelChoice choice;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    std::string* field = nullptr;
    std::string name = a.substr(0, a.find('='));
    if (name == "--attention") field = &choice.attention;
    if (name == "--kernels") field = &choice.elementwise;
    if (name == "--flash-kernel") field = &choice.flash_kernel;
    if (field == nullptr) {
      rest.push_back(argv[i]);
    } else if (a.find('=') != std::string::npos) {
      *field = a.substr(a.find('=') + 1);
    } else if (i + 1 < argc) {
      *field = argv[++i];
    }
  }
  for (size_t i = 0; i < rest.size(); ++i) argv[i] = rest[i];
  argc = static_cast<int>(rest.size());
  try {
    choice.apply();
  } catch (const std::exception& e) {  // an unknown value: say which, as the CLI does
    std::fprintf(stderr, "error: %s\n", e.what());
    std::exit(2);
  }
  return KernelChoice::current();
}

}  // namespace phi::bench
