#!/usr/bin/env bash
# The main job, end to end, on nothing but what the project generates: build; write a synthetic
# textbook corpus; train a tokenizer on it; tokenize it into shards; pretrain a tiny phi
# (configs/train/tiny-textbook.json); draw the loss curve; sample from the model; measure its
# held-out perplexity (phi eval perplexity, docs/eval.md); then the LEGO
# recipe (scripts/lego.sh: >= 95% on held-out chains). About 16 minutes on a 2-core CPU. Outputs go
# to runs/quickstart (PHI_RUN_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh
source scripts/env.sh
BUILD_DIR=${PHI_BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PHI_TORCH_CMAKE" \
  -DPHI_PYTHON="$PHI_VENV/bin/python" >/dev/null
cmake --build "$BUILD_DIR" --target phi_cli
PHI="$BUILD_DIR/phi"
RUN=${PHI_RUN_DIR:-runs/quickstart}
STEPS=${PHI_QUICKSTART_STEPS:-600}
rm -rf "$RUN"
mkdir -p "$RUN"

echo "== 1. a synthetic textbook corpus (train and held-out seeds)"
"$PHI" data synth textbook --count 30000 --seed 1 --output "$RUN/textbook-train.txt"
"$PHI" data synth textbook --count 1000 --seed 2 --output "$RUN/textbook-valid.txt"

echo "== 2. a byte-level BPE tokenizer trained on it"
"$PHI" tokenizer train --kind bpe --vocab-size 2048 --input "$RUN/textbook-train.txt" --output "$RUN/tokenizer"

echo "== 3. token shards"
"$PHI" data tokenize --tokenizer "$RUN/tokenizer" --input "$RUN/textbook-train.txt" --output "$RUN/data/train"
"$PHI" data tokenize --tokenizer "$RUN/tokenizer" --input "$RUN/textbook-valid.txt" --output "$RUN/data/valid"

echo "== 4. pretraining (configs/train/tiny-textbook.json, $STEPS steps)"
"$PHI" train --config configs/train/tiny-textbook.json --set run.dir="$RUN/run" \
  --set "data.sources=[{\"path\": \"$RUN/data/train\"}]" --set data.valid="$RUN/data/valid" \
  --set training.max_steps="$STEPS" --set schedule.total_steps="$STEPS"

echo "== 5. the loss curve"
"$PHI_VENV/bin/python" scripts/plot_metrics.py "$RUN/run"

echo "== 6. samples"
MODEL=$(ls -d "$RUN"/run/checkpoints/step-*/model | tail -1)
cat > "$RUN/prompts.jsonl" <<'PROMPTS'
{"prompt": "Lesson 1: Addition.\nTo add 12 and 7, start at 12 and count 7 more. 12 plus 7 equals"}
{"prompt": "Lesson 2: The table of 3.\n3 times 1 is 3.\n3 times 2 is"}
{"prompt": "Lesson 3: A Python function that adds.\n\ndef add(a, b):"}
{"prompt": "Lesson 4: Comparing numbers.\n58 is", "temperature": 0.8, "seed": 4}
PROMPTS
"$PHI" generate --model "$MODEL" --input "$RUN/prompts.jsonl" --output "$RUN/samples.jsonl" --temperature 0 \
  --max-new-tokens 48
"$PHI_VENV/bin/python" - "$RUN" <<'PY'
import json, sys
run = sys.argv[1]
prompts = [json.loads(l)["prompt"] for l in open(f"{run}/prompts.jsonl")]
for prompt, line in zip(prompts, open(f"{run}/samples.jsonl")):
    print("-" * 60)
    print(prompt + "\033[1m" + json.loads(line)["text"] + "\033[0m")
print("-" * 60)
summary = json.load(open(f"{run}/run/summary.json"))
print(f"final train loss {summary['final_loss']:.3f}, validation loss {summary['final_valid_loss']:.3f}")
PY
echo "== 7. held-out perplexity (the transformers sliding-window protocol, docs/eval.md)"
"$PHI" eval perplexity --model "$MODEL" --input "$RUN/textbook-valid.txt" --max-tokens 20000 \
  --output "$RUN/perplexity.json"

echo "== 8. the LEGO recipe (configs/train/lego-tiny.json; skip with PHI_QUICKSTART_LEGO=0)"
if [ "${PHI_QUICKSTART_LEGO:-1}" != 0 ]; then
  PHI_BIN="$PHI" bash scripts/lego.sh "$RUN/lego"
fi
echo "quickstart: done in $(( $(date +%s) - start )) s (outputs in $RUN, loss curve $RUN/run/loss.png)"
