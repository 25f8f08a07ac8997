"""`phi data dedup` against datatrove 0.10.1 run side by side on the same corpus: Tiny Shakespeare
passages with planted near-duplicates (Jaccard of their 5-gram shingle sets from 0.5 to 1.0) and
exact copies that differ in case, spacing and punctuation. With datatrove's permutation parameters
(exported from its MinhashDedupSignature) and its text normalisation with a whitespace word split,
the signatures are bit-equal and the documents removed are the same ones; the catch rate follows
1 - (1 - s^8)^14; exact dedup removes every planted copy and nothing else; a killed run resumes from
its finished signature files; corrupt inputs and intermediates are named."""
import json
import random
import re
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import datatrove_whitespace_tokenizer, require_shared_data, run_phi  # noqa: E402

datatrove = pytest.importorskip("datatrove", reason="datatrove is the oracle (scripts/setup.sh installs it)")


def corpus(seed=3):
    """Originals (distinct), one near-duplicate variant of some, exact copies of others."""
    text = (require_shared_data() / "text" / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    words = text.split()
    rng = random.Random(seed)
    originals = []
    pos = 0
    while len(originals) < 500 and pos < len(words) - 200:
        n = rng.randint(60, 160)
        originals.append(" ".join(words[pos:pos + n]))
        pos += n
    docs = [{"id": f"orig-{i}", "text": t} for i, t in enumerate(originals)]
    planted = []
    for i in range(0, 300):
        w = originals[i].split()
        rate = rng.choice([0.0, 0.01, 0.02, 0.04, 0.06, 0.08, 0.12])
        out = [("zzq" + str(rng.randint(0, 99999)) if rng.random() < rate else x) for x in w]
        docs.append({"id": f"near-{i}", "text": " ".join(out)})
        planted.append((f"orig-{i}", f"near-{i}"))
    for i in range(300, 340):
        t = originals[i]
        variant = t.upper() if i % 3 == 0 else re.sub(r" ", "   ", t) if i % 3 == 1 else t.replace(",", ";")
        docs.append({"id": f"copy-{i}", "text": variant})
    rng.shuffle(docs)
    return docs, planted


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    root = tmp_path_factory.mktemp("dedup")
    docs, planted = corpus()
    (root / "in").mkdir()
    with open(root / "in" / "docs.jsonl", "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    config = MinhashConfig()  # datatrove's defaults: 5-grams, 14 x 8, seed 1, xxhash64
    signer = MinhashDedupSignature(output_folder=str(root / "dt" / "sigs"), config=config,
                                   language=datatrove_whitespace_tokenizer())
    a, b = signer.parameters
    (root / "permutations.json").write_text(json.dumps({"a": [int(x) for x in a[0]], "b": [int(x) for x in b[0]]}))
    reader = lambda: JsonlReader(str(root / "in"))  # noqa: E731
    logs = root / "dt" / "logs"
    LocalPipelineExecutor([reader(), signer], tasks=1, logging_dir=str(logs / "1")).run()
    LocalPipelineExecutor([MinhashDedupBuckets(str(root / "dt" / "sigs"), str(root / "dt" / "buckets"), config=config)],
                          tasks=config.num_buckets, logging_dir=str(logs / "2")).run()
    LocalPipelineExecutor([MinhashDedupCluster(str(root / "dt" / "buckets"), str(root / "dt" / "remove"), config=config)],
                          tasks=1, logging_dir=str(logs / "3")).run()
    LocalPipelineExecutor([reader(), MinhashDedupFilter(str(root / "dt" / "remove"),
                                                        exclusion_writer=JsonlWriter(str(root / "dt" / "removed"),
                                                                                     compression=None))],
                          tasks=1, logging_dir=str(logs / "4")).run()
    run_phi("data", "dedup", "--method", "minhash", "--input", root / "in", "--output", root / "ours",
            "--permutations", root / "permutations.json")
    return root, docs, planted, config


def removed_ids(path):
    out = {}
    for f in Path(path).glob("*.jsonl"):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            out[r["id"]] = r
    return out


def test_signatures_are_bit_equal_to_datatrove(runs):
    root, docs, _, config = runs
    raw = (root / "ours" / "signatures" / "00000.minhash").read_bytes()
    magic, (params, n, hashes) = raw[:8], struct.unpack("<3Q", raw[8:32])
    assert magic == b"PHIMH1\0\0" and n == len(docs) and hashes == config.num_buckets * config.hashes_per_bucket
    ours = [struct.unpack(f"<{hashes}Q", raw[32 + i * hashes * 8: 32 + (i + 1) * hashes * 8]) for i in range(n)]
    width = config.hashes_per_bucket
    compared = 0
    for bucket in range(config.num_buckets):
        data = (root / "dt" / "sigs" / f"bucket_{bucket:03d}" / "00000.minhash.sig").read_bytes()
        theirs = sorted(struct.iter_unpack(f"<{width}QI", data))
        mine = sorted(tuple(s[bucket * width:(bucket + 1) * width]) + (i,)
                      for i, s in enumerate(ours) if s[0] != 2**64 - 1)
        assert mine == theirs, f"bucket {bucket}"
        compared += len(mine)
    assert compared == config.num_buckets * len(docs)


def test_the_same_documents_are_removed(runs):
    root, docs, _, _ = runs
    theirs = set(removed_ids(root / "dt" / "removed"))
    ours = {json.loads(x)["id"]: json.loads(x) for x in (root / "ours" / "removed.jsonl").read_text().splitlines()}
    assert len(theirs) > 100 and set(ours) == theirs
    print(f"datatrove and phi remove the same {len(ours)} of {len(docs)} documents")
    kept = set()
    for f in sorted((root / "ours").glob("0*.jsonl")):
        kept |= {json.loads(x)["id"] for x in f.read_text().splitlines()}
    assert kept.isdisjoint(ours) and len(kept) + len(ours) == len(docs)
    assert all(r["duplicate_of"] in kept and r["reason"] == "near-duplicate" for r in ours.values())
    stats = json.loads((root / "ours" / "stats.json").read_text())
    assert stats["documents_in"] == len(docs) and stats["documents_out"] == len(kept)
    assert stats["removed"]["near-duplicate"] == len(ours)


def shingles(text, n=5):
    w = re.sub(r"[^\w\s]|_", " ", text.lower()).split()
    return {" ".join(w[i:i + n]) for i in range(len(w) - n + 1)}


def test_catch_rate_follows_the_lsh_curve(runs):
    """Each planted pair is caught with probability 1 - (1 - s^8)^14 for its Jaccard s: the count
    caught is within 4 standard deviations of the sum of those probabilities."""
    root, docs, planted, _ = runs
    text = {d["id"]: d["text"] for d in docs}
    removed = {json.loads(x)["id"]: json.loads(x)["duplicate_of"]
               for x in (root / "ours" / "removed.jsonl").read_text().splitlines()}
    root_of = lambda i: removed.get(i, i)  # noqa: E731
    expected = variance = caught = 0.0
    similarities = []
    for a, b in planted:
        sa, sb = shingles(text[a]), shingles(text[b])
        s = len(sa & sb) / len(sa | sb)
        similarities.append(s)
        p = 1 - (1 - s ** 8) ** 14
        expected += p
        variance += p * (1 - p)
        caught += root_of(a) == root_of(b)
    assert min(similarities) < 0.55 and max(similarities) == 1.0
    assert abs(caught - expected) <= 4 * variance ** 0.5 + 1, (caught, expected, variance)
    print(f"caught {caught:.0f} of {len(planted)} planted pairs; the LSH curve predicts {expected:.1f} "
          f"(sd {variance ** 0.5:.1f})")


def test_exact_dedup_removes_the_planted_copies_only(runs, tmp_path):
    root, docs, _, _ = runs
    run_phi("data", "dedup", "--method", "exact", "--input", root / "in", "--output", tmp_path / "exact")
    removed = {json.loads(x)["id"]: json.loads(x) for x in (tmp_path / "exact" / "removed.jsonl").read_text().splitlines()}
    order = [d["id"] for d in docs]
    expected = set()
    for i in range(300, 340):  # the copy or its original, whichever comes second
        first = min(f"orig-{i}", f"copy-{i}", key=order.index)
        expected.add(f"copy-{i}" if first == f"orig-{i}" else f"orig-{i}")
    copies = {k for k in removed if k.startswith("copy-") or (k.startswith("orig-") and removed[k]["duplicate_of"].startswith("copy-"))}
    assert copies == expected
    # Everything else removed is a planted variant with no word changed (rate 0), i.e. an exact copy.
    text = {d["id"]: d["text"] for d in docs}
    for k, r in removed.items():
        if k in copies:
            continue
        assert text[k] == text[r["duplicate_of"]], (k, r)
    assert len(removed) >= len(expected)


def test_a_killed_run_resumes_and_corrupt_intermediates_are_named(runs, tmp_path):
    root, _, _, _ = runs
    out = tmp_path / "resume"
    args = ["data", "dedup", "--input", root / "in", "--output", out, "--permutations", root / "permutations.json"]
    run_phi(*args)
    before = {p.name: p.read_bytes() for p in out.glob("*.jsonl")}
    (out / "stats.json").unlink()  # as if killed after the signatures, before the end
    proc = run_phi(*args)
    assert "already computed" in proc.stderr
    assert {p.name: p.read_bytes() for p in out.glob("*.jsonl")} == before
    assert "nothing to do" in run_phi(*args).stderr  # complete: not redone
    (out / "stats.json").unlink()
    sig = out / "signatures" / "00000.minhash"
    sig.write_bytes(sig.read_bytes()[:-100])
    proc = run_phi(*args, check=False)
    assert proc.returncode == 1 and "truncated or corrupt" in proc.stderr and "00000.minhash" in proc.stderr


def test_bad_input_is_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine words here"}\n{"id": "b", "text": \n')
    proc = run_phi("data", "dedup", "--input", bad, "--output", tmp_path / "o1", check=False)
    assert proc.returncode == 1 and "bad.jsonl:2" in proc.stderr
    bad.write_bytes(b'{"id": "a", "text": "caf\xe9"}\n')
    proc = run_phi("data", "dedup", "--input", bad, "--output", tmp_path / "o2", check=False)
    assert proc.returncode == 1 and "bad.jsonl:1" in proc.stderr
    bad.write_text('{"id": "a", "body": "no text key"}\n')
    proc = run_phi("data", "dedup", "--input", bad, "--output", tmp_path / "o3", check=False)
    assert proc.returncode == 1 and "bad.jsonl:1" in proc.stderr and '"text"' in proc.stderr
    proc = run_phi("data", "dedup", "--input", tmp_path / "missing", "--output", tmp_path / "o4", check=False)
    assert proc.returncode == 1 and "missing" in proc.stderr


def test_clustering_spills_to_disk_with_the_same_result(runs, tmp_path):
    """The corpus in eight files, clustered under a 1 MiB memory limit (band records of 840 x 8
    copies do not fit): sorted runs go to disk and are merged per band, and the documents removed,
    with what they duplicate, are the same as in memory. Both are datatrove's (the test above)."""
    root, docs, _, _ = runs
    (tmp_path / "in").mkdir()
    copies = []
    for k in range(8):  # the corpus eight times, each copy another file with its own ids
        lines = [json.dumps(dict(d, id=f"{k}-{d['id']}")) for d in docs]
        (tmp_path / "in" / f"part{k}.jsonl").write_text("\n".join(lines) + "\n")
        copies += lines
    common = ["data", "dedup", "--method", "minhash", "--input", tmp_path / "in", "--permutations",
              root / "permutations.json"]
    run_phi(*common, "--output", tmp_path / "memory")
    run_phi(*common, "--output", tmp_path / "spill", "--memory-limit", "1")
    in_memory = (tmp_path / "memory" / "removed.jsonl").read_bytes()
    assert (tmp_path / "spill" / "removed.jsonl").read_bytes() == in_memory and len(in_memory.splitlines()) > 7 * len(docs)
    spilled = json.loads((tmp_path / "spill" / "stats.json").read_text())["memory"]
    resident = json.loads((tmp_path / "memory" / "stats.json").read_text())["memory"]
    assert spilled["spilled_runs"] > 14 and resident["spilled_runs"] == 0
    assert spilled["peak_band_buffer_bytes"] <= (1 << 20) + 14 * 9 * 8 < resident["peak_band_buffer_bytes"]
    assert spilled["union_find_bytes"] == 16 * len(copies)
    assert not list((tmp_path / "spill" / "signatures").glob("spill*"))  # runs removed after use
    print({k: spilled[k] for k in ("spilled_runs", "peak_band_buffer_bytes", "bytes_per_document")})


def test_clustering_sharded_over_tasks_equals_one_task(runs, tmp_path):
    """MinHash clustering split by band over three tasks run at once: each finds its bands' duplicate
    pairs (bands i, i + 3, ...), task 0 joins them all; the output is the one-task output byte for
    byte. A task that never ran leaves its bands to task 0; a corrupt band file is named."""
    import subprocess
    from phitest import PHI_BIN

    root, docs, _, _ = runs
    (tmp_path / "in").mkdir()
    for k in range(6):
        (tmp_path / "in" / f"part{k}.jsonl").write_text(
            "".join(json.dumps(dict(d, id=f"{k}-{d['id']}")) + "\n" for d in docs[k::3]))
    common = ["data", "dedup", "--method", "minhash", "--input", tmp_path / "in", "--permutations",
              root / "permutations.json"]
    run_phi(*common, "--output", tmp_path / "one")
    procs = [subprocess.Popen([PHI_BIN, *map(str, common), "--output", str(tmp_path / "three"), "--tasks", "3",
                               "--task-index", str(i), "--wait", "120"], stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    logs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    for i in range(3):
        bands = len(range(i, 14, 3))
        assert f"task {i} finds the duplicate pairs of {bands} of 14 bands" in logs[i], logs[i]
    names = sorted(p.name for p in (tmp_path / "one").glob("*.jsonl"))
    assert names == sorted(p.name for p in (tmp_path / "three").glob("*.jsonl")) and "removed.jsonl" in names
    for name in names:
        assert (tmp_path / "three" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    assert len(list((tmp_path / "three" / "signatures" / "bands").glob("*.pairs"))) == 14

    # Task 1 computes its files' keys before task 0 has its own, so it stops before its bands;
    # task 0, not waiting, finds its bands and then task 1's.
    proc = run_phi(*common, "--output", tmp_path / "late", "--tasks", "2", "--task-index", "1", "--wait", "0")
    assert "task 0 finds its bands" in proc.stderr
    proc = run_phi(*common, "--output", tmp_path / "late", "--tasks", "2", "--task-index", "0", "--wait", "0")
    assert proc.stderr.count("task 0 finds the duplicate pairs of 7 of 14 bands") == 2, proc.stderr
    for name in names:
        assert (tmp_path / "late" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name

    band = tmp_path / "three" / "signatures" / "bands" / "00005.pairs"
    band.write_bytes(band.read_bytes()[:-5])
    (tmp_path / "three" / "stats.json").unlink()
    proc = run_phi(*common, "--output", tmp_path / "three", check=False)
    assert proc.returncode == 1 and "truncated or corrupt" in proc.stderr and "00005.pairs" in proc.stderr


def test_normalisation_equals_datatrove_simplify_text(tmp_path):
    """`phi data normalize` (what exact and MinHash dedup hash) against datatrove's simplify_text on
    random ASCII (its fast path: digits, separators, punctuation, control characters) and Unicode
    text (accents, CJK, Arabic digits, other spaces)."""
    from datatrove.utils.text import TextNormConfig, simplify_text

    rng = random.Random(8)
    ascii_pool = list("abcXYZ 019.,;:!?-_'\"()[]{}#@\t\n\r\x0b\x0c\x1c\x1f\x7f") + ["3.14", "1,000", "7.", ".5", "  "]
    uni_pool = ["café", "NAÏVE", "東京", "٣٫٥", "\u00a0", "\u2003", "\u3000", "ß", "İ", "ǅ", "e\u0301", "—", "…", "½"]
    texts = ["".join(rng.choice(ascii_pool) for _ in range(rng.randint(0, 60))) for _ in range(400)]
    texts += ["".join(rng.choice(ascii_pool + uni_pool) for _ in range(rng.randint(0, 40))) for _ in range(200)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    out = run_phi("data", "normalize", "--input", tmp_path / "d.jsonl").stdout.splitlines()
    ours = [json.loads(x)["text"] for x in out]
    theirs = [simplify_text(t, TextNormConfig()) for t in texts]
    differ = [(t, a, b) for t, a, b in zip(texts, ours, theirs) if a != b]
    assert len(ours) == len(texts) and not differ, differ[:3]
