#!/usr/bin/env bash
# CPU decode tokens/s of a ~125M-parameter Phi-3-shaped model (configs/models/bench-phi3-100m.json,
# random weights) at batch 1 and batch 8, next to transformers' greedy decoding of the same
# architecture measured in the same run with the same threads; prints the ratio.
#   scripts/bench_decode.sh [PROMPT_TOKENS] [NEW_TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BUILD_DIR=${PHI_BUILD_DIR:-build}
PROMPT=${1:-128}
STEPS=${2:-64}
THREADS=${OMP_NUM_THREADS:-$(nproc)}
cmake --build "$BUILD_DIR" --target bench_decode >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
OMP_NUM_THREADS=$THREADS "$BUILD_DIR/bench_decode" --config configs/models/bench-phi3-100m.json --prompt "$PROMPT" \
  --steps "$STEPS" --benchmark_format=json > "$work/ours.json"
OMP_NUM_THREADS=$THREADS "$PHI_VENV/bin/python" - "$work/ours.json" "$PROMPT" "$STEPS" "$THREADS" <<'PY'
import json, sys, time
import torch, transformers
ours_path, prompt, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
cfg = json.load(open("configs/models/bench-phi3-100m.json"))
config = transformers.Phi3Config(vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
    intermediate_size=cfg["intermediate_size"], num_hidden_layers=cfg["n_layers"], num_attention_heads=cfg["n_heads"],
    num_key_value_heads=cfg["n_kv_heads"], max_position_embeddings=cfg["max_position_embeddings"], pad_token_id=0)
model = transformers.Phi3ForCausalLM(config).eval()
def hf_tokens_per_s(batch):
    ids = torch.randint(0, cfg["vocab_size"], (batch, prompt))
    with torch.no_grad():
        model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)  # warm-up
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            model.generate(ids, max_new_tokens=1, min_new_tokens=1, do_sample=False)
            prefill = time.perf_counter() - start
            start = time.perf_counter()
            model.generate(ids, max_new_tokens=steps + 1, min_new_tokens=steps + 1, do_sample=False)
            best = min(best, time.perf_counter() - start - prefill)
    return batch * steps / best
runs = [b for b in json.load(open(ours_path))["benchmarks"] if b.get("run_type") != "aggregate"]
ours = {int(b["name"].split("/")[1]): b["tokens_per_s"] for b in runs if b["name"].startswith("decode/")}
paged = {int(b["name"].split("/")[1]): b["tokens_per_s"] for b in runs if b["name"].startswith("decode_paged/")}
params = sum(p.numel() for p in model.parameters())
print(f"model: Phi-3-shaped, {params/1e6:.0f}M parameters, float32, prompt {prompt}, {steps} new tokens, {threads} threads")
print("| batch | phi-engine tok/s | transformers tok/s | ratio |")
print("|---|---|---|---|")
for batch in (1, 8):
    ref = hf_tokens_per_s(batch)
    print(f"| {batch} | {ours[batch]:.1f} | {ref:.1f} | {ours[batch] / ref:.2f} |")
for batch, rate in paged.items():
    print(f"paged KV cache (the server's, 16-token pages), batch {batch}: {rate:.1f} tok/s, "
          f"{rate / ours[batch]:.2f} x the fixed-slot cache")
PY
