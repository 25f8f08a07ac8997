"""`phi data decontaminate` against the eval sets in ../shared/data/eval, with lm-evaluation-harness's
decontamination Janitor (13-grams, its normalisation) as the oracle run side by side: the same
documents are contaminated. Planted eval items, verbatim and lightly edited (case, whitespace,
punctuation), are all found with the item they come from; clean books match nothing; cut mode leaves
no eval n-gram behind; bad eval inputs are named."""
import contextlib
import csv
import gzip
import io
import json
import random
import re
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import assert_clean_failure, require_shared_data, run_phi  # noqa: E402

N = 13


def eval_texts(eval_dir):
    """(item name, text) for every text phi indexes, built here from the documented field rules."""
    out = []
    for path in sorted(p for p in eval_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(eval_dir).as_posix()
        if path.name.endswith(".tar.gz"):
            with tarfile.open(path) as tar:
                for m in tar.getmembers():
                    if m.isfile() and m.name.endswith(".csv"):
                        rows = list(csv.reader(io.StringIO(tar.extractfile(m).read().decode())))
                        if rows and rows[0] and rows[0][0] == "question":
                            rows = rows[1:]
                        for i, r in enumerate(rows):
                            out.append((f"{rel}/{m.name}:{i + 1}", "\n".join(r[:5])))
            continue
        if path.name.endswith(".jsonl.gz"):
            records = [json.loads(x) for x in gzip.open(path, "rt") if x.strip()]
        elif path.name.endswith(".jsonl"):
            records = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        else:
            continue
        for line, r in enumerate(records, 1):
            key = next((k for k in ("task_id", "question_id", "id") if k in r), None)
            name = f"{rel}:{r[key] if isinstance(r.get(key), str) else json.dumps(r[key])}" if key else f"{rel}:{line}"
            for field in ("question", "prompt", "canonical_solution", "text", "code", "turns", "reference"):
                v = r.get(field)
                for t in ([v] if isinstance(v, str) else v if isinstance(v, list) else []):
                    if isinstance(t, str):
                        out.append((name, t))
    return out


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    """A copy of part of the shared eval sets: HumanEval, MBPP, MT-bench questions, and five MMLU
    subjects packed as a tar.gz (the tar reader is under test too)."""
    shared = require_shared_data() / "eval"
    root = tmp_path_factory.mktemp("eval")
    (root / "humaneval").mkdir()
    (root / "humaneval" / "HumanEval.jsonl.gz").write_bytes((shared / "humaneval" / "HumanEval.jsonl.gz").read_bytes())
    (root / "mbpp").mkdir()
    (root / "mbpp" / "mbpp.jsonl").write_bytes((shared / "mbpp" / "mbpp.jsonl").read_bytes())
    (root / "mt_bench").mkdir()
    (root / "mt_bench" / "question.jsonl").write_bytes((shared / "mt_bench" / "question.jsonl").read_bytes())
    (root / "mmlu").mkdir()
    subjects = ["astronomy", "high_school_biology", "philosophy", "world_religions", "college_computer_science"]
    with tarfile.open(shared / "mmlu" / "mmlu_dev_test_reformatted.tar.gz") as src, \
            tarfile.open(root / "mmlu" / "part.tar.gz", "w:gz") as dst:
        for m in src.getmembers():
            if m.isfile() and any(m.name.endswith(f"/{s}_test.csv") for s in subjects):
                dst.addfile(m, src.extractfile(m))
    return root


def books():
    shared = require_shared_data() / "text"
    return (shared / "tinyshakespeare" / "input.txt").read_text() + (shared / "war_and_peace" / "war-and-peace.txt").read_text()


def clean_chunks(rng, count, lines_per=(5, 40)):
    lines = [x for x in books().splitlines() if x.strip()]
    out = []
    for _ in range(count):
        start = rng.randrange(len(lines) - 50)
        out.append("\n".join(lines[start:start + rng.randint(*lines_per)]))
    return out


def is_punct_only(token):
    return all(c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~" for c in token)


def edit(span, rng, kind):
    words = span.split()
    if kind == "upper":
        return " ".join(w.upper() if rng.random() < 0.5 else w.title() for w in words)
    if kind == "whitespace":
        return "".join(w + rng.choice(["  ", "\n", "\t", " \n "]) for w in words).strip()
    if kind == "punctuation":
        return " ".join((w.strip(".,;:?!\"'") + rng.choice(["", ",", ".", "!", ";"])) if rng.random() < 0.6 else w
                        for w in words)
    return span


def plant(rng, texts, count, allow_punct_tokens):
    """Documents holding a span of an eval text (13-40 words), edited, inside a clean chunk."""
    docs, expected = [], {}
    hosts = clean_chunks(rng, count)
    candidates = [(name, t) for name, t in texts if len(t.split()) >= N + 2]
    kinds = ["verbatim", "upper", "whitespace", "punctuation"]
    while len(docs) < count:
        name, text = rng.choice(candidates)
        tokens = text.split()
        length = rng.randint(N + 1, min(40, len(tokens)))
        start = rng.randrange(len(tokens) - length + 1)
        window = tokens[start:start + length]
        if not allow_punct_tokens and any(is_punct_only(t) for t in window):
            continue
        if sum(1 for t in window if not is_punct_only(t)) < N + 1:
            continue
        span = edit(" ".join(window), rng, kinds[len(docs) % len(kinds)])
        host = hosts[len(docs)].split("\n")
        cut = rng.randrange(len(host) + 1)
        doc_id = f"planted{len(docs)}"
        docs.append({"id": doc_id, "text": "\n".join(host[:cut] + [span] + host[cut:])})
        expected[doc_id] = name
    return docs, expected


def janitor_contaminated(texts, docs):
    from lm_eval.decontamination import janitor as jmod

    jmod.JANITOR_CPP = False
    janitor = jmod.Janitor(ngram_n=N)
    with contextlib.redirect_stdout(io.StringIO()):
        for _, t in texts:
            janitor.register_contaminant_python(t)
    dirty = set()
    for d in docs:
        if any(janitor.normalize_string(g) in janitor.dirt_ngrams for g, _ in jmod.word_ngrams_indices(d["text"], N)):
            dirty.add(d["id"])
    return dirty


def write_docs(path, docs):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))


