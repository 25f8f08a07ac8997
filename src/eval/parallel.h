// Private: independent items (sandboxed programs, judge requests) on a few threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace phi {

/// Calls fn(i) for every i in [0, n) on at most `workers` threads (at least one), handing items out
/// in order. `fn` runs concurrently and guards its own shared state. The first item that throws stops
/// the handing out of new ones; once every thread has ended, its message is returned ("" when none
/// failed), so that the caller raises its own error.
std::string parallel_for(size_t n, int64_t workers, const std::function<void(size_t)>& fn);

}  // namespace phi
