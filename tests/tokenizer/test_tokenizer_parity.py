"""Tokenizer parity with the reference implementations (sentencepiece, tiktoken, HF tokenizers) on
the shared test vectors and on every corpus in ../shared/data/text, through `phi tokenizer`."""
import base64
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import require_shared_data, run_phi, tokenizer_dirs  # noqa: E402

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CL100K_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|"""
                  r"""\s++$|\s*[\r\n]|\s+(?!\S)|\s""")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return tokenizer_dirs(tmp_path_factory.mktemp("tokenizers"))


def tiktoken_encoding(name):
    tiktoken = pytest.importorskip("tiktoken")
    data = require_shared_data() / "tokenizers" / "tiktoken"
    file, pattern = {"gpt2": ("r50k_base.tiktoken", GPT2_PATTERN), "cl100k": ("cl100k_base.tiktoken", CL100K_PATTERN)}[name]
    ranks = {}
    for line in (data / file).read_text().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens={})


def sentencepiece_processor():
    spm = pytest.importorskip("sentencepiece")
    return spm.SentencePieceProcessor(model_file=str(require_shared_data() / "tokenizers" / "llama2" / "tokenizer.model"))


def codegen_reference(model_dir):
    """HF `tokenizers`: GPT-2 BPE with CodeGen's whitespace runs as added tokens."""
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE.from_file(str(model_dir / "vocab.json"), str(model_dir / "merges.txt")))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    added = json.loads((model_dir / "added_tokens.json").read_text())
    tok.add_tokens([tokenizers.AddedToken(k, normalized=False) for k, _ in sorted(added.items(), key=lambda kv: kv[1])])
    return tok


def phi_encode_file(model_dir, path):
    return json.loads(run_phi("tokenizer", "encode", "--model", model_dir, "--input", path, "--plain-special").stdout)


def phi_decode(model_dir, ids, tmp_path):
    ids_file = Path(tmp_path) / "ids.json"
    ids_file.write_text(json.dumps(ids))
    return run_phi("tokenizer", "decode", "--model", model_dir, "--input", ids_file).stdout


def phi_encode_batch(model_dir, texts, tmp_path):
    """Encodes many texts in one process (--jsonl); returns the id lists."""
    path = Path(tmp_path) / "batch.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = run_phi("tokenizer", "encode", "--model", model_dir, "--jsonl", path, "--plain-special").stdout
    return [json.loads(line) for line in out.splitlines()]


def phi_decode_batch(model_dir, id_lists, tmp_path):
    path = Path(tmp_path) / "ids.jsonl"
    path.write_text("".join(json.dumps(ids) + "\n" for ids in id_lists))
    out = run_phi("tokenizer", "decode", "--model", model_dir, "--jsonl", path).stdout
    return [json.loads(line) for line in out.splitlines()]


def corpora():
    data = require_shared_data() / "text"
    return sorted(p for p in data.rglob("*") if p.is_file())


@pytest.mark.parametrize("vectors,kind", [("gpt2_bpe_vectors.json", "gpt2"), ("cl100k_base_vectors.json", "phi3small"),
                                          ("llama2_sentencepiece_vectors.json", "phi3")])
def test_shared_test_vectors(dirs, tmp_path, vectors, kind):
    cases = json.loads((require_shared_data() / "tokenizers" / "testvectors" / vectors).read_text())["cases"]
    encoded = phi_encode_batch(dirs[kind], [case["text"] for case in cases], tmp_path)
    decoded = phi_decode_batch(dirs[kind], encoded, tmp_path)
    assert len(encoded) == len(cases)
    for i, case in enumerate(cases):
        assert encoded[i] == case["ids"], f"case {i} {case['text']!r}"
        assert decoded[i] == case.get("decoded", case["text"]), f"case {i}"


def test_corpora_gpt2_matches_tiktoken_and_round_trips(dirs, tmp_path):
    enc = tiktoken_encoding("gpt2")
    for path in corpora():
        ids = phi_encode_file(dirs["gpt2"], path)
        text = path.read_text(encoding="utf-8")
        assert ids == enc.encode_ordinary(text), path.name
        assert phi_decode(dirs["gpt2"], ids, tmp_path) == text, path.name


