#!/usr/bin/env bash
# One device call after scripts/gpu_check.sh (same build folder): Nsight Compute times every kernel
# of one eager Phi-3-mini decode step (fused kernels, batch 1) and of one phi-1.5 training step
# (bf16, batch 4 x 2048), the NVTX ranges of `bench_gpu --profile decode|train`, and prints the kernels that take
# the most time: where the decode step's gap to the bandwidth floor and the training step's gap to
# 50% MFU go. ncu serialises kernels and runs them without the others overlapping, so the sums are
# per-kernel device time, not the step's wall time.
#   bash scripts/gpu_profile.sh        (OUT=dir keeps the CSV files)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PHI_GPU_PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
BUILD=${PHI_BUILD_DIR:-build-gpu}
if [ ! -x "$BUILD/bench_gpu" ]; then
  TORCH_CMAKE=$("$PY" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_CMAKE" -DPHI_WITH_CUDA=ON \
    -DPHI_CUDA_ARCHS=90a -DTORCH_CUDA_ARCH_LIST=9.0a -DPHI_PYTHON="$(command -v "$PY")" > "$OUT/configure.log" 2>&1 \
    || { tail -30 "$OUT/configure.log"; exit 1; }
  cmake --build "$BUILD" -j "$(nproc)" --target bench_gpu > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
fi
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | tail -1)
[ -n "$NCU" ] || { echo "no ncu on this machine"; exit 1; }
for what in decode train; do
  "$NCU" --clock-control none --nvtx --nvtx-include "phi_profile/" --metrics gpu__time_duration.sum --csv --page raw \
    "$BUILD/bench_gpu" --profile $what > "$OUT/profile-$what.csv" 2> "$OUT/profile-$what.log" || tail -20 "$OUT/profile-$what.log"
done
"$PY" - "$OUT" <<'PY'
import csv, io, re, sys
titles = {"decode": "decode step (Phi-3-mini bf16, batch 1, 512-token prompt, eager, fused kernels)",
          "train": "training step (phi-1.5, bf16 autocast, batch 4 x 2048, SDPA + fused elementwise)"}
for what, title in titles.items():
    text = open(f"{sys.argv[1]}/profile-{what}.csv").read()
    start = text.find('"ID"')
    if start < 0:
        print(f"\n{title}: ncu wrote no kernel rows (profile-{what}.log)")
        continue
    rows = list(csv.DictReader(io.StringIO(text[start:])))
    unit = rows[0].get("gpu__time_duration.sum", "")
    scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(unit, 1e-3)
    total, count = {}, {}
    for r in rows[1:]:
        try:  # ncu's own "==PROF==" lines can follow the table
            us = float(r["gpu__time_duration.sum"].replace(",", "")) * scale
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        name = re.sub(r"<.*>", "<>", re.sub(r"\(.*", "", r.get("Kernel Name") or "?"))[:70]
        total[name] = total.get(name, 0.0) + us
        count[name] = count.get(name, 0) + 1
    whole = sum(total.values())
    print(f"\n{title}: {sum(count.values())} kernels, {whole / 1e3:.2f} ms of kernel time")
    print("| kernel | launches | ms | share |")
    print("|---|---|---|---|")
    for name, us in sorted(total.items(), key=lambda kv: -kv[1])[:15]:
        print(f"| {name} | {count[name]} | {us / 1e3:.3f} | {us / whole:.1%} |")
PY
