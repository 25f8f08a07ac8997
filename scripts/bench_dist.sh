#!/usr/bin/env bash
# Data-parallel overhead on this machine (Gloo on 127.0.0.1), one run: the same recipe and global
# batch trained by 1 process and by 2 ranks (`phi launch`), with the all-reduce overlapped with
# backward and not; prints step time, tokens/s, the time ranks wait for all-reduces after backward,
# and the fraction of all-reduce time hidden behind backward (1 - wait with overlap / wait without);
# then the same 2 ranks with ZeRO-1 and fully sharded (fsdp): step time and the training-state
# bytes per rank, measured against the prediction (summary.json's "memory").
# On a 2-core machine the 2 ranks share the cores with their communication: the ratio is a floor.
#   scripts/bench_dist.sh [STEPS]   (default 30); JSON in $OUT/bench_dist.json (default build/)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BUILD_DIR=${PHI_BUILD_DIR:-build}
SHARED=${PHI_SHARED_DATA:-$(cd .. && pwd)/shared/data}
STEPS=${1:-30}
OUT=${OUT:-$BUILD_DIR}
cmake --build "$BUILD_DIR" --target phi_cli >/dev/null
PHI="$BUILD_DIR/phi"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -c 300000 "$SHARED/text/tinyshakespeare/input.txt" > "$work/train.txt"
"$PHI" tokenizer train --kind bpe --vocab-size 1024 --input "$work/train.txt" --output "$work/tok" > /dev/null
"$PHI" data tokenize --tokenizer "$work/tok" --input "$work/train.txt" --output "$work/shards" > /dev/null
recipe() {  # $1 run dir, $2 overlap, $3 strategy
  cat > "$1.json" <<JSON
{"run": {"dir": "$1", "seed": 1},
 "model": {"preset": "tiny-phi3", "set": ["vocab_size=1024", "hidden_size=256", "intermediate_size=768",
           "n_layers=6", "n_heads=8", "n_kv_heads=8", "max_position_embeddings=256"]},
 "data": {"sources": [{"path": "$work/shards"}], "seq_len": 128},
 "training": {"batch_size": 8, "grad_accum": 1, "max_steps": $STEPS, "log_every": 1000},
 "checkpoint": {"every": 100000, "keep": 1},
 "optimizer": {"name": "adamw", "lr": 1e-3},
 "schedule": {"kind": "constant", "warmup_steps": 0, "total_steps": $STEPS},
 "distributed": {"bucket_mb": 1, "overlap": $2, "strategy": "${3:-ddp}"}}
JSON
}
recipe "$work/one" true
OMP_NUM_THREADS=2 "$PHI" train --config "$work/one.json" > /dev/null 2>&1
for overlap in true false; do
  recipe "$work/two-$overlap" "$overlap"
  OMP_NUM_THREADS=1 "$PHI" launch --nproc 2 -- train --config "$work/two-$overlap.json" > /dev/null 2>&1
done
for strategy in zero1 fsdp; do
  recipe "$work/two-$strategy" true "$strategy"
  OMP_NUM_THREADS=1 "$PHI" launch --nproc 2 -- train --config "$work/two-$strategy.json" > /dev/null 2>&1
done
"$PHI_VENV/bin/python" - "$work" "$OUT/bench_dist.json" "$STEPS" <<'PY'
import json, statistics, sys
from pathlib import Path
work, out, steps = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def rows(name):
    return [json.loads(l) for l in (work / name / "metrics.jsonl").read_text().splitlines()][3:]  # skip warm-up
def step_s(r):
    times = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(r, r[1:])]
    return statistics.median(times)
one, on, off = rows("one"), rows("two-true"), rows("two-false")
wait_on = statistics.median(x["allreduce_wait_s"] for x in on)
wait_off = statistics.median(x["allreduce_wait_s"] for x in off)
result = {
    "one_process_step_s": step_s(one), "two_ranks_overlap_step_s": step_s(on), "two_ranks_no_overlap_step_s": step_s(off),
    "one_process_tokens_per_s": statistics.median(x["tokens_per_s"] for x in one),
    "two_ranks_tokens_per_s": statistics.median(x["tokens_per_s"] for x in on),
    "allreduce_wait_overlap_s": wait_on, "allreduce_wait_no_overlap_s": wait_off,
    "hidden_fraction": max(0.0, 1 - wait_on / wait_off) if wait_off > 0 else None,
    "buckets": on[0]["buckets"], "buckets_started_in_backward": on[0]["buckets_started_in_backward"],
}
def memory(name):
    return json.loads((work / name / "summary.json").read_text())["memory"]
strategies = {"ddp": "two-true", "zero1": "two-zero1", "fsdp": "two-fsdp"}
for strategy, name in strategies.items():
    r = rows(name)
    result[f"{strategy}_step_s"] = step_s(r)
    result[f"{strategy}_memory"] = memory(name)
    if strategy != "ddp":
        result[f"{strategy}_reduce_scatter_wait_s"] = statistics.median(x["reduce_scatter_wait_s"] for x in r)
Path(out).write_text(json.dumps(result, indent=2))
print("model: tiny-phi3 widened (6 layers, hidden 256), global batch 8 x 128 tokens, Gloo on 127.0.0.1")
print("| run | step (ms) | tokens/s | all-reduce wait after backward (ms) |")
print("|---|---|---|---|")
print(f"| 1 process, 2 threads | {result['one_process_step_s']*1e3:.1f} | {result['one_process_tokens_per_s']:.0f} | - |")
print(f"| 2 ranks x 1 thread, overlap | {result['two_ranks_overlap_step_s']*1e3:.1f} | {result['two_ranks_tokens_per_s']:.0f} | {wait_on*1e3:.2f} |")
print(f"| 2 ranks x 1 thread, no overlap | {result['two_ranks_no_overlap_step_s']*1e3:.1f} | - | {wait_off*1e3:.2f} |")
print(f"overhead of 2 ranks against 1: {result['two_ranks_overlap_step_s'] / result['one_process_step_s']:.2f}x step time; "
      f"all-reduce hidden behind backward: {100 * (result['hidden_fraction'] or 0):.0f}% "
      f"({result['buckets_started_in_backward']} of {result['buckets']} buckets started during backward)")
print()
print("| 2 ranks | step (ms) | state per rank measured (MiB) | predicted (MiB) | most gathered at once (MiB) | wait after backward (ms) |")
print("|---|---|---|---|---|---|")
for strategy in strategies:
    m = result[f"{strategy}_memory"]
    wait = result.get(f"{strategy}_reduce_scatter_wait_s", wait_on)
    print(f"| {strategy} | {result[f'{strategy}_step_s']*1e3:.1f} | {m['measured_bytes']/2**20:.2f} | "
          f"{m['predicted_bytes']/2**20:.2f} | {m.get('peak_gathered_bytes', 0)/2**20:.2f} | {wait*1e3:.2f} |")
PY
