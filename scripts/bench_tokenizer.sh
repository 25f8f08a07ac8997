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
sp = sentencepiece.SentencePieceProcessor(model_file=f"{shared}/tokenizers/llama2/tokenizer.model")
lines = text.split("\n")
gpt2_pat = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
cl_pat = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
refs = {
    "encode/gpt2_bpe": ("tiktoken r50k", tiktoken.Encoding("r50k", pat_str=gpt2_pat, mergeable_ranks=ranks("r50k_base"), special_tokens={}).encode_ordinary),
    "encode/cl100k": ("tiktoken cl100k", tiktoken.Encoding("cl100k", pat_str=cl_pat, mergeable_ranks=ranks("cl100k_base"), special_tokens={}).encode_ordinary),
    "encode/sentencepiece": ("sentencepiece", sp.encode),
    # one call per line, as a data pipeline encodes documents (its batch call, one thread)
    "encode/sentencepiece_lines": ("sentencepiece, per line", lambda t: sp.encode(lines, num_threads=1)),
    # ours with a fresh tokenizer each time (no word cached); the reference keeps no cache
    "encode/sentencepiece_cold": ("sentencepiece", sp.encode),
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

# `phi data tokenize` on threads: the text's paragraphs as JSONL documents (12 copies), SentencePiece,
# one thread against every core; the shards must be the same bytes. Seconds are whole commands; the
# start (loading libtorch and the model) is measured on a one-line input and printed apart.
"$PHI_VENV/bin/python" - "$TEXT" "$work/docs.jsonl" <<'PY'
import json, sys
paragraphs = [p for p in open(sys.argv[1], encoding="utf-8").read().split("\n\n") if p.strip()]
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for copy in range(12):
        for p in paragraphs:
            f.write(json.dumps({"text": f"{p} ({copy})"}) + "\n")
PY
cores=$(nproc)
bytes=$(stat -c %s "$work/docs.jsonl")
echo
echo "phi data tokenize, $(awk "BEGIN {printf \"%.1f\", $bytes / 1e6}") MB of JSONL documents, SentencePiece (whole command: read, encode, write):"
echo '{"text": "hi"}' > "$work/one.jsonl"
start=$(date +%s.%N)
"$BUILD_DIR/phi" data tokenize --tokenizer "$work/spm" --input "$work/one.jsonl" --output "$work/one" 2>/dev/null
startup=$(awk "BEGIN {print $(date +%s.%N) - $start}")
echo "| threads | seconds | MB/s | MB/s past the start ($(awk "BEGIN {printf \"%.2f\", $startup}") s) |"
echo "|---|---|---|---|"
for threads in 1 "$cores"; do
  best=0
  for _ in 1 2 3; do
    rm -rf "$work/tok$threads"
    start=$(date +%s.%N)
    "$BUILD_DIR/phi" data tokenize --tokenizer "$work/spm" --input "$work/docs.jsonl" --output "$work/tok$threads" \
      --threads "$threads" 2>/dev/null
    t=$(awk "BEGIN {print $(date +%s.%N) - $start}")
    best=$(awk "BEGIN {print ($best == 0 || $t < $best) ? $t : $best}")
  done
  echo "| $threads | $(awk "BEGIN {printf \"%.2f\", $best}") | $(awk "BEGIN {printf \"%.1f\", $bytes / 1e6 / $best}") |" \
    "$(awk "BEGIN {printf \"%.1f\", $bytes / 1e6 / ($best - $startup)}") |"
done
cmp "$work/tok1/shard-00000.bin" "$work/tok$cores/shard-00000.bin" >/dev/null || { echo "shards differ between thread counts" >&2; exit 1; }
