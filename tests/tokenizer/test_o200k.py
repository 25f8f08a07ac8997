"""o200k-style byte-level BPE, Phi-4-mini's tokenizer kind: a tokenizer.json whose pre-tokenizer is
a regex Split with o200k_base's pattern followed by ByteLevel (use_regex false).

The o200k_base ranks file is not in ../shared/data, and the tiktoken package does not ship it (it
downloads it on first use), so the vocabulary here is synthetic: trained by HF `tokenizers` on the
shared corpora with o200k_base's pattern, which is read from the tiktoken package itself. The
engine's ids must equal HF tokenizers' (the same tokenizer.json) and tiktoken's (the same ranks and
pattern) on the o200k_base samples of gpt-tokenizer's test plans, the shared test-vector strings and
the shared corpora."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import gpt2_byte_alphabet, require_shared_data, run_phi  # noqa: E402

tokenizers = pytest.importorskip("tokenizers")
tiktoken = pytest.importorskip("tiktoken")

SPECIALS = ["<|endoftext|>", "<|assistant|>", "<|end|>", "<|user|>", "<|system|>"]


def o200k_pattern():
    """o200k_base's pat_str from tiktoken_ext (its ranks download is stubbed out: offline)."""
    import tiktoken_ext.openai_public as openai_public

    download = openai_public.load_tiktoken_bpe
    openai_public.load_tiktoken_bpe = lambda *args, **kwargs: {}
    try:
        return openai_public.o200k_base()["pat_str"]
    finally:
        openai_public.load_tiktoken_bpe = download


def corpora_texts(data):
    texts = []
    for path in sorted((data / "text").rglob("*")):
        if path.is_file():
            texts.append(path.read_text(encoding="utf-8", errors="replace")[:20000])
    return texts


def sample_texts(data):
    texts = []
    lines = (data / "tokenizers" / "tiktoken" / "gpt-tokenizer-TestPlans.txt").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line == "EncodingName: o200k_base" and i + 1 < len(lines) and lines[i + 1].startswith("Sample: "):
            texts.append(lines[i + 1][len("Sample: "):])
    for vectors in sorted((data / "tokenizers" / "testvectors").glob("*.json")):
        for case in json.loads(vectors.read_text())["cases"]:
            texts.append(case["text"])
    return texts


CRAFTED = [
    "I'M HERE. YOU'LL SEE, they'Re DON'T don't",  # o200k's case-insensitive contractions after letters
    "1234567890 12 123 1234",  # digits in runs of at most three
    "line1\r\n\r\nline2   \n\t x  \n",  # newline runs, trailing spaces
    "CamelCaseWordsAndHTTPServer getHTTPResponseCode",  # o200k splits upper-then-lower runs
    "naïve café 🙂 中文字符 русский текст العربية",
    "path/to/file.txt\n// comment\n/* block */",  # o200k keeps / with trailing newlines
    "<|user|>hi there<|end|><|assistant|>hello<|end|><|endoftext|>",
]


