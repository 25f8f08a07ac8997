#!/usr/bin/env bash
# One device call: build what the GPU needs with the machine's own torch, run the GPU tests (each
# kernel against its ATen reference) and a CUDA-vs-CPU forward check, and print one table.
# Usage on the GPU machine:  bash scripts/gpu_check.sh   (prints the table; record it in docs/perf.md)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PHI_GPU_PYTHON:-python3}
TORCH_CMAKE=$("$PY" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
BUILD=${PHI_BUILD_DIR:-build-gpu}
start=$(date +%s)
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_CMAKE" \
  -DPHI_WITH_CUDA=ON -DPHI_PYTHON="$(command -v "$PY")" > "$BUILD.configure.log" 2>&1 || { tail -30 "$BUILD.configure.log"; exit 1; }
cmake --build "$BUILD" -j "$(nproc)" --target phi_cli phi_tests > "$BUILD.build.log" 2>&1 || { tail -40 "$BUILD.build.log"; exit 1; }
built=$(date +%s)

declare -a rows
"$BUILD/tests/phi_tests" --gtest_filter='CudaKernels.*' --gtest_output=json:"$BUILD/gpu_tests.json" > "$BUILD/gpu_tests.log" 2>&1
gtest_rc=$?
rows+=("gpu gtests (CudaKernels.*) | $([ $gtest_rc -eq 0 ] && echo pass || echo FAIL)")

# CUDA forward (float32 and bf16) against the CPU reference on a random tiny Phi-3 model.
work=$(mktemp -d)
"$BUILD/phi" init --preset tiny-phi3 --output "$work/m" --seed 3 > /dev/null 2>&1
echo '[[1,2,3,4,5,6,7,8,9,10,11,12],[5,6,7]]' > "$work/ids.json"
"$BUILD/phi" forward --model "$work/m" --input "$work/ids.json" --output "$work/cpu.safetensors" > /dev/null 2>&1
for dtype in f32 bf16; do
  if "$BUILD/phi" forward --model "$work/m" --input "$work/ids.json" --output "$work/gpu-$dtype.safetensors" \
       --device cuda --dtype "$dtype" > "$work/gpu-$dtype.log" 2>&1; then
    err=$("$PY" - "$work" "$dtype" <<'PY'
import sys, torch
from safetensors.torch import load_file
w, d = sys.argv[1], sys.argv[2]
a = load_file(f"{w}/cpu.safetensors")["logits"]; b = load_file(f"{w}/gpu-{d}.safetensors")["logits"]
print(f"{float((a - b).abs().max() / a.abs().max()):.2e}")
PY
)
    rows+=("phi forward --device cuda --dtype $dtype vs cpu f32 (rel. err) | $err")
  else
    rows+=("phi forward --device cuda --dtype $dtype | FAIL: $(tail -1 "$work/gpu-$dtype.log")")
  fi
done

echo
echo "| check | result |"
echo "|---|---|"
echo "| device | $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1) |"
echo "| build (s) | $((built - start)) |"
for r in "${rows[@]}"; do echo "| $r |"; done
echo
[ $gtest_rc -eq 0 ] || { echo "GPU test log:"; tail -40 "$BUILD/gpu_tests.log"; exit 1; }