def test_corpora_cl100k_matches_tiktoken_and_round_trips(dirs, tmp_path):
    enc = tiktoken_encoding("cl100k")
    for path in corpora():
        ids = phi_encode_file(dirs["phi3small"], path)
        text = path.read_text(encoding="utf-8")
        assert ids == enc.encode_ordinary(text), path.name
        assert phi_decode(dirs["phi3small"], ids, tmp_path) == text, path.name


def test_corpora_sentencepiece_matches_and_round_trips(dirs, tmp_path):
    sp = sentencepiece_processor()
    for path in corpora():
        ids = phi_encode_file(dirs["phi3"], path)
        text = path.read_text(encoding="utf-8")
        assert ids == sp.encode(text), path.name
        assert phi_decode(dirs["phi3"], ids, tmp_path) == sp.decode(ids), path.name


def adversarial_texts(seed=7, count=400):
    """Random texts built to stress SentencePiece's normalisation and merges: runs of spaces, literal
    "▁", tabs and newlines, scripts the vocabulary has few pieces for (byte fallback), emoji, digits."""
    import random
    rng = random.Random(seed)
    pools = ["abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`",
             " ", "  ", "    ", "\n", "\t", "\r\n", "\u2581", "\u2581\u2581", "\u00e9\u00e8\u00fc\u00df\u00f1",
             "\u4e00\u4e8c\u4e09\u5b57\u6f22\u8a9e", "\u0430\u0431\u0432\u0433\u0434\u0416", "\U0001f600\U0001f680\U0001f9e0",
             "\u0301\u0308", "\u00a0\u3000\u2028", "\ufffd\ufeff", "<s></s><unk>", "def return import self"]
    texts = ["", " ", "  ", "\u2581", " \u2581 ", "\u2581 x", "a\u2581 b", "\n", "hello", " hello", "hello ", "x" * 300,
             "\u2581" * 9 + " " * 9]
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 30)):
            pool = rng.choice(pools)
            if len(pool) <= 4 or pool.startswith(("<s>", "def")):
                parts.append(pool)
            else:
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 8))))
        texts.append("".join(parts))
    return texts


def test_sentencepiece_adversarial_texts_and_lines_match(dirs, tmp_path):
    """The native SentencePiece BPE encoder against the PyPI library, text by text: random texts and
    every line of every corpus (each a text of its own, so each gets the dummy prefix)."""
    sp = sentencepiece_processor()
    texts = adversarial_texts()
    for path in corpora():
        texts += path.read_text(encoding="utf-8").split("\n")[:3000]
    ours = phi_encode_batch(dirs["phi3"], texts, tmp_path)
    assert len(ours) == len(texts)
    mismatches = [(t, a, b) for t, a, b in zip(texts, ours, sp.encode(texts, num_threads=1)) if a != b]
    assert not mismatches, mismatches[:3]


def test_codegen_whitespace_tokens_match_hf_tokenizers(dirs, tmp_path):
    reference = codegen_reference(dirs["phi2"])
    texts = ["def f(x):\n    return x  +  1\n\t\tpass\n", "a" + " " * 40 + "b\t\t\t\t\t\t\t\t\t\t\tc", "  leading and trailing  "]
    for path in corpora():
        texts.append(path.read_text(encoding="utf-8")[:20000])
    encoded = phi_encode_batch(dirs["phi2"], texts, tmp_path)
    decoded = phi_decode_batch(dirs["phi2"], encoded, tmp_path)
    for i, text in enumerate(texts):
        assert encoded[i] == reference.encode(text).ids, f"text {i}"
        assert decoded[i] == text, f"text {i}"


def test_special_tokens_and_bos(dirs):
    ids = json.loads(run_phi("tokenizer", "encode", "--model", dirs["phi3"], "--text", "<|user|>\nHi<|end|>\n<|assistant|>\n").stdout)
    assert ids[0] == 32010 and 32007 in ids and ids[-1] == 32001
    with_bos = json.loads(run_phi("tokenizer", "encode", "--model", dirs["phi3"], "--text", "Hi", "--add-special").stdout)
    assert with_bos[0] == 1 and with_bos[-1] == 2
    small = json.loads(run_phi("tokenizer", "encode", "--model", dirs["phi3small"], "--text", "<|user|>\nHi<|end|>").stdout)
    assert small[0] == 100262 and small[-1] == 100266
    plain = json.loads(run_phi("tokenizer", "encode", "--model", dirs["phi3small"], "--text", "<|user|>", "--plain-special").stdout)
    assert 100262 not in plain


