#include "phi/core/build_info.h"

#include "phi_build_info.h"  // generated at build time by cmake/build_info.cmake

namespace phi {

std::string git_commit() { return PHI_GIT_COMMIT; }

}  // namespace phi
