#!/usr/bin/env bash
# Coverage-guided fuzzing of one target with libFuzzer under ASan + UBSan, for as long as asked:
#   scripts/fuzz.sh TARGET [SECONDS] [extra libFuzzer flags...]
#   scripts/fuzz.sh all SECONDS          # every target in turn
# Targets: safetensors model_config train_recipe tokenizer jinja server_request jsonl shards
# (tests/fuzz/fuzz_TARGET.cpp). Builds build-fuzz/ once (clang, -DPHI_FUZZ=ON, CUDA off; clang and
# its libFuzzer runtime come from Debian: installed here when missing). The working corpus grows
# in build-fuzz/corpus/TARGET, seeded from tests/fuzz/corpus/TARGET; a finding is written to
# build-fuzz/findings/TARGET/ and the script exits non-zero. A summary line per run is appended to
# build-fuzz/fuzz_runs.jsonl (target, wall seconds, CPU seconds, executions, coverage, findings).
# SECONDS is wall-clock time (libFuzzer's -max_total_time): on a busy machine the CPU seconds
# recorded are fewer.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=(safetensors model_config train_recipe tokenizer jinja server_request jsonl shards)
target=${1:?usage: scripts/fuzz.sh TARGET|all [SECONDS] [libFuzzer flags...]; targets: ${TARGETS[*]}}
seconds=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
if [[ $target == all ]]; then
  failed=0
  for t in "${TARGETS[@]}"; do bash "$0" "$t" "$seconds" "$@" || failed=1; done
  exit "$failed"
fi
if [[ ! " ${TARGETS[*]} " == *" $target "* ]]; then
  echo "fuzz.sh: unknown target '$target'; targets: ${TARGETS[*]}" >&2
  exit 2
fi
if ! command -v clang++ >/dev/null || [[ ! -x /usr/bin/time ]] ||
   ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  echo "fuzz.sh: installing clang, its libFuzzer runtime and time (Debian)" >&2
  SUDO=$([[ $(id -u) == 0 ]] && echo "" || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq clang libclang-rt-dev time >/dev/null
fi
source scripts/env.sh
BUILD=${PHI_FUZZ_BUILD_DIR:-build-fuzz}
# Runs of different targets may start together: one configures and builds at a time.
mkdir -p "$BUILD"
exec 9>"$BUILD/.build.lock"
flock 9
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DPHI_FUZZ=ON \
  -DPHI_WITH_CUDA=OFF -DPHI_BUILD_TESTS=OFF -DPHI_BUILD_BENCHMARKS=OFF -DCMAKE_PREFIX_PATH="$PHI_TORCH_CMAKE" >/dev/null
cmake --build "$BUILD" --target "fuzz_$target" -j "${PHI_BUILD_JOBS:-2}" >/dev/null
flock -u 9
corpus="$BUILD/corpus/$target"
findings="$BUILD/findings/$target"
mkdir -p "$corpus" "$findings"
log="$BUILD/fuzz_$target.log"
# LibTorch and libsentencepiece are not instrumented: leak reports from their static state at exit
# are noise, so leak checking is off; every other ASan/UBSan report stops the run.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1:detect_odr_violation=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
set +e
# The run's CPU seconds (user + system) are measured as well: "10 CPU-minutes" means CPU time.
times="$BUILD/fuzz_$target.times"
/usr/bin/time -f "%U %S" -o "$times" "$BUILD/tests/fuzz/fuzz_$target" -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=4096 -timeout=20 \
  -max_len=65536 -artifact_prefix="$findings/" "$@" "$corpus" "tests/fuzz/corpus/$target" 2>&1 | tee "$log" | \
  grep -E "^#[0-9]+ +(pulse|DONE)|ERROR|FINDING|SUMMARY|Done [0-9]+ runs"
status=${PIPESTATUS[0]}
set -e
runs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$log" | grep -oE "[0-9]+$" || echo 0)
cov=$(grep -oE "cov: [0-9]+" "$log" | tail -1 | grep -oE "[0-9]+" || echo 0)
features=$(grep -oE "ft: [0-9]+" "$log" | tail -1 | grep -oE "[0-9]+" || echo 0)
found=$(find "$findings" -type f | wc -l)
cpu=$(awk 'END { printf "%.0f", $1 + $2 }' "$times" 2>/dev/null || echo 0)
printf '{"target": "%s", "seconds": %s, "cpu_seconds": %s, "executions": %s, "coverage_edges": %s, "features": %s, "findings": %s, "exit": %s, "date": "%s", "commit": "%s"}\n' \
  "$target" "$seconds" "${cpu:-0}" "${runs:-0}" "${cov:-0}" "${features:-0}" "$found" "$status" "$(date -u +%FT%TZ)" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" | tee -a "$BUILD/fuzz_runs.jsonl"
exit "$status"
