#!/usr/bin/env bash
# The data stages against their peers on the same corpus, one run: MinHash near-dedup, exact dedup,
# the Gopher and C4 filters against datatrove 0.10.1, decontamination against lm-evaluation-harness's
# Janitor (HumanEval + MBPP, 13-grams).
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
sys.path.insert(0, "tests")
from phitest import datatrove_whitespace_tokenizer, phi_sentences  # the oracles the tests configure datatrove with
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
        if rng.random() < 0.1:
            docs.append(docs[-1].upper())  # an exact duplicate once normalised
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
config = MinhashConfig()
signer = MinhashDedupSignature(str(work / "dt" / "sigs"), config=config, language=datatrove_whitespace_tokenizer())
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

from datatrove.data import Document
from datatrove.pipeline.writers import JsonlWriter
# The filters as a user runs them: datatrove's reader -> filter -> writer pipeline, against the whole
# `phi data filter` command (both read and write JSONL).
start = time.perf_counter()
LocalPipelineExecutor([JsonlReader(str(work / "in")), GopherQualityFilter(language=datatrove_whitespace_tokenizer()),
                       JsonlWriter(str(work / "dt_gopher"), compression=None)],
                      tasks=1, workers=1, logging_dir=str(work / "l7")).run()
dt_filter = time.perf_counter() - start
start = time.perf_counter()
subprocess.run([os.environ["PHI"], "data", "filter", "--rules", "gopher", "--input", str(work / "in"), "--output",
                str(work / "filtered")], check=True, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
phi_filter = time.perf_counter() - start

# Exact dedup: datatrove's three steps on the normalised text (as ours keys it).
from datatrove.pipeline.dedup.exact_dedup import (ExactDedupConfig, ExactDedupFilter, ExactDedupSignature,
                                                  ExactFindDedups)
from datatrove.utils.text import simplify_text
ecfg = ExactDedupConfig(content_getter=lambda d: simplify_text(d.text))
start = time.perf_counter()
LocalPipelineExecutor([JsonlReader(str(work / "in")), ExactDedupSignature(str(work / "ex" / "sigs"), config=ecfg)],
                      tasks=1, workers=1, logging_dir=str(work / "l4")).run()
LocalPipelineExecutor([ExactFindDedups(str(work / "ex" / "sigs"), str(work / "ex" / "dups"), config=ecfg)],
                      tasks=1, workers=1, logging_dir=str(work / "l5")).run()
LocalPipelineExecutor([JsonlReader(str(work / "in")), ExactDedupFilter(str(work / "ex" / "dups"), config=ecfg),
                       JsonlWriter(str(work / "ex" / "out"))], tasks=1, workers=1, logging_dir=str(work / "l6")).run()
dt_exact = time.perf_counter() - start
start = time.perf_counter()
subprocess.run([os.environ["PHI"], "data", "dedup", "--method", "exact", "--input", str(work / "in"), "--output",
                str(work / "exact")], check=True, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
phi_exact = time.perf_counter() - start
import gzip
dt_kept = sum(1 for f in (work / "ex" / "out").glob("*") for _ in gzip.open(f, "rt"))
phi_kept = sum(1 for _ in open(work / "exact" / "00000.jsonl"))
assert dt_kept == phi_kept, (dt_kept, phi_kept)

# C4: datatrove's filter with phi's sentence rule (NLTK's Punkt data is not shipped).
from datatrove.pipeline.filters import c4_filters
c4_filters.split_into_sentences = lambda text, language=None: phi_sentences(text)
c4 = c4_filters.C4QualityFilter()
lined = [t.replace(". ", ".\n") for t in docs]  # lines, as web pages have
with open(work / "lines.jsonl", "w") as f:
    for i, t in enumerate(lined):
        f.write(json.dumps({"id": str(i), "text": t}) + "\n")
(work / "lines").mkdir()
(work / "lines.jsonl").rename(work / "lines" / "lines.jsonl")
start = time.perf_counter()
LocalPipelineExecutor([JsonlReader(str(work / "lines")), c4, JsonlWriter(str(work / "dt_c4"), compression=None)],
                      tasks=1, workers=1, logging_dir=str(work / "l8")).run()
dt_c4 = time.perf_counter() - start
start = time.perf_counter()
subprocess.run([os.environ["PHI"], "data", "filter", "--rules", "c4", "--input", str(work / "lines"), "--output",
                str(work / "c4")], check=True, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
phi_c4 = time.perf_counter() - start

# Decontamination against HumanEval + MBPP: lm-eval's Janitor (its Python mode: the C++ module is not
# on PyPI) registering the same texts, then finding the contaminated documents.
import contextlib, io
from lm_eval.decontamination import janitor as jmod
jmod.JANITOR_CPP = False
texts = []
for line in gzip.open(shared / "eval" / "humaneval" / "HumanEval.jsonl.gz", "rt"):
    r = json.loads(line)
    texts += [r["prompt"], r["canonical_solution"]]
for line in open(shared / "eval" / "mbpp" / "mbpp.jsonl"):
    r = json.loads(line)
    texts += [r["text"], r["code"]]
start = time.perf_counter()
janitor = jmod.Janitor(ngram_n=13)
with contextlib.redirect_stdout(io.StringIO()):
    for t in texts:
        janitor.register_contaminant_python(t)
dirty = sum(1 for t in docs if any(janitor.normalize_string(g) in janitor.dirt_ngrams for g, _ in jmod.word_ngrams_indices(t, 13)))
dt_decon = time.perf_counter() - start
start = time.perf_counter()
subprocess.run([os.environ["PHI"], "data", "decontaminate", "--input", str(work / "in"), "--output", str(work / "decon"),
                "--eval", str(shared / "eval" / "humaneval"), str(shared / "eval" / "mbpp/mbpp.jsonl"), "--min-words", "13"],
               check=True, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
phi_decon = time.perf_counter() - start
assert json.loads((work / "decon" / "stats.json").read_text())["contaminated_documents"] == dirty

n = len(docs)
result = {"documents": n, "megabytes": mb, "removed": len(ours),
          "exact_datatrove_mb_per_s": mb / dt_exact, "exact_phi_mb_per_s": mb / phi_exact, "exact_ratio": dt_exact / phi_exact,
          "c4_datatrove_mb_per_s": mb / dt_c4, "c4_phi_mb_per_s": mb / phi_c4, "c4_ratio": dt_c4 / phi_c4,
          "decontaminate_janitor_mb_per_s": mb / dt_decon, "decontaminate_phi_mb_per_s": mb / phi_decon,
          "decontaminate_ratio": dt_decon / phi_decon,
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
print(f"| C4 quality filter (MB/s) | {mb/dt_c4:.2f} | {mb/phi_c4:.2f} | {dt_c4/phi_c4:.2f}x |")
print(f"| exact dedup, normalised text (MB/s) | {mb/dt_exact:.2f} | {mb/phi_exact:.2f} | {dt_exact/phi_exact:.2f}x |")
print(f"| decontamination, HumanEval + MBPP 13-grams (MB/s; lm-eval Janitor) | {mb/dt_decon:.2f} | {mb/phi_decon:.2f} | {dt_decon/phi_decon:.2f}x |")
print("(phi: whole commands, reading and writing JSONL, 2 threads; datatrove: its pipelines with its JSONL reader"
      " and writer, one task after another; the Janitor: index and lookups in-process, no I/O)")
PY
PHI="$BUILD_DIR/phi" "$PHI_VENV/bin/python" "$work/bench.py" "$work" "$SHARED" "$COPIES" "$OUT/bench_dedup.json"
