#!/usr/bin/env bash
# CPU training throughput: phi train against the same Phi-3-shaped model trained by PyTorch from
# Python (transformers' Phi3ForCausalLM, AdamW, same batch, same threads), measured in one run.
#   scripts/bench_train.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BUILD_DIR=${PHI_BUILD_DIR:-build}
STEPS=${1:-20}
THREADS=${OMP_NUM_THREADS:-$(nproc)}
cmake --build "$BUILD_DIR" --target phi_cli >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PHI="$BUILD_DIR/phi"
# Random tokens as a dataset (the loader and the optimizer are part of what is measured).
"$PHI_VENV/bin/python" - "$work" <<'PY'
import json, random, sys
random.seed(0)
with open(f"{sys.argv[1]}/docs.jsonl", "w") as f:
    for _ in range(400):
        f.write(json.dumps({"text": " ".join(str(random.randint(0, 9999)) for _ in range(400))}) + "\n")
PY
"$PHI" tokenizer train --kind bpe --vocab-size 2048 --input "$work/docs.jsonl" --output "$work/tok" 2>/dev/null
"$PHI" data tokenize --tokenizer "$work/tok" --input "$work/docs.jsonl" --output "$work/data" 2>/dev/null
cat > "$work/recipe.json" <<JSON
{"run": {"dir": "$work/run"},
 "model": {"preset": "tiny-phi3", "set": ["vocab_size=2048", "hidden_size=256", "intermediate_size=768", "n_layers=4",
                                          "n_heads=4", "n_kv_heads=2", "max_position_embeddings=512"]},
 "data": {"sources": [{"path": "$work/data"}], "seq_len": 256},
 "training": {"batch_size": 8, "max_steps": $STEPS, "log_every": 1000},
 "checkpoint": {"every": 0, "keep": 1},
 "optimizer": {"name": "adamw", "lr": 1e-3},
 "schedule": {"kind": "constant", "total_steps": $STEPS}}
JSON
OMP_NUM_THREADS=$THREADS "$PHI" train --config "$work/recipe.json" 2>/dev/null
OMP_NUM_THREADS=$THREADS "$PHI_VENV/bin/python" - "$work" "$STEPS" "$THREADS" <<'PY'
import json, sys, time
import torch, transformers
work, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
rows = [json.loads(l) for l in open(f"{work}/run/metrics.jsonl")]
# Skip the first two steps (warm-up) on both sides.
ours = (len(rows) - 2) * 8 * 256 / (rows[-1]["elapsed_s"] - rows[1]["elapsed_s"])
config = transformers.Phi3Config(vocab_size=2048, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0)
model = transformers.Phi3ForCausalLM(config)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
ids = torch.randint(0, 2048, (8, 257))
times = []
for step in range(steps):
    start = time.perf_counter()
    out = model(ids[:, :-1], labels=ids[:, :-1])
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step(); opt.zero_grad()
    times.append(time.perf_counter() - start)
ref = (steps - 2) * 8 * 256 / sum(times[2:])
print(f"model: Phi-3-shaped, {sum(p.numel() for p in model.parameters())/1e6:.1f}M parameters, batch 8 x 256, float32, {threads} threads")
print("| trainer | tokens/s |")
print("|---|---|")
print(f"| phi train | {ours:.0f} |")
print(f"| PyTorch (transformers Phi3ForCausalLM + torch.optim.AdamW) | {ref:.0f} |")
print(f"ratio phi / PyTorch: {ours / ref:.2f}")
PY
