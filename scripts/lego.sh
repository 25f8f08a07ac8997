#!/usr/bin/env bash
# The LEGO recipe end to end on a CPU (issue #4's target: >= 95% on held-out chains of the training
# length within 15 minutes on a 2-core machine): LEGO chains of lengths 2..6 (40000 each), a byte-level
# BPE of 285 tokens trained on them (its merges: "=+" and "=-", so a clause's sign is the token right
# after its variable, and " a".." z", so a variable being defined is another token than the same
# variable being read), masked shards, configs/train/lego-tiny.json, then `phi eval lego`
# on 300 held-out chains of length 6 (another seed). Prints the accuracy table and the wall times;
# writes RUN/report.json. Usage: scripts/lego.sh [RUN_DIR] (default runs/lego); PHI_BIN picks the
# binary (default build/phi), LEGO_STEPS the training steps.
set -euo pipefail
cd "$(dirname "$0")/.."
PHI=${PHI_BIN:-build/phi}
RUN=${1:-runs/lego}
STEPS=${LEGO_STEPS:-3000}
rm -rf "$RUN"
mkdir -p "$RUN"
start=$(date +%s)
for L in 2 3 4 5 6; do
  "$PHI" data synth lego --output "$RUN/train-$L.jsonl" --count 40000 --length $L --seed $((10 + L))
done
"$PHI" data synth lego --output "$RUN/heldout-6.jsonl" --count 300 --length 6 --seed 999
"$PHI" tokenizer train --kind bpe --vocab-size 285 --input "$RUN/train-6.jsonl" --output "$RUN/tokenizer"
sources=""
for L in 2 3 4 5 6; do
  "$PHI" data tokenize --tokenizer "$RUN/tokenizer" --input "$RUN/train-$L.jsonl" --output "$RUN/data-$L"
  sources="$sources${sources:+,}{\"path\": \"$RUN/data-$L\"}"
done
data_end=$(date +%s)
"$PHI" train --config configs/train/lego-tiny.json --set run.dir="$RUN/run" --set "data.sources=[$sources]" \
  --set training.max_steps="$STEPS" --set schedule.total_steps="$STEPS"
train_end=$(date +%s)
MODEL=$(ls -d "$RUN"/run/checkpoints/step-*/model | tail -1)
"$PHI" eval lego --model "$MODEL" --input "$RUN/heldout-6.jsonl" --json > "$RUN/report.json"
"$PHI" eval lego --model "$MODEL" --input "$RUN/heldout-6.jsonl"
end=$(date +%s)
echo "data $((data_end - start)) s, training $((train_end - data_end)) s, evaluation $((end - train_end)) s, total $((end - start)) s"
