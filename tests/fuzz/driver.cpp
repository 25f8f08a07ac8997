// A main() for the fuzz targets in builds without libFuzzer (GCC, the regular suite): replays
// every file of the given corpus directories, then mutates them (bit flips, random bytes,
// insertions, deletions, duplicated ranges, splices of two inputs) for the given time with a fixed
// seed. Not coverage-guided: the suite's quick check that the targets and their seeds stay clean.
// scripts/fuzz.sh runs the same targets under libFuzzer (clang, coverage-guided) at length.
//
// Usage: fuzz_TARGET [--seconds S] [--seed N] CORPUS_DIR...
// A crash or abort leaves the input that caused it in ./fuzz-crash-TARGET.bin.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

const std::vector<uint8_t>* g_current = nullptr;
char g_crash_path[512] = "fuzz-crash.bin";

void on_fatal_signal(int signal_number) {
  if (g_current != nullptr) {
    const int fd = open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ssize_t ignored = write(fd, g_current->data(), g_current->size());
      (void)ignored;
      close(fd);
    }
    const char message[] = "fuzz driver: the input that failed is in the crash file\n";
    ssize_t ignored = write(STDERR_FILENO, message, sizeof(message) - 1);
    (void)ignored;
  }
  std::signal(signal_number, SIG_DFL);
  std::raise(signal_number);
}

void run_one(const std::vector<uint8_t>& input) {
  g_current = &input;
  LLVMFuzzerTestOneInput(input.data(), input.size());
  g_current = nullptr;
}

std::vector<uint8_t> mutate(const std::vector<std::vector<uint8_t>>& corpus, std::mt19937_64& rng) {
  auto pick = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  std::vector<uint8_t> out = corpus[pick(corpus.size())];
  const int rounds = 1 + static_cast<int>(rng() % 4);
  for (int r = 0; r < rounds; ++r) {
    switch (rng() % 6) {
      case 0:
        if (!out.empty()) out[pick(out.size())] ^= static_cast<uint8_t>(1u << (rng() % 8));
        break;
      case 1:
        if (!out.empty()) out[pick(out.size())] = static_cast<uint8_t>(rng());
        break;
      case 2: {
        const size_t at = pick(out.size() + 1), n = 1 + pick(8);
        std::vector<uint8_t> bytes(n);
        for (auto& b : bytes) b = static_cast<uint8_t>(rng() % 4 == 0 ? "{}[]\":,<|>%\n 0-9"[rng() % 16] : rng());
        out.insert(out.begin() + static_cast<long>(at), bytes.begin(), bytes.end());
        break;
      }
      case 3:
        if (!out.empty()) {
          const size_t at = pick(out.size()), n = 1 + pick(std::min<size_t>(16, out.size() - at));
          out.erase(out.begin() + static_cast<long>(at), out.begin() + static_cast<long>(at + n));
        }
        break;
      case 4:
        if (!out.empty() && out.size() < (1 << 16)) {
          const size_t at = pick(out.size()), n = 1 + pick(std::min<size_t>(64, out.size() - at));
          std::vector<uint8_t> range(out.begin() + static_cast<long>(at), out.begin() + static_cast<long>(at + n));
          out.insert(out.begin() + static_cast<long>(pick(out.size() + 1)), range.begin(), range.end());
        }
        break;
      default: {
        const auto& other = corpus[pick(corpus.size())];
        const size_t keep = pick(out.size() + 1), from = pick(other.size() + 1);
        out.resize(keep);
        out.insert(out.end(), other.begin() + static_cast<long>(from), other.end());
      }
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 3;
  uint64_t seed = 1;
  std::vector<std::string> dirs;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--seconds" && i + 1 < argc) seconds = std::atof(argv[++i]);
    else if (arg == "--seed" && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
    else dirs.push_back(arg);
  }
  const std::string name = std::filesystem::path(argv[0]).filename().string();
  std::snprintf(g_crash_path, sizeof(g_crash_path), "%s-crash.bin", name.c_str());
  for (int s : {SIGSEGV, SIGABRT, SIGFPE, SIGBUS, SIGILL}) std::signal(s, on_fatal_signal);

  std::vector<std::vector<uint8_t>> corpus;
  for (const auto& dir : dirs) {
    if (!std::filesystem::is_directory(dir)) {
      std::fprintf(stderr, "%s: no corpus directory %s\n", name.c_str(), dir.c_str());
      return 2;
    }
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& path : files) {
      std::ifstream in(path, std::ios::binary);
      corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
  }
  if (corpus.empty()) corpus.emplace_back();
  for (const auto& input : corpus) run_one(input);
  std::mt19937_64 rng(seed);
  const auto start = std::chrono::steady_clock::now();
  uint64_t executions = corpus.size();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds) {
    run_one(mutate(corpus, rng));
    ++executions;
  }
  std::printf("%s: %zu seed inputs and %llu executions in %.1f s, no findings\n", name.c_str(), corpus.size(),
              static_cast<unsigned long long>(executions), seconds);
  return 0;
}
