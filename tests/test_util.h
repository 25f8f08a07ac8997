// Helpers shared by the C++ tests.
#pragma once

#include <functional>
#include <initializer_list>
#include <string>

#include <gtest/gtest.h>

#include "phi/core/error.h"

namespace phi::test {

/// The full message of the phi::Error that `f` throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const phi::Error& e) {
    return e.what();
  }
  return "";
}

/// Expects `f` to throw a phi::Error whose message contains every fragment.
inline void expect_error(const std::function<void()>& f, std::initializer_list<std::string> fragments) {
  const std::string message = error_of(f);
  ASSERT_FALSE(message.empty()) << "expected a phi::Error";
  for (const auto& fragment : fragments) {
    EXPECT_NE(message.find(fragment), std::string::npos) << "missing \"" << fragment << "\" in: " << message;
  }
}

}  // namespace phi::test
