// Errors carry context: what went wrong, where (file, tensor, JSON path), and a hint for the user.
// The library throws phi::Error; the CLI's main() catches it, prints it and exits non-zero.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace phi {

/// The one exception type of the library. `what()` is the full, user-facing message:
/// "<message>" followed by optional "\n  where: <where>" and "\n  hint: <hint>" lines.
class Error : public std::runtime_error {
 public:
  Error(std::string message, std::string where = {}, std::string hint = {});

  const std::string& message() const { return message_; }
  const std::string& where() const { return where_; }
  const std::string& hint() const { return hint_; }

 private:
  std::string message_;
  std::string where_;
  std::string hint_;
};

namespace detail {
[[noreturn]] void throw_check_failure(const char* condition, const char* file, int line,
                                      const std::string& message);

inline void append_all(std::ostringstream&) {}
template <typename T, typename... Rest>
void append_all(std::ostringstream& out, const T& first, const Rest&... rest) {
  out << first;
  append_all(out, rest...);
}
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  append_all(out, args...);
  return out.str();
}
}  // namespace detail

}  // namespace phi

/// PHI_CHECK(cond, parts...): throws phi::Error naming the condition, the source location and the
/// message built by streaming `parts...` (values included), when `cond` is false.
#define PHI_CHECK(cond, ...)                                                               \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      ::phi::detail::throw_check_failure(#cond, __FILE__, __LINE__,                        \
                                         ::phi::detail::concat(__VA_ARGS__));              \
    }                                                                                      \
  } while (0)
