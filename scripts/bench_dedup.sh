#!/usr/bin/env bash
# MinHash near-dedup and the Gopher filter against datatrove 0.10.1 on the same corpus, one run:
# Tiny Shakespeare cut into documents of 60-160 words, a third of them planted again with a few
# words changed. MinHash: datatrove's signature, buckets and cluster steps (local executor, one task
# for signatures as ours uses its threads) against `phi data dedup --method minhash` with
# datatrove's permutations; both remove the same documents (checked here). datatrove's tasks run one
# after another in this process (workers=1), as ours uses the 2 cores for one command. Prints documents/s and
# the ratio; JSON in $OUT/bench_dedup.json (default build/).
#   scripts/bench_dedup.sh [COPIES]   (default 4: the corpus repeated with fresh edits, ~10k documents)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BUILD_DIR=${PHI_BUILD_DIR:-build}
SHARED=${PHI_SHARED_DATA:-$(cd .. && pwd)/shared/data}
COPIES=${1:-4}
OUT=${OUT:-$BUILD_DIR}
cmake --build "$BUILD_DIR" --target phi_cli >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/bench.py" <<'PY'
import json, os, random, subprocess, sys, time
from pathlib import Path
work, shared, copies, out = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
words = (shared / "text" / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").split()
rng = random.Random(0)
docs = []
for c in range(copies):
    pos = 0
    while pos < len(words) - 200:
        n = rng.randint(60, 160)
        w = words[pos:pos + n]
        pos += n
        docs.append(" ".join(w) + f" copy{c}")
        if rng.random() < 0.33:
            docs.append(" ".join(x if rng.random() > 0.03 else "zz" for x in w) + f" copy{c}")
(work / "in").mkdir()
with open(work / "in" / "docs.jsonl", "w") as f:
    for i, t in enumerate(docs):
        f.write(json.dumps({"id": str(i), "text": t}) + "\n")
mb = sum(len(t.encode()) for t in docs) / 1e6

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                              MinhashDedupSignature)
from datatrove.pipeline.filters import GopherQualityFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.utils.word_tokenizers import WordTokenizer

class Whitespace(WordTokenizer):
    def word_tokenize(self, text): return text.split()
    def sent_tokenize(self, text): return [text]
    def span_tokenize(self, text): return []

config = MinhashConfig()
signer = MinhashDedupSignature(str(work / "dt" / "sigs"), config=config, language=Whitespace())
a, b = signer.parameters
(work / "perm.json").write_text(json.dumps({"a": [int(x) for x in a[0]], "b": [int(x) for x in b[0]]}))
start = time.perf_counter()
LocalPipelineExecutor([JsonlReader(str(work / "in")), signer], tasks=1, workers=1, logging_dir=str(work / "l1")).run()
LocalPipelineExecutor([MinhashDedupBuckets(str(work / "dt" / "sigs"), str(work / "dt" / "b"), config=config)],
                      tasks=config.num_buckets, workers=1, logging_dir=str(work / "l2")).run()
LocalPipelineExecutor([MinhashDedupCluster(str(work / "dt" / "b"), str(work / "dt" / "r"), config=config)],
                      tasks=1, workers=1, logging_dir=str(work / "l3")).run()
dt_seconds = time.perf_counter() - start
start = time.perf_counter()
subprocess.run([os.environ["PHI"], "data", "dedup", "--input", str(work / "in"), "--output", str(work / "ours"),
                "--permutations", str(work / "perm.json")], check=True, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
phi_seconds = time.perf_counter() - start
import struct
dt_removed = set()
for f in (work / "dt" / "r").glob("*.remove"):
    dt_removed |= {str(x[0]) for x in struct.iter_unpack("<I", f.read_bytes())}
ours = {json.loads(x)["id"] for x in (work / "ours" / "removed.jsonl").read_text().splitlines()}
assert ours == dt_removed, (len(ours), len(dt_removed))

gopher = GopherQualityFilter(language=Whitespace())
from datatrove.data import Document
start = time.perf_counter()
for i, t in enumerate(docs):
    gopher.filter(Document(text=t, id=str(i)))
dt_filter = time.perf_counter() - start
start = time.perf_counter()
subprocess.run([os.environ["PHI"], "data", "filter", "--rules", "gopher", "--input", str(work / "in"), "--output",
                str(work / "filtered")], check=True, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
phi_filter = time.perf_counter() - start

n = len(docs)
result = {"documents": n, "megabytes": mb, "removed": len(ours),
          "minhash_datatrove_docs_per_s": n / dt_seconds, "minhash_phi_docs_per_s": n / phi_seconds,
          "minhash_ratio": dt_seconds / phi_seconds,
          "gopher_datatrove_mb_per_s": mb / dt_filter, "gopher_phi_mb_per_s": mb / phi_filter,
          "gopher_ratio": dt_filter / phi_filter}
Path(out).write_text(json.dumps(result, indent=2))
print(f"corpus: {n} documents, {mb:.1f} MB; both remove the same {len(ours)} near-duplicates")
print("| stage | datatrove 0.10.1 | phi | ratio |")
print("|---|---|---|---|")
print(f"| MinHash dedup, signatures to clusters (documents/s) | {n/dt_seconds:.0f} | {n/phi_seconds:.0f} | {dt_seconds/phi_seconds:.2f}x |")
print(f"| Gopher quality filter (MB/s) | {mb/dt_filter:.2f} | {mb/phi_filter:.2f} | {dt_filter/phi_filter:.2f}x |")
print("(phi: whole command including reading and writing JSONL, 2 threads; datatrove: its pipeline steps,"
      " the filter called in-process without I/O)")
PY
PHI="$BUILD_DIR/phi" "$PHI_VENV/bin/python" "$work/bench.py" "$work" "$SHARED" "$COPIES" "$OUT/bench_dedup.json"
