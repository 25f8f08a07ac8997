#!/usr/bin/env bash
# The main job, end to end, on nothing but what the project generates: build, create a small
# Phi-3-shaped model, inspect it, convert it to bf16 (sharded), and run the forward pass on both.
# (Data generation, tokenizer and training join this script with the trainer issue.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
BUILD_DIR=${PHI_BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PHI_TORCH_CMAKE" \
  -DPHI_PYTHON="$PHI_VENV/bin/python" >/dev/null
cmake --build "$BUILD_DIR" --target phi_cli
PHI="$BUILD_DIR/phi"
RUN=${PHI_RUN_DIR:-runs/quickstart}
mkdir -p "$RUN"

echo "== the real family, from the presets"
"$PHI" info --preset phi-3-mini-4k
"$PHI" info --preset phi-2

echo "== a ~34M-parameter Phi-3-shaped model, randomly initialised"
"$PHI" init --preset tiny-phi3 --output "$RUN/model" --seed 1 \
  --set hidden_size=384 --set intermediate_size=1024 --set n_layers=6 --set n_heads=6 --set n_kv_heads=2 \
  --set vocab_size=32064 --set max_position_embeddings=1024
"$PHI" info --model "$RUN/model"

echo "== convert to bf16 in 8 MB shards"
"$PHI" convert --from "$RUN/model" --to "$RUN/model-bf16" --dtype bf16 --max-shard-size 8MB
ls -l "$RUN/model-bf16"

echo "== forward pass on a batch of unequal lengths, float32 and bf16"
echo '[[1, 450, 4996, 17354, 1701], [1, 29871, 13, 8, 2, 2, 99, 31999, 32000, 32007, 5], [42]]' > "$RUN/ids.json"
"$PHI" forward --model "$RUN/model" --input "$RUN/ids.json" --output "$RUN/logits-f32.safetensors"
"$PHI" forward --model "$RUN/model-bf16" --input "$RUN/ids.json" --output "$RUN/logits-bf16.safetensors" --dtype bf16
"$PHI_VENV/bin/python" - "$RUN" <<'PY'
import sys
from safetensors.torch import load_file
run = sys.argv[1]
a = load_file(f"{run}/logits-f32.safetensors")["logits"]
b = load_file(f"{run}/logits-bf16.safetensors")["logits"]
print(f"logits {tuple(a.shape)}; bf16 vs float32: max |diff| / max |logit| = {float((a - b).abs().max() / a.abs().max()):.3e}")
print("greedy next tokens:", a[0, 4].argmax().item(), a[1, 10].argmax().item(), a[2, 0].argmax().item())
PY
echo "quickstart: done (outputs in $RUN)"
