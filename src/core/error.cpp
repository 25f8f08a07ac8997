#include "phi/core/error.h"

namespace phi {
namespace {
std::string format_error(const std::string& message, const std::string& where,
                         const std::string& hint) {
  std::string out = message;
  if (!where.empty()) out += "\n  where: " + where;
  if (!hint.empty()) out += "\n  hint: " + hint;
  return out;
}
}  // namespace

Error::Error(std::string message, std::string where, std::string hint)
    : std::runtime_error(format_error(message, where, hint)),
      message_(std::move(message)),
      where_(std::move(where)),
      hint_(std::move(hint)) {}

namespace detail {
void throw_check_failure(const char* condition, const char* file, int line,
                         const std::string& message) {
  throw Error(message.empty() ? std::string("check failed: ") + condition : message,
              std::string(file) + ":" + std::to_string(line) + " (check `" + condition + "`)");
}
}  // namespace detail
}  // namespace phi
