#!/usr/bin/env bash
# One-row matrix-vector products on the CPU: gemv_cpu (src/kernels/cpu/gemv_cpu.cpp) against
# at::linear on the same weights in the same run, f32 / bf16 / f16, the matrix shapes of the 125M
# bench model and Phi-3-mini; GB/s of weights read. Then whole batch-1 decode of the bench model
# (bench_decode) with PHI_CPU_KERNELS=aten and =ours for each dtype.
#   scripts/bench_cpu_gemv.sh      (threads: OMP_NUM_THREADS, default every core)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BUILD_DIR=${PHI_BUILD_DIR:-build}
THREADS=${OMP_NUM_THREADS:-$(nproc)}
cmake --build "$BUILD_DIR" --target bench_cpu_gemv bench_decode >/dev/null
echo "| product | dtype | ATen GB/s | ours GB/s | ratio |"
echo "|---|---|---|---|---|"
OMP_NUM_THREADS=$THREADS "$BUILD_DIR/bench_cpu_gemv" --benchmark_min_time=0.5s --benchmark_format=json 2>/dev/null |
  "$PHI_VENV/bin/python" -c '
import json, sys
rows = {b["name"]: b["GB/s"] for b in json.load(sys.stdin)["benchmarks"]}
for name, gbs in rows.items():
    side, dtype, shape = name.split("/")
    if side == "aten":
        ours = rows[f"ours/{dtype}/{shape}"]
        print(f"| {shape} | {dtype} | {gbs:.1f} | {ours:.1f} | {ours / gbs:.2f} |")
'
echo
echo "| batch-1 decode, bench-phi3-100m, prompt 128, 64 tokens | ATen tok/s | ours tok/s | ratio |"
echo "|---|---|---|---|"
for dtype in float32 bfloat16 float16; do
  rate() {
    PHI_CPU_KERNELS=$1 OMP_NUM_THREADS=$THREADS "$BUILD_DIR/bench_decode" --config configs/models/bench-phi3-100m.json \
      --prompt 128 --steps 64 --dtype "$dtype" --benchmark_filter='^decode/1/' --benchmark_format=json 2>/dev/null |
      "$PHI_VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["benchmarks"][0]["tokens_per_s"])'
  }
  aten=$(rate aten)
  ours=$(rate ours)
  echo "| $dtype | $(printf %.1f "$aten") | $(printf %.1f "$ours") | $(awk "BEGIN {printf \"%.2f\", $ours / $aten}") |"
done
echo "(f16 decode goes through ATen by default: 'ours' here forces nothing for f16, see src/kernels/ops.cpp)"