@pytest.fixture(scope="module")
def o200k_dir(tmp_path_factory):
    data = require_shared_data()
    pattern = o200k_pattern()
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Sequence([
        tokenizers.pre_tokenizers.Split(tokenizers.Regex(pattern), behavior="isolated", invert=False),
        tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=3000, show_progress=False,
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpora_texts(data) + sample_texts(data) + CRAFTED, trainer)
    tok.add_special_tokens([tokenizers.AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    out = tmp_path_factory.mktemp("o200k")
    tok.save(str(out / "tokenizer.json"))
    tok.model.save(str(out))  # vocab.json + merges.txt beside it, as Phi-4-mini's repository has
    return out, tok, pattern


def tiktoken_reference(tok, pattern):
    """tiktoken over the same ranks: ids of the byte-level vocabulary (merge order), same pattern."""
    byte_of = {ch: b for b, ch in gpt2_byte_alphabet().items()}
    ranks, specials = {}, {}
    for token, idx in tok.get_vocab(with_added_tokens=False).items():
        ranks[bytes(byte_of[c] for c in token)] = idx
    for s in SPECIALS:
        specials[s] = tok.token_to_id(s)
    return tiktoken.Encoding("synthetic_o200k", pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)


def phi_encode_jsonl(model_dir, texts, tmp_path, name):
    path = Path(tmp_path) / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = run_phi("tokenizer", "encode", "--model", model_dir, "--jsonl", path).stdout.splitlines()
    return [json.loads(line) for line in out]


def test_o200k_tokenizer_json_matches_hf_tokenizers_and_tiktoken(o200k_dir, tmp_path):
    model_dir, tok, pattern = o200k_dir
    data = require_shared_data()
    texts = sample_texts(data) + CRAFTED + corpora_texts(data)
    ours = phi_encode_jsonl(model_dir, texts, tmp_path, "all")
    reference = tiktoken_reference(tok, pattern)
    assert len(ours) == len(texts)
    for i, text in enumerate(texts):
        hf = tok.encode(text).ids
        assert ours[i] == hf, f"text {i} ({text[:60]!r}): HF tokenizers differs"
        assert ours[i] == reference.encode(text, allowed_special="all"), f"text {i} ({text[:60]!r}): tiktoken differs"
    # Decoding gives the text back, specials included.
    ids_file = tmp_path / "ids.json"
    ids_file.write_text(json.dumps(ours[len(texts) - len(corpora_texts(data)) - 1]))
    assert run_phi("tokenizer", "decode", "--model", model_dir, "--input", ids_file).stdout == CRAFTED[-1]


def test_o200k_pattern_is_what_splits_not_gpt2s(o200k_dir, tmp_path):
    """The tokenizer.json's Split pattern is used, not GPT-2's: the same vocabulary read from
    vocab.json + merges.txt alone (GPT-2's pre-tokenizer) encodes the crafted strings differently."""
    model_dir, tok, _ = o200k_dir
    slow_only = tmp_path / "slow_only"
    slow_only.mkdir()
    for name in ("vocab.json", "merges.txt"):
        (slow_only / name).write_bytes((model_dir / name).read_bytes())
    ours = phi_encode_jsonl(model_dir, CRAFTED[:4], tmp_path, "json")
    gpt2_split = phi_encode_jsonl(slow_only, CRAFTED[:4], tmp_path, "slow")
    assert ours == [tok.encode(t).ids for t in CRAFTED[:4]]
    assert sum(a != b for a, b in zip(ours, gpt2_split)) >= 2


def test_unsupported_pre_tokenizers_are_named(o200k_dir, tmp_path):
    model_dir, _, _ = o200k_dir
    document = json.loads((model_dir / "tokenizer.json").read_text())
    cases = {
        "merged_with_previous": ("behavior Isolated", lambda d: d["pre_tokenizer"]["pretokenizers"][0].update(
            behavior="MergedWithPrevious")),
        "string_pattern": ("{\"Regex\": ...}", lambda d: d["pre_tokenizer"]["pretokenizers"][0].update(
            pattern={"String": " "})),
        "bad_regex": ("$.pre_tokenizer", lambda d: d["pre_tokenizer"]["pretokenizers"][0].update(
            pattern={"Regex": "(unclosed"})),
        "digits": ("Digits", lambda d: d["pre_tokenizer"]["pretokenizers"].insert(0, {"type": "Digits"})),
    }
    for name, (fragment, mutate) in cases.items():
        broken = json.loads(json.dumps(document))
        mutate(broken)
        d = tmp_path / name
        d.mkdir()
        (d / "tokenizer.json").write_text(json.dumps(broken))
        proc = run_phi("tokenizer", "encode", "--model", d, "--text", "x", check=False)
        assert proc.returncode == 1, (name, proc.stderr)
        assert "tokenizer.json" in proc.stderr and fragment in proc.stderr, (name, proc.stderr)


@pytest.mark.parametrize("pattern", [r"\p{L}+", r"[a-z]*", r"\s+|\d"])
def test_split_patterns_that_leave_gaps_match_hf_tokenizers(o200k_dir, tmp_path, pattern):
    """A Split pattern that does not match every character (or matches empty strings): the text
    between matches is a piece of its own, as HF tokenizers' Isolated behavior makes it."""
    model_dir, _, _ = o200k_dir
    document = json.loads((model_dir / "tokenizer.json").read_text())
    document["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {"Regex": pattern}
    d = tmp_path / "gaps"
    d.mkdir()
    (d / "tokenizer.json").write_text(json.dumps(document))
    reference = tokenizers.Tokenizer.from_file(str(d / "tokenizer.json"))
    texts = CRAFTED + ["123 abc!! déjà-vu 🙂🙂 x", "   ", "!!!"]
    ours = phi_encode_jsonl(d, texts, tmp_path, "gaps")
    for i, text in enumerate(texts):
        assert ours[i] == reference.encode(text).ids, f"text {i} ({text[:60]!r})"
