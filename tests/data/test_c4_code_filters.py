"""`phi data filter --rules c4` against datatrove 0.10.1's C4QualityFilter (defaults) on the same
documents: identical decisions, reasons and rewritten text. datatrove counts sentences with NLTK's
Punkt model, data we do not ship; the oracle is given phi's documented sentence rule instead, so every
other rule is datatrove's own code.

`phi data filter --rules code`: the Python check against Python's own compile() on the standard
library, verbatim (nothing valid is dropped) and mutated (what compile rejects, phi rejects), and the
heuristic rules (codeparrot's / The Stack's definitions) on files made to trip each."""
import json
import random
import re
import sys
import sysconfig
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import assert_clean_failure, require_shared_data, run_phi  # noqa: E402


def phi_sentences(line):
    """phi's sentence rule (include/phi/data/quality_filters.h), for the oracle."""
    n = 1
    for m in re.finditer(r"[.!?][.!?\"')\]\u201d\u2019]*", line):
        j = k = m.end()
        while k < len(line) and line[k].isspace():
            k += 1
        if k > j and k < len(line) and not line[k].islower():
            n += 1
    return [line] * n


def web_documents(seed=4):
    text = (require_shared_data() / "text" / "war_and_peace" / "war-and-peace.txt").read_text(encoding="utf-8")
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.replace("\n", " ")) if len(s.split()) >= 2]
    rng = random.Random(seed)
    extras = ["Click here to enable JavaScript.", "This site uses cookies.", "Read our Privacy Policy.",
              "See the terms of use.", "Lorem ipsum dolor sit amet, consectetur.", "The call returns the object {a: 1} as shown.",
              "Menu", "Home | About | Contact", "Share this:", "Continue reading...", "He said \u201cno.\u201d",
              "It was built in 1850.[1] It stood for years.[citation needed]", "The war ended.[edit]",
              "Numbers in Arabic.[\u0661\u0662] Then more text here.", "A very " + "long" * 300 + " word.",
              "THIS \u212aEEPS COOKIES? We use \u212aookies.", "Use of cookies is described below.",
              "'Quoted line ends with a quote.'", "Ends with an ellipsis...", "Short line.", "ok!"]
    docs = []
    for i in range(220):
        lines = []
        for _ in range(rng.randint(1, 14)):
            r = rng.random()
            if r < 0.55:
                lines.append(" ".join(rng.choice(sentences) for _ in range(rng.randint(1, 3))))
            elif r < 0.8:
                lines.append(rng.choice(extras))
            else:
                s = rng.choice(sentences)
                lines.append(s.rstrip(".!?") if rng.random() < 0.5 else "  " + s + "  ")
        sep = rng.choice(["\n", "\n", "\r\n", "\n\n", "\u2028", "\x0c"])
        docs.append({"id": f"w{i}", "text": sep.join(lines)})
    docs.append({"id": "empty-ish", "text": "   \n  "})
    return docs


def test_c4_decisions_and_text_equal_datatrove(tmp_path, monkeypatch):
    pytest.importorskip("datatrove", reason="datatrove is the oracle (scripts/setup.sh installs it)")
    from datatrove.data import Document
    from datatrove.pipeline.filters import c4_filters

    monkeypatch.setattr(c4_filters, "split_into_sentences", lambda text, language=None: phi_sentences(text))
    docs = web_documents()
    c4 = c4_filters.C4QualityFilter()
    theirs = {}
    for d in docs:
        doc = Document(text=d["text"], id=d["id"])
        verdict = c4.filter(doc)
        theirs[d["id"]] = ("", doc.text) if verdict is True else (verdict[1], None)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "w.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    run_phi("data", "filter", "--rules", "c4", "--input", tmp_path / "in", "--output", tmp_path / "out")
    removed = {json.loads(x)["id"]: json.loads(x)["reason"] for x in (tmp_path / "out" / "removed.jsonl").read_text().splitlines()}
    kept = {json.loads(x)["id"]: json.loads(x)["text"] for x in (tmp_path / "out" / "00000.jsonl").read_text().splitlines()}
    ours = {d["id"]: (removed[d["id"]], None) if d["id"] in removed else ("", kept[d["id"]]) for d in docs}
    differ = {i: (theirs[i], ours[i]) for i in ours if theirs[i] != ours[i]}
    assert not differ, list(differ.items())[:3]
    reasons = {r for r, _ in theirs.values()}
    assert reasons == {"", "lorem_ipsum", "curly_bracket", "too_few_sentences"}, reasons
    print({r: sum(1 for x, _ in theirs.values() if x == r) for r in sorted(reasons)})


def test_unknown_rule_parameter_is_named(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "x"}\n')
    proc = run_phi("data", "filter", "--rules", "c4", "--param", "min_sentences=3", "--input", tmp_path / "d.jsonl",
                   "--output", tmp_path / "o", check=False)
    assert_clean_failure(proc, "min_sentences", "$.c4")


OFF = ["--param", "min_chars=0", "--param", "max_chars=0", "--param", "max_line_length=0",
       "--param", "max_mean_line_length=0", "--param", "min_alphanumeric_fraction=0", "--param", "autogenerated_lines=0"]


