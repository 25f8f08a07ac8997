"""Shared helpers for the Python-driven tests: run the `phi` binary, compare with oracles."""
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np

PHI_BIN = os.environ.get("PHI_BIN", str(Path(__file__).resolve().parents[1] / "build" / "phi"))
REPO = Path(os.environ.get("PHI_REPO", Path(__file__).resolve().parents[1])).resolve()
REPORT = Path(os.environ.get("PHI_PARITY_REPORT", "parity_report.jsonl"))


def run_phi(*args, check=True, timeout=600):
    """Runs `phi args...`; returns the CompletedProcess (text mode)."""
    proc = subprocess.run([PHI_BIN, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"phi {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def assert_clean_failure(proc, *fragments):
    """A failure the engine reports: exit 1, a line starting "error: ", every fragment in stderr."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert any(line.startswith("error: ") for line in proc.stderr.splitlines()), proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in proc.stderr, f"{fragment!r} not in: {proc.stderr[-2000:]}"


def phi_forward(model_dir, sequences, tmp_path, name="ids", extra=()):
    """Runs `phi forward` on a list of id lists; returns float32 logits [B, max_len, V]."""
    from safetensors.numpy import load_file

    ids_path = Path(tmp_path) / f"{name}.json"
    out_path = Path(tmp_path) / f"{name}.logits.safetensors"
    ids_path.write_text(json.dumps([list(map(int, s)) for s in sequences]))
    run_phi("forward", "--model", model_dir, "--input", ids_path, "--output", out_path, *extra)
    return load_file(str(out_path))["logits"]


def relative_error(ours, reference):
    """max |ours - reference| / max |reference| (the issue's parity measure)."""
    ours = np.asarray(ours, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def record(family, case, error):
    """Appends a parity figure to the report (build/parity_report.jsonl) for the closing notes."""
    with open(REPORT, "a") as f:
        f.write(json.dumps({"family": family, "case": case, "max_rel_error": error}) + "\n")


def randomize_(model, scale=0.1, seed=0):
    """Adds noise to every parameter (norm weights and biases included) so that each matters."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)


def gpt2_byte_alphabet():
    """GPT-2's byte -> printable character table (the alphabet byte-level BPE vocabularies use)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def save_random_hf_model(path, config, seed=0, scale=0.05):
    """A transformers model of `config` (its class chosen by model_type), seeded, randomized so that
    every parameter matters, saved as safetensors at `path`; returns the model in eval mode."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    randomize_(model, scale=scale)
    model.save_pretrained(path, safe_serialization=True)
    return model


SHARED = Path(os.environ.get("PHI_SHARED_DATA", REPO.parent / "shared" / "data"))


def require_shared_data():
    """Skips the calling test with a clear message when ../shared/data is absent."""
    import pytest

    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED} (tests that need ../shared/data are skipped)")
    return SHARED


def tokenizer_dirs(tmp_path):
    """Model directories for the three tokenizer kinds, assembled from ../shared/data:
    gpt2 (plain GPT-2 BPE), phi2 (GPT-2 + CodeGen whitespace tokens), phi3 (SentencePiece + added
    tokens), phi3small (cl100k_base + Phi-3-small specials)."""
    import shutil

    data = require_shared_data() / "tokenizers"
    dirs = {name: Path(tmp_path) / name for name in ("gpt2", "phi2", "phi3", "phi3small")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for name in ("gpt2", "phi2"):
        shutil.copy(data / "gpt2" / "encoder.json", dirs[name] / "vocab.json")
        shutil.copy(data / "gpt2" / "vocab.bpe", dirs[name] / "merges.txt")
    shutil.copy(data / "phi_codegen" / "added_tokens.json", dirs["phi2"] / "added_tokens.json")
    shutil.copy(data / "llama2" / "tokenizer.model", dirs["phi3"] / "tokenizer.model")
    shutil.copy(data / "phi3" / "added_tokens.json", dirs["phi3"] / "added_tokens.json")
    shutil.copy(data / "tiktoken" / "cl100k_base.tiktoken", dirs["phi3small"] / "cl100k_base.tiktoken")
    return dirs


def random_model_with_tokenizer(tmp_path, family, max_position_embeddings=256, seed=0):
    """A random transformers model saved with its family's real tokenizer files beside it:
    "phi2" (PhiForCausalLM, GPT-2 + CodeGen tokens) or "phi3" (Phi3ForCausalLM, SentencePiece).
    Returns (model, directory)."""
    import shutil

    import torch
    import transformers

    toks = tokenizer_dirs(Path(tmp_path) / "tok")
    torch.manual_seed(seed)
    if family == "phi2":
        config = transformers.PhiConfig(vocab_size=51200, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, partial_rotary_factor=0.5,
                                        max_position_embeddings=max_position_embeddings,
                                        bos_token_id=50256, eos_token_id=50256)
        model = transformers.PhiForCausalLM(config).eval()
    else:
        config = transformers.Phi3Config(vocab_size=32064, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=max_position_embeddings,
                                         bos_token_id=1, eos_token_id=32000, pad_token_id=32000)
        model = transformers.Phi3ForCausalLM(config).eval()
    randomize_(model, scale=0.08)
    out = Path(tmp_path) / family
    model.save_pretrained(out, safe_serialization=True)
    for f in toks[family].iterdir():
        shutil.copy(f, out / f.name)
    return model, out


def read_shard(path):
    """An independent reader of the documented shard format (docs/data.md)."""
    import struct
    raw = Path(path).read_bytes()
    assert raw[:8] == b"PHISHRD1"
    version, token_bytes, n_tokens, n_docs, flags = struct.unpack_from("<IIQQI", raw, 8)
    assert version == 1
    tokens = list(struct.unpack_from(f"<{n_tokens}{'H' if token_bytes == 2 else 'I'}", raw, 64))
    offset = 64 + n_tokens * token_bytes
    index = list(struct.unpack_from(f"<{n_docs + 1}Q", raw, offset))
    mask = list(raw[offset + (n_docs + 1) * 8:]) if flags & 1 else None
    assert len(raw) == offset + (n_docs + 1) * 8 + (n_tokens if flags & 1 else 0)
    return tokens, index, mask


def start_server(model_dir, *extra, context=512):
    """Starts `phi serve` on 127.0.0.1 and a free port; returns (process, base URL)."""
    import time

    import pytest

    proc = subprocess.Popen([PHI_BIN, "serve", "--model", str(model_dir), "--port", "0", "--max-batch", "16",
                             "--context", str(context), "--max-tokens-limit", "256", "--max-request-bytes",
                             "65536", "--model-name", "phi-test", *extra],
                            stderr=subprocess.PIPE, text=True)
    port = None
    deadline = time.time() + 60
    lines = []
    while time.time() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if match:
            port = int(match.group(1))
            break
        if proc.poll() is not None:
            break
    if port is None:
        proc.kill()
        pytest.fail("server did not start:\n" + "".join(lines))
    return proc, f"http://127.0.0.1:{port}"


def stop_server(proc):
    """SIGTERM, and the server must exit cleanly within 20 s."""
    import pytest

    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("server did not stop on SIGTERM")
    assert proc.returncode == 0


def datatrove_whitespace_tokenizer():
    """A datatrove word tokenizer that splits on whitespace, as phi's data stages do (datatrove's
    English default is NLTK's): what the data oracles configure datatrove with."""
    from datatrove.utils.word_tokenizers import WordTokenizer

    class Whitespace(WordTokenizer):
        def word_tokenize(self, text):
            return text.split()

        def sent_tokenize(self, text):
            return [text]

        def span_tokenize(self, text):
            return []

    return Whitespace()


def phi_sentences(line):
    """phi's sentence rule (include/phi/data/quality_filters.h): what the C4 oracle counts sentences
    with, as datatrove's NLTK Punkt data is not shipped (one copy of the line per sentence)."""
    n = 1
    for m in re.finditer(r"[.!?][.!?\"')\]\u201d\u2019]*", line):
        j = k = m.end()
        while k < len(line) and line[k].isspace():
            k += 1
        if k > j and k < len(line) and not line[k].islower():
            n += 1
    return [line] * n
