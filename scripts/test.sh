#!/usr/bin/env bash
# The README's test command: set up (idempotent), configure and build (Release, Ninja, ccache),
# and run the whole ctest suite. CI (.ci/run) calls exactly this.
#   PHI_BUILD_DIR  build directory (default: build)    CTEST_PARALLEL  ctest -j (default: 2)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
BUILD_DIR=${PHI_BUILD_DIR:-build}
start=$(date +%s)
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PHI_TORCH_CMAKE" \
  -DPHI_PYTHON="$PHI_VENV/bin/python" >/dev/null
cmake --build "$BUILD_DIR" -j "${PHI_BUILD_JOBS:-2}"
built=$(date +%s)
echo "test.sh: build took $((built - start)) s"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${CTEST_PARALLEL:-2}" --timeout 900
echo "test.sh: tests took $(( $(date +%s) - built )) s"
