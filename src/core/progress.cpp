#include "phi/core/progress.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

namespace phi {

namespace {

bool progress_enabled() {
  if (const char* v = std::getenv("PHI_PROGRESS")) return std::strcmp(v, "0") != 0;
  return isatty(STDERR_FILENO) == 1;
}

}  // namespace

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), enabled_(progress_enabled()),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

Progress::~Progress() {
  if (enabled_ && !finished_) std::fputc('\n', stderr);
}

void Progress::skip(int64_t n) {
  skipped_ += n;
  done_ += n;
}

void Progress::advance(int64_t n) {
  done_ += n;
  draw(false);
}

void Progress::finish() {
  if (finished_) return;
  draw(true);
  if (enabled_) std::fputc('\n', stderr);
  finished_ = true;
}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double Progress::rate() const {
  const double t = elapsed_seconds();
  return t > 0 ? static_cast<double>(done_ - skipped_) / t : 0.0;
}

std::string Progress::format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s / 60) % 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

void Progress::draw(bool force) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_draw_ < std::chrono::milliseconds(200)) return;
  last_draw_ = now;
  const double r = rate();
  const double eta = r > 0 ? static_cast<double>(total_ - done_) / r : -1;
  const double pct = total_ > 0 ? 100.0 * static_cast<double>(done_) / static_cast<double>(total_) : 0.0;
  std::fprintf(stderr, "\r%s  %lld/%lld %s (%.1f%%)  %.1f %s/s  elapsed %s  ETA %s   ", label_.c_str(),
               static_cast<long long>(done_), static_cast<long long>(total_), unit_.c_str(), pct, r, unit_.c_str(),
               format_duration(elapsed_seconds()).c_str(), format_duration(eta).c_str());
  std::fflush(stderr);
}

}  // namespace phi
