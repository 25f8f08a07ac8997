#include "eval/parallel.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace phi {

std::string parallel_for(size_t n, int64_t workers, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  std::mutex mutex;
  std::string first_error;
  auto work = [&] {
    for (size_t i = next++; i < n; i = next++) {
      try {
        fn(i);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mutex);
        if (first_error.empty()) first_error = e.what();
        next = n;
      }
    }
  };
  std::vector<std::thread> threads;
  const int64_t count = std::max<int64_t>(1, std::min<int64_t>(workers, static_cast<int64_t>(std::max<size_t>(n, 1))));
  for (int64_t w = 0; w < count; ++w) threads.emplace_back(work);
  for (auto& t : threads) t.join();
  return first_error;
}

}  // namespace phi