def run_decon(tmp_path, name, docs, eval_dir, *extra):
    write_docs(tmp_path / name / "in" / "docs.jsonl", docs)
    out = tmp_path / name / "out"
    run_phi("data", "decontaminate", "--input", tmp_path / name / "in", "--output", out, "--eval", eval_dir, *extra)
    hits = [json.loads(x) for x in (out / "hits.jsonl").read_text().splitlines()]
    removed = [json.loads(x) for x in (out / "removed.jsonl").read_text().splitlines()]
    kept = [json.loads(x) for x in (out / "00000.jsonl").read_text().splitlines()]
    return hits, removed, kept, json.loads((out / "stats.json").read_text())


def test_planted_items_found_as_the_janitor_finds_them(tmp_path, eval_dir):
    pytest.importorskip("lm_eval", reason="lm-evaluation-harness is the oracle (scripts/setup.sh installs it)")
    rng = random.Random(5)
    texts = eval_texts(eval_dir)
    planted, expected = plant(rng, texts, 60, allow_punct_tokens=False)
    clean = [{"id": f"clean{i}", "text": t} for i, t in enumerate(clean_chunks(rng, 200))]
    docs = planted + clean
    rng.shuffle(docs)
    hits, removed, kept, stats = run_decon(tmp_path, "a", docs, eval_dir, "--min-words", N)
    ours = {h["id"] for h in hits}
    assert ours == set(expected), (sorted(set(expected) - ours), sorted(ours - set(expected)))
    assert ours == janitor_contaminated(texts, docs)
    items = {}
    for h in hits:
        items.setdefault(h["id"], set()).add(h["eval_item"])
        assert h["n_grams"] >= 1 and h["begin"] < h["end"] and h["action"] == "dropped"
    missing = {d: name for d, name in expected.items() if name not in items[d]}
    assert not missing, missing  # every hit names the item it was planted from
    assert {r["id"] for r in removed} == set(expected) and all(r["reason"] == "contaminated" for r in removed)
    assert {d["id"] for d in kept} == {d["id"] for d in clean}
    assert stats["documents_in"] == len(docs) and stats["removed"]["contaminated"] == len(expected)
    assert stats["eval_items"] > 1000 and any(k.startswith("mmlu/part.tar.gz/") for k in stats["eval_files"])


