#!/usr/bin/env bash
# Tokenizer encode throughput against tiktoken and sentencepiece, measured on the same text in the
# same run; prints MB/s and the ratio (ours / reference; > 1 means faster).
#   scripts/bench_tokenizer.sh [TEXT_FILE]   (default: ../shared/data/text/war_and_peace/war-and-peace.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BUILD_DIR=${PHI_BUILD_DIR:-build}
SHARED=${PHI_SHARED_DATA:-$(cd .. && pwd)/shared/data}
TEXT=${1:-$SHARED/text/war_and_peace/war-and-peace.txt}
cmake --build "$BUILD_DIR" --target bench_tokenizer >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/gpt2" "$work/spm" "$work/cl100k"
cp "$SHARED/tokenizers/gpt2/encoder.json" "$work/gpt2/vocab.json"
cp "$SHARED/tokenizers/gpt2/vocab.bpe" "$work/gpt2/merges.txt"
cp "$SHARED/tokenizers/llama2/tokenizer.model" "$work/spm/"
cp "$SHARED/tokenizers/tiktoken/cl100k_base.tiktoken" "$work/cl100k/"
OMP_NUM_THREADS=1 "$BUILD_DIR/bench_tokenizer" --text "$TEXT" --gpt2 "$work/gpt2" --spm "$work/spm" \
  --tiktoken "$work/cl100k" --benchmark_format=json --benchmark_min_time=2 > "$work/ours.json"
"$PHI_VENV/bin/python" - "$TEXT" "$SHARED" "$work/ours.json" <<'PY'
import base64, json, sys, time
import sentencepiece, tiktoken
text_path, shared, ours_path = sys.argv[1:]
text = open(text_path, encoding="utf-8").read()
mb = len(text.encode()) / 1e6
def ranks(name):
    out = {}
    for line in open(f"{shared}/tokenizers/tiktoken/{name}.tiktoken"):
        if line.strip():
            t, r = line.split()
            out[base64.b64decode(t)] = int(r)
    return out
gpt2_pat = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
cl_pat = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
refs = {
    "encode/gpt2_bpe": ("tiktoken r50k", tiktoken.Encoding("r50k", pat_str=gpt2_pat, mergeable_ranks=ranks("r50k_base"), special_tokens={}).encode_ordinary),
    "encode/cl100k": ("tiktoken cl100k", tiktoken.Encoding("cl100k", pat_str=cl_pat, mergeable_ranks=ranks("cl100k_base"), special_tokens={}).encode_ordinary),
    "encode/sentencepiece": ("sentencepiece", sentencepiece.SentencePieceProcessor(model_file=f"{shared}/tokenizers/llama2/tokenizer.model").encode),
}
def best_time(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter(); fn(text); best = min(best, time.perf_counter() - start)
    return best
ours = {b["name"]: b for b in json.load(open(ours_path))["benchmarks"]}
print(f"text: {text_path} ({mb:.2f} MB), one thread each")
print("| tokenizer | phi-engine MB/s | reference | reference MB/s | ratio |")
print("|---|---|---|---|---|")
for name, (ref_name, fn) in refs.items():
    ours_mbs = ours[name]["bytes_per_second"] / 1e6
    ref_mbs = mb / best_time(fn)
    print(f"| {name.split('/')[1]} | {ours_mbs:.2f} | {ref_name} | {ref_mbs:.2f} | {ours_mbs / ref_mbs:.2f} |")
PY