def test_invalid_utf8_is_a_clear_error(dirs, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"valid \xff\xfe then")
    for kind in ("phi2", "phi3", "phi3small"):
        proc = run_phi("tokenizer", "encode", "--model", dirs[kind], "--input", bad, check=False)
        assert proc.returncode == 1 and "not valid UTF-8" in proc.stderr and "byte offset 6" in proc.stderr, proc.stderr


def test_decode_of_split_multibyte_character_uses_replacement(dirs, tmp_path):
    # 🙂 is 4 bytes; in GPT-2 BPE it spans several byte tokens. Decoding only the first gives U+FFFD.
    ids = json.loads(run_phi("tokenizer", "encode", "--model", dirs["gpt2"], "--text", "🙂").stdout)
    assert len(ids) > 1
    assert phi_decode(dirs["gpt2"], ids[:1], tmp_path) == "\ufffd"
    proc = run_phi("tokenizer", "decode", "--model", dirs["gpt2"], "--ids", "[1, 2, 99999999]", check=False)
    assert proc.returncode == 1 and "outside the vocabulary" in proc.stderr


def test_missing_tokenizer_files(tmp_path):
    proc = run_phi("tokenizer", "encode", "--model", tmp_path, "--text", "x", check=False)
    assert proc.returncode == 1 and "no tokenizer files found" in proc.stderr


@pytest.mark.parametrize("kind", ["bpe", "spm"])
def test_train_then_round_trip(tmp_path, kind):
    data = require_shared_data() / "text"
    out = tmp_path / kind
    run_phi("tokenizer", "train", "--kind", kind, "--vocab-size", "600", "--input",
            data / "tinyshakespeare" / "input.txt", "--output", out, "--special", "<|endoftext|>")
    added = json.loads((out / "added_tokens.json").read_text())
    assert added == {"<|endoftext|>": 599}
    texts = [(data / "cs336_fixtures" / "address.txt").read_text(), "ROMEO: But, soft! what light<|endoftext|>x"]
    encoded = phi_encode_batch(out, texts, tmp_path)
    assert phi_decode_batch(out, encoded, tmp_path) == texts
    assert max(max(ids) for ids in encoded) < 599
    # The special token is one id when special text is allowed.
    ids = json.loads(run_phi("tokenizer", "encode", "--model", out, "--text", "a<|endoftext|>b").stdout)
    assert 599 in ids
    # A trained vocabulary compresses its own corpus well beyond bytes.
    assert len(encoded[0]) < 0.5 * len(texts[0].encode())


def test_byte_level_tokenizer_json_matches_hf_tokenizers(dirs, tmp_path):
    """A directory holding only tokenizer.json (as written by HF `tokenizers`) loads and encodes
    like the reference; added tokens (CodeGen whitespace, <|endoftext|>) come from the file."""
    tokenizers = pytest.importorskip("tokenizers")
    reference = codegen_reference(dirs["phi2"])
    reference.add_special_tokens([tokenizers.AddedToken("<|endoftext|>", special=True)])
    model_dir = tmp_path / "json_only"
    model_dir.mkdir()
    reference.save(str(model_dir / "tokenizer.json"))
    texts = ["def f(x):\n    return x  +  1\n\t\tpass<|endoftext|>next", "  leading and trailing  ", "naïve café 🙂"]
    for path in corpora():
        texts.append(path.read_text(encoding="utf-8")[:5000])
    path = tmp_path / "batch.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    ours = [json.loads(line) for line in run_phi("tokenizer", "encode", "--model", model_dir, "--jsonl", path).stdout.splitlines()]
    for i, text in enumerate(texts):
        assert ours[i] == reference.encode(text).ids, f"text {i}"
    assert phi_decode_batch(model_dir, ours, tmp_path) == texts


def test_sentencepiece_style_tokenizer_json_alone_is_refused(tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": {}, "merges": []},
                                                         "pre_tokenizer": None}))
    proc = run_phi("tokenizer", "encode", "--model", tmp_path, "--text", "x", check=False)
    assert proc.returncode == 1 and "only byte-level BPE tokenizer.json" in proc.stderr
