#!/usr/bin/env bash
# data_recipes/phi1-python.json end to end on this machine, then a tiny phi-1 pretrained on the
# result (configs/train/phi1-python-tiny.json): Python files of the standard library and the venv's
# site-packages (PHI1_MAX_FILES per root, default 3000), code filters, dedup, decontamination
# against HumanEval and MBPP, synthetic textbook sections and exercises from a teacher (PHI1_SYNTH
# prompts, default 100), tokenized with phi-1's tokenizer and mixed. The teacher is PHI_TEACHER_URL
# (any OpenAI-compatible endpoint, model PHI_TEACHER_MODEL) when set; it also rates one file in ten
# for phi-1's quality classifier (PHI_RATER_URL / PHI_RATER_MODEL to use another), whose features
# come from PHI_CLASSIFIER_MODEL (a phi checkpoint; default the quickstart's model, else a random
# one). Without PHI_TEACHER_URL the teacher is `phi serve` on 127.0.0.1 with PHI_TEACHER_DIR, the
# quickstart's model, or a random tiny model (its text is noise: the pipeline is what runs), and the
# rating and classifier stages are skipped (a random model's ratings are not labels). Outputs under
# runs/data (PHI_DATA_DIR).
#   scripts/data_phi1.sh [extra `phi data run` arguments, e.g. --set synth.count=500]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BUILD_DIR=${PHI_BUILD_DIR:-build}
cmake --build "$BUILD_DIR" --target phi_cli >/dev/null
PHI="$BUILD_DIR/phi"
SHARED=${PHI_SHARED_DATA:-../shared/data}
ROOT=${PHI_DATA_DIR:-runs/data}
OUT="$ROOT/phi1-python"
mkdir -p "$ROOT"

echo "== phi-1's tokenizer (GPT-2 BPE + CodeGen whitespace tokens) from $SHARED/tokenizers"
TOK="$ROOT/phi1-tokenizer"
mkdir -p "$TOK"
cp "$SHARED/tokenizers/gpt2/encoder.json" "$TOK/vocab.json"
cp "$SHARED/tokenizers/gpt2/vocab.bpe" "$TOK/merges.txt"
cp "$SHARED/tokenizers/phi_codegen/added_tokens.json" "$TOK/added_tokens.json"

server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true' EXIT
skip=()
QUICKSTART_MODEL=$(ls -d runs/quickstart/run/checkpoints/step-*/model 2>/dev/null | tail -1 || true)
RANDOM_MODEL="$ROOT/random-teacher"
if [ ! -d "$RANDOM_MODEL" ]; then
  "$PHI" init --preset tiny-phi --set vocab_size=51200 --set max_position_embeddings=1024 --output "$RANDOM_MODEL"
  cp "$TOK"/* "$RANDOM_MODEL/"
fi
export PHI_CLASSIFIER_MODEL=${PHI_CLASSIFIER_MODEL:-${QUICKSTART_MODEL:-$RANDOM_MODEL}}
if [ -z "${PHI_TEACHER_URL:-}" ]; then
  skip=(--skip annotate --skip classify)
  echo "== no PHI_TEACHER_URL: the rating and classifier stages are skipped"
  TEACHER=${PHI_TEACHER_DIR:-${QUICKSTART_MODEL:-$RANDOM_MODEL}}
  echo "== phi serve $TEACHER as the teacher"
  log="$ROOT/teacher.log"
  "$PHI" serve --model "$TEACHER" --port 0 --model-name teacher 2>"$log" &
  server_pid=$!
  for _ in $(seq 1 120); do
    port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    [ -n "$port" ] && break
    sleep 0.5
  done
  [ -n "$port" ] || { cat "$log"; echo "the teacher did not start" >&2; exit 1; }
  export PHI_TEACHER_URL="http://127.0.0.1:$port/v1" PHI_TEACHER_MODEL=teacher
fi
export PHI_TEACHER_MODEL=${PHI_TEACHER_MODEL:-teacher}
export PHI_RATER_URL=${PHI_RATER_URL:-$PHI_TEACHER_URL} PHI_RATER_MODEL=${PHI_RATER_MODEL:-$PHI_TEACHER_MODEL}

STDLIB=$("$PHI_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
SITE=$("$PHI_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export PHI_PY_STDLIB=$STDLIB PHI1_TOKENIZER=$TOK
EVAL="[\"$SHARED/eval/humaneval\", \"$SHARED/eval/mbpp\"]"
echo "== the data recipe (data_recipes/phi1-python.json) into $OUT"
"$PHI" data run --recipe data_recipes/phi1-python.json --output "$OUT" \
  --set "import.from=[\"$STDLIB\", \"$SITE\"]" --set "import.max_files=${PHI1_MAX_FILES:-3000}" \
  --set "decontaminate.eval=$EVAL" --set "synth_decontaminate.eval=$EVAL" \
  --set "synth.count=${PHI1_SYNTH:-100}" --set synth.max_tokens=256 "${skip[@]}" "$@"
for s in import filter exact near decontaminate annotate classify synth synth_exact synth_decontaminate; do
  [ -f "$OUT/$s/stats.json" ] || continue
  "$PHI_VENV/bin/python" -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"{sys.argv[2]:>20}: {d['documents_in']:>6} in, {d['documents_out']:>6} kept, removed {({k: v for k, v in d['removed'].items() if v})}\")" "$OUT/$s/stats.json" "$s"
done
cat "$OUT/mix/mixture.json"

echo "== a tiny phi-1 pretrained on the mixture (configs/train/phi1-python-tiny.json)"
"$PHI" train --config configs/train/phi1-python-tiny.json --set "data.sources=\"$OUT/mix/mixture.json\"" \
  --set run.dir="$ROOT/phi1-python-tiny"
