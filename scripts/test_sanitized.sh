#!/usr/bin/env bash
# The CPU suite under AddressSanitizer + UndefinedBehaviorSanitizer: builds build-asan/ with
# -DPHI_SANITIZE=ON (CUDA off, no benchmarks) and runs every ctest entry (GoogleTest, the pytest
# oracles driving the sanitized `phi`, the fuzz drivers). Any sanitizer report fails its test.
#   PHI_ASAN_BUILD_DIR  build directory (default build-asan)    CTEST_PARALLEL  ctest -j (default 2)
#   extra arguments go to ctest (e.g. -R py_test_server)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
BUILD=${PHI_ASAN_BUILD_DIR:-build-asan}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPHI_SANITIZE=ON -DPHI_WITH_CUDA=OFF \
  -DPHI_BUILD_BENCHMARKS=OFF -DCMAKE_PREFIX_PATH="$PHI_TORCH_CMAKE" -DPHI_PYTHON="$PHI_VENV/bin/python" >/dev/null
cmake --build "$BUILD" -j "${PHI_BUILD_JOBS:-2}"
# LibTorch is not instrumented: its static state at exit reads as leaks, and its libraries define
# the same globals as libphi's inline code; both checks are off, every other report stops the test.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:detect_odr_violation=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
start=$(date +%s)
ctest --test-dir "$BUILD" --output-on-failure -j "${CTEST_PARALLEL:-2}" --timeout 1800 "$@"
echo "test_sanitized.sh: tests took $(( $(date +%s) - start )) s"
