#!/usr/bin/env bash
# One device call: the NCCL path on the GPU machine's single GPU (NCCL refuses two ranks on one GPU,
# so world size 1 with the backend named): every collective through `phi dist check --backend nccl`,
# then a tiny recipe trained on CUDA with distributed.backend nccl against the same recipe without a
# process group, and the same with the fully sharded strategy over NCCL (gathers, reduce-scatters and
# a sharded checkpoint on the GPU); the losses must agree within 1e-5 (record them in docs/perf.md).
#   bash scripts/gpu_dist.sh          (on the GPU machine, after scripts/gpu_check.sh built build-gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${PHI_BUILD_DIR:-build-gpu}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$BUILD/phi" dist check --backend nccl --device cuda --elements 16777216
"$BUILD/phi" data synth textbook --count 2000 --seed 1 --output "$work/corpus.txt" > /dev/null
"$BUILD/phi" tokenizer train --kind bpe --vocab-size 512 --input "$work/corpus.txt" --output "$work/tok" > /dev/null
"$BUILD/phi" data tokenize --tokenizer "$work/tok" --input "$work/corpus.txt" --output "$work/shards" > /dev/null
for backend in none nccl fsdp; do
  extra=()
  [ "$backend" = nccl ] && extra=(--set distributed.backend=nccl)
  [ "$backend" = fsdp ] && extra=(--set distributed.backend=nccl --set distributed.strategy=fsdp)
  "$BUILD/phi" train --config configs/train/tiny-textbook.json --set run.dir="$work/run-$backend" \
    --set "data.sources=[{\"path\": \"$work/shards\"}]" --set data.valid="" --set training.device=cuda \
    --set training.max_steps=20 --set schedule.total_steps=20 --set checkpoint.every=0 "${extra[@]}" > "$work/$backend.log" 2>&1 \
    || { tail -20 "$work/$backend.log"; exit 1; }
done
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
a = [json.loads(l)["loss"] for l in open(f"{w}/run-none/metrics.jsonl")]
for run in ("nccl", "fsdp"):
    b = [json.loads(l)["loss"] for l in open(f"{w}/run-{run}/metrics.jsonl")]
    worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
    print(f"{run}: NCCL world size 1 against no process group, 20 steps: max relative loss difference {worst:.2e}",
          "OK" if worst < 1e-5 and len(a) == len(b) else "MISMATCH")
PY
