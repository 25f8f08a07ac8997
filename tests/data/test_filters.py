"""`phi data filter --rules gopher` against datatrove 0.10.1's GopherQualityFilter (defaults, its
word split set to whitespace as ours) on the same documents: every keep/drop decision and every
reason is identical. The corpus mixes prose of every length with the cases each rule exists for:
bullet lists, hashes, ellipses, numbers, missing stop words, long tokens, accented and CJK text."""
import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import datatrove_whitespace_tokenizer, require_shared_data, run_phi  # noqa: E402

pytest.importorskip("datatrove", reason="datatrove is the oracle (scripts/setup.sh installs it)")


def documents(seed=11):
    text = (require_shared_data() / "text" / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    lines = [x for x in text.splitlines() if x.strip()]
    rng = random.Random(seed)
    docs = []

    def add(t):
        docs.append({"id": f"d{len(docs)}", "text": t})

    for _ in range(150):  # prose from 5 to 400 words, with its own line structure
        start = rng.randrange(len(lines) - 60)
        add("\n".join(lines[start:start + rng.randint(1, 50)]))
    for _ in range(20):  # bullet lists, some mostly bullets
        items = [rng.choice(lines) for _ in range(rng.randint(3, 30))]
        mark = rng.choice(["- ", "• ", "  - ", "* "])
        add("\n".join((mark if rng.random() < rng.choice([0.5, 0.95, 1.0]) else "") + x for x in items))
    for _ in range(15):  # hashtags and ellipses
        words = " ".join(rng.choice(lines) for _ in range(20)).split()
        add(" ".join(("#" + w if rng.random() < 0.15 else w) for w in words))
        body = [rng.choice(lines) + rng.choice(["...", "…", "", ".", " ... "]) for _ in range(rng.randint(5, 25))]
        add("\n".join(body))
    for _ in range(10):  # numbers and symbols, no letters in most words
        add(" ".join(str(rng.randint(0, 10**6)) if rng.random() < 0.4 else rng.choice(["the", "and", "of", "!!", "--"])
                     for _ in range(rng.randint(40, 120))))
    for _ in range(10):  # no stop words / very long or very short words
        add(" ".join(rng.choice(["xylophonesque", "incomprehensibilities", "a", "I", "ox"]) for _ in range(80)))
    for _ in range(10):  # accents, CJK, Khmer sentence marks, mixed whitespace
        add(" ".join(rng.choice(["the", "café", "naïve", "東京", "។", "to", "résumé", "of", "\u3000", "and"])
                     for _ in range(rng.randint(30, 90))).replace("  ", "\t"))
    for _ in range(5):  # mean word length past either bound
        add(" ".join(["incomprehensibilities"] * rng.randint(50, 90) + ["the", "and"]))
        add(" ".join(rng.choice(["a", "I", "to", "of", "be", "ox"]) for _ in range(rng.randint(50, 90))))
    add("")
    add("   \n \n")
    return docs


def test_gopher_decisions_equal_datatrove(tmp_path):
    from datatrove.data import Document
    from datatrove.pipeline.filters import GopherQualityFilter

    docs = documents()
    gopher = GopherQualityFilter(language=datatrove_whitespace_tokenizer())
    theirs = {}
    for d in docs:
        if not d["text"]:
            theirs[d["id"]] = "gopher_short_doc"  # datatrove's readers skip empty texts; ours drops them as short
            continue
        verdict = gopher.filter(Document(text=d["text"], id=d["id"]))
        theirs[d["id"]] = "" if verdict is True else verdict[1]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    run_phi("data", "filter", "--rules", "gopher", "--input", tmp_path / "in", "--output", tmp_path / "out")
    removed = {json.loads(x)["id"]: json.loads(x)["reason"]
               for x in (tmp_path / "out" / "removed.jsonl").read_text().splitlines()}
    kept = {json.loads(x)["id"] for x in (tmp_path / "out" / "00000.jsonl").read_text().splitlines()}
    ours = {d["id"]: removed.get(d["id"], "") for d in docs}
    assert kept == {i for i, r in ours.items() if not r}
    differ = {i: (theirs[i], ours[i]) for i in ours if theirs[i] != ours[i]}
    assert not differ, differ
    reasons = set(theirs.values())
    assert len(reasons) >= 10 and "" in reasons, reasons  # the rules fire, and some documents pass
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["documents_in"] == len(docs) and stats["documents_out"] == len(kept)
    assert sum(stats["removed"].values()) == len(removed)
    print({r: list(theirs.values()).count(r) for r in sorted(reasons)})


def test_unknown_rules_are_refused(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "x"}\n')
    proc = run_phi("data", "filter", "--rules", "fineweb", "--input", tmp_path / "d.jsonl", "--output", tmp_path / "o",
                   check=False)
    assert proc.returncode == 1 and "fineweb" in proc.stderr


def test_bad_records_stop_the_stage_or_are_counted_and_skipped(tmp_path):
    """A line that is not a document names its file and line; with --skip-bad-records each is
    skipped and listed in removed.jsonl; an empty file is no error."""
    good = {"id": "g", "text": " ".join(["the children walked with their teacher and looked at the ancient buildings"] * 6)}
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(b"\n".join([
        json.dumps(good).encode(), b"{not json", b"[1, 2]", b'{"id": "x", "text": 7}',
        b'{"id": "u", "text": "caf\xff"}', json.dumps(dict(good, id="g2")).encode()]) + b"\n")
    (tmp_path / "in" / "b.jsonl").write_text("")
    proc = run_phi("data", "filter", "--rules", "gopher", "--input", tmp_path / "in", "--output", tmp_path / "o1",
                   check=False)
    assert proc.returncode == 1 and "a.jsonl:2" in proc.stderr, proc.stderr
    assert not (tmp_path / "o1" / "stats.json").exists()
    run_phi("data", "filter", "--rules", "gopher", "--skip-bad-records", "--input", tmp_path / "in", "--output",
            tmp_path / "o2")
    removed = [json.loads(x) for x in (tmp_path / "o2" / "removed.jsonl").read_text().splitlines()]
    assert [r["where"].rsplit("/", 1)[-1] for r in removed] == ["a.jsonl:2", "a.jsonl:3", "a.jsonl:4", "a.jsonl:5"]
    assert all(r["reason"] == "bad_record" and r["error"] for r in removed)
    kept = [json.loads(x)["id"] for x in (tmp_path / "o2" / "00000.jsonl").read_text().splitlines()]
    assert kept == ["g", "g2"] and (tmp_path / "o2" / "00001.jsonl").read_text() == ""
    stats = json.loads((tmp_path / "o2" / "stats.json").read_text())
    assert stats["removed"]["bad_record"] == 4 and stats["documents_in"] == 2