def test_code_with_operators_is_found(tmp_path, eval_dir):
    """Spans of code, where operators stand alone between spaces: the Janitor's windows hold an empty
    word there and never match; ours skip punctuation-only words, so every plant is found."""
    rng = random.Random(9)
    texts = [(n, t) for n, t in eval_texts(eval_dir) if n.startswith("humaneval") and " = " in t]
    planted, expected = plant(rng, texts, 30, allow_punct_tokens=True)
    hits, removed, _, _ = run_decon(tmp_path, "b", planted, eval_dir, "--min-words", N)
    assert {h["id"] for h in hits} == set(expected)
    print("the Janitor finds", len(janitor_contaminated(texts, planted)) if _has_lm_eval() else "-", "of", len(planted))


def _has_lm_eval():
    try:
        import lm_eval.decontamination.janitor  # noqa: F401
        return True
    except Exception:
        return False


def test_clean_books_match_nothing_in_the_shared_eval_sets(tmp_path):
    eval_root = require_shared_data() / "eval"
    text = books()
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    docs = [{"id": f"p{i}", "text": "\n\n".join(paragraphs[i:i + 20])} for i in range(0, len(paragraphs), 20)]
    hits, removed, kept, stats = run_decon(tmp_path, "c", docs, eval_root)
    assert hits == [] and removed == [] and len(kept) == len(docs), hits[:5]
    assert stats["eval_items"] > 14000  # MMLU test and dev, HumanEval, MBPP, MT-bench


def test_cut_leaves_no_eval_ngram(tmp_path, eval_dir):
    rng = random.Random(3)
    texts = eval_texts(eval_dir)
    planted, expected = plant(rng, texts, 20, allow_punct_tokens=True)
    long_hosts = clean_chunks(rng, 40, (30, 60))
    docs = [{"id": d["id"], "text": long_hosts[2 * i] + "\n" + d["text"] + "\n" + long_hosts[2 * i + 1]}
            for i, d in enumerate(planted)]
    hits, removed, kept, stats = run_decon(tmp_path, "d", docs, eval_dir, "--action", "cut")
    assert {h["id"] for h in hits} == set(expected)
    cut = [d for d in kept if d.get("metadata", {}).get("decontamination_cuts")]
    assert len(cut) + len(removed) == len(docs) and len(cut) >= len(docs) // 2, (len(cut), len(removed))
    assert stats["cut_documents"] == len(cut)
    originals = {d["id"]: d["text"] for d in docs}
    for d in cut:
        for piece in d["text"].split("\n\n"):
            assert len(piece.encode()) >= 200 and piece in originals[d["id"]]
    again, _, _, _ = run_decon(tmp_path, "e", kept, eval_dir, "--action", "report")
    assert again == []


def test_bad_eval_inputs_are_named(tmp_path):
    write_docs(tmp_path / "in" / "d.jsonl", [{"text": "a b c"}])
    proc = run_phi("data", "decontaminate", "--input", tmp_path / "in", "--output", tmp_path / "o",
                   "--eval", tmp_path / "missing", check=False)
    assert_clean_failure(proc, "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "items.jsonl").write_text('{"prompt": "one two three four five six seven eight nine ten"}\n{"prompt": \n')
    proc = run_phi("data", "decontaminate", "--input", tmp_path / "in", "--output", tmp_path / "o", "--eval", bad,
                   check=False)
    assert_clean_failure(proc, "items.jsonl:2")
    (bad / "items.jsonl").unlink()
    (bad / "broken.tar.gz").write_bytes(gzip.compress(b"not a tar archive at all" * 40))
    proc = run_phi("data", "decontaminate", "--input", tmp_path / "in", "--output", tmp_path / "o", "--eval", bad,
                   check=False)
    assert_clean_failure(proc, "broken.tar.gz")
    assert not (tmp_path / "o" / "stats.json").exists()
