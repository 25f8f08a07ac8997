#!/usr/bin/env bash
# One device call: the whole MMLU test split (14,042 questions, 5-shot) through `phi eval mmlu` on
# random Phi-3-mini-4k-shaped weights in bf16 on the GPU, the time for docs/perf.md (goal: under 5
# minutes on an H100). The answers of random weights mean nothing; the time and tokens/s do.
#   bash scripts/gpu_mmlu.sh            (on the GPU machine, after scripts/gpu_check.sh built build-gpu)
# The GPU machine has no ../shared: carry the MMLU tarball and the Llama-2 SentencePiece model in
# .devdeps/ (gitignored): cp ../shared/data/eval/mmlu/mmlu_dev_test_reformatted.tar.gz
# ../shared/data/tokenizers/llama2/tokenizer.model ../shared/data/tokenizers/phi3/added_tokens.json .devdeps/
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${PHI_BUILD_DIR:-build-gpu}
OUT=${OUT:-$(mktemp -d)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$BUILD/phi" init --preset phi-3-mini-4k --dtype bf16 --seed 1 --output "$work/model" > /dev/null
cp .devdeps/tokenizer.model .devdeps/added_tokens.json "$work/model/"
mkdir -p "$work/data"
tar xzf .devdeps/mmlu_dev_test_reformatted.tar.gz -C "$work/data"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
PHI_PROGRESS=0 "$BUILD/phi" eval mmlu --model "$work/model" --data "$work/data/mmlu" --device cuda --dtype bf16 \
  --batch-size "${MMLU_BATCH:-32}" --output "$OUT/mmlu_gpu.json" --samples "$OUT/mmlu_gpu.jsonl" | tail -4
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps({'timings': r['timings'], 'prompts': r['prompts'], 'git_commit': r['git_commit']}, indent=1))" "$OUT/mmlu_gpu.json"
