// Progress of long work on a terminal: done / total, rate and ETA on one line of stderr, redrawn at
// most a few times a second. Silent when stderr is not a terminal (logs, tests) unless
// PHI_PROGRESS=1; PHI_PROGRESS=0 silences it on a terminal too.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace phi {

class Progress {
 public:
  /// `unit` names what is counted ("questions", "tokens").
  Progress(std::string label, int64_t total, std::string unit);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(int64_t n = 1);
  /// Sets what is already done before this run (resumed work): not counted in the rate.
  void skip(int64_t n);
  /// Draws the final line and ends it.
  void finish();
  double elapsed_seconds() const;
  /// Items per second over this run's own work.
  double rate() const;
  /// "1m05s"-style duration.
  static std::string format_duration(double seconds);

 private:
  void draw(bool force);
  std::string label_, unit_;
  int64_t total_ = 0, done_ = 0, skipped_ = 0;
  bool enabled_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace phi
