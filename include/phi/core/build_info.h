// What this build is: the git commit it was built from (for reports and checkpoints).
#pragma once

#include <string>

namespace phi {

/// The commit hash of the source tree at build time, "+dirty" appended when it had uncommitted
/// changes; "unknown" outside a git checkout.
std::string git_commit();

}  // namespace phi