def python_files(count, seed):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts)
    random.Random(seed).shuffle(files)
    out = []
    for p in files:
        try:
            out.append((str(p.relative_to(stdlib)), p.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue
        if len(out) == count:
            break
    return out


def compiles(source):
    try:
        compile(source, "<file>", "exec", dont_inherit=True)
        return True
    except (SyntaxError, ValueError):
        return False


def mutate(source, rng):
    """One random damage of the kinds Python's tokenizer and block structure reject (not every one
    of them breaks a given file: compile() is the judge)."""
    lines = source.split("\n")
    kind = rng.choice(["close", "open", "indent", "dedent", "truncate", "quote", "char"])
    if kind == "close" and any(c in source for c in ")]}"):
        idx = rng.choice([i for i, c in enumerate(source) if c in ")]}"])
        return kind, source[:idx] + source[idx + 1:]
    if kind == "open":
        idx = rng.randrange(len(source) + 1)
        return kind, source[:idx] + rng.choice("([{") + source[idx:]
    if kind in ("indent", "dedent"):
        code = [i for i, x in enumerate(lines) if x.strip() and not x.lstrip().startswith("#")]
        if code:
            i = rng.choice(code)
            lines[i] = ("   " + lines[i]) if kind == "indent" else lines[i][1:] if lines[i].startswith(" ") else " " + lines[i]
        return kind, "\n".join(lines)
    if kind == "truncate":
        return kind, source[:rng.randrange(len(source) + 1)]
    if kind == "quote":
        idx = rng.randrange(len(source) + 1)
        return kind, source[:idx] + rng.choice(["'", '"', '"""']) + source[idx:]
    idx = rng.randrange(len(source) + 1)
    return "char", source[:idx] + rng.choice(["$", "?", "`", "\u201c"]) + source[idx:]


def phi_python_verdicts(tmp_path, name, sources):
    d = tmp_path / name
    (d / "in").mkdir(parents=True)
    (d / "in" / "f.jsonl").write_text("".join(json.dumps({"id": f"f{i}", "text": s}) + "\n" for i, s in enumerate(sources)))
    run_phi("data", "filter", "--rules", "code", "--param", "python=true", *OFF, "--input", d / "in", "--output", d / "out")
    removed = {json.loads(x)["id"] for x in (d / "out" / "removed.jsonl").read_text().splitlines()}
    return [f"f{i}" not in removed for i in range(len(sources))]


def test_python_check_against_compile(tmp_path):
    files = python_files(400, seed=1)
    sources = [s for _, s in files]
    ok = [compiles(s) for s in sources]
    ours = phi_python_verdicts(tmp_path, "verbatim", sources)
    false_drops = [files[i][0] for i in range(len(files)) if ok[i] and not ours[i]]
    assert not false_drops, false_drops[:5]

    rng = random.Random(7)
    mutated = [mutate(s, rng) for s in sources if s.strip()]
    ok_m = [compiles(s) for _, s in mutated]
    ours_m = phi_python_verdicts(tmp_path, "mutated", [s for _, s in mutated])
    false_drops = [k for (k, _), a, b in zip(mutated, ok_m, ours_m) if a and not b]
    assert not false_drops, false_drops[:5]
    rejected = [(k, b) for (k, _), a, b in zip(mutated, ok_m, ours_m) if not a]
    caught = sum(1 for _, b in rejected if not b)
    by_kind = {}
    for k, b in rejected:
        by_kind.setdefault(k, [0, 0])
        by_kind[k][0] += not b
        by_kind[k][1] += 1
    print(f"compile() rejects {len(rejected)} of {len(mutated)} mutated files; phi catches {caught}", by_kind)
    assert len(rejected) > 150 and caught >= 0.9 * len(rejected), by_kind


def test_code_heuristics(tmp_path):
    good = "def add(a, b):\n    return a + b\n"
    cases = {
        "good": (good, ""),
        "long_line": ("x = '" + "a" * 1200 + "'\n" + good, "code_long_line"),
        "mean": ("\n".join("y = " + "b" * 110 for _ in range(5)) + "\n", "code_mean_line_length"),
        "alnum": ("# " + "=-" * 40 + "\n" + "# " + "*+" * 40 + "\nx=1\n", "code_alphanumeric_fraction"),
        "generated": ("# This file is AUTOGENERATED by a tool\n" + good, "code_autogenerated"),
        "generated_late": ("\n" * 6 + "# auto-generated below\n" + good, ""),
        "syntax": ("def f(:\n    return 1\n", "code_python_syntax"),
        "block": ("if x:\npass\n", "code_python_syntax"),
        "tabs": ("if x:\n\tif y:\n        pass\n", "code_python_syntax"),
        "fstring": ('x = f"{a!r:>{width}}" + rb\'\\x00\' + """\nmulti\n"""\n', ""),
        "continuation": ("x = 1 + \\\n    2\nif (a and\n        b):\n    pass\n", ""),
    }
    d = tmp_path / "h"
    (d / "in").mkdir(parents=True)
    (d / "in" / "c.jsonl").write_text("".join(json.dumps({"id": k, "text": v[0]}) + "\n" for k, v in cases.items()))
    run_phi("data", "filter", "--rules", "code", "--param", "python=true", "--input", d / "in", "--output", d / "out")
    removed = {json.loads(x)["id"]: json.loads(x)["reason"] for x in (d / "out" / "removed.jsonl").read_text().splitlines()}
    for k, (source, reason) in cases.items():
        assert removed.get(k, "") == reason, (k, removed.get(k))
        if reason in ("", "code_python_syntax") and k != "generated_late":
            assert compiles(source) == (reason == ""), k  # Python agrees on the syntax cases
