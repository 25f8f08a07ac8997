"""`phi data tokenize` on threads: the shards are the same bytes for any thread count, and each
document's tokens are the PyPI sentencepiece ids of its text, then EOS."""
import hashlib
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import read_shard, require_shared_data, run_phi, tokenizer_dirs  # noqa: E402


def digest(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(directory).iterdir()) if p.is_file()}


def test_threads_give_identical_shards_and_sentencepiece_ids(tmp_path):
    spm = pytest.importorskip("sentencepiece", reason="the PyPI sentencepiece is the oracle (scripts/setup.sh installs it)")
    shared = require_shared_data()
    sp = spm.SentencePieceProcessor(model_file=str(shared / "tokenizers" / "llama2" / "tokenizer.model"))
    tok = tokenizer_dirs(tmp_path / "tok")["phi3"]
    lines = [l for l in (shared / "text" / "war_and_peace" / "war-and-peace.txt").read_text(encoding="utf-8").split("\n\n")
             if l.strip()][:6000]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in lines), encoding="utf-8")
    speeches = (shared / "text" / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").split("\n\n")[:3000]
    (tmp_path / "plays.txt").write_text("<|endoftext|>".join(speeches), encoding="utf-8")
    outputs = {}
    for threads in (1, 2):
        out = tmp_path / f"t{threads}"
        proc = run_phi("data", "tokenize", "--tokenizer", tok, "--input", tmp_path / "docs.jsonl", tmp_path / "plays.txt",
                       "--output", out, "--shard-tokens", "200000", "--threads", str(threads))
        assert f"{threads} threads" in proc.stderr
        outputs[threads] = digest(out)
    assert outputs[1] == outputs[2]
    assert sum(1 for name in outputs[1] if name.endswith(".bin")) >= 3  # documents cross shard boundaries

    manifest = json.loads((tmp_path / "t2" / "manifest.json").read_text())
    eos = manifest["eos_id"]
    documents = []
    for shard in manifest["shards"]:
        tokens, index, _ = read_shard(tmp_path / "t2" / shard["file"])
        documents += [tokens[index[d]:index[d + 1]] for d in range(len(index) - 1)]
    expected = [t for t in lines] + [s for s in speeches if s.strip(" \t\r\n")]
    assert len(documents) == len(expected)
    references = sp.encode(expected, num_threads=1)
    for i, (doc, ref) in enumerate(zip(documents, references)):
        assert doc == ref + [eos], (i, expected[i][:80])


def test_bad_thread_count_is_a_clear_error(tmp_path):
    shared = require_shared_data()
    tok = tokenizer_dirs(tmp_path / "tok")["phi3"]
    (tmp_path / "a.txt").write_text("hello", encoding="utf-8")
    proc = run_phi("data", "tokenize", "--tokenizer", tok, "--input", tmp_path / "a.txt", "--output", tmp_path / "o",
                   "--threads", "-2", check=False)
    assert proc.returncode != 0 and "--threads" in proc.stderr
    assert shared.exists()


def dataset_documents(directory):
    manifest = json.loads((Path(directory) / "manifest.json").read_text())
    documents = []
    for shard in manifest["shards"]:
        tokens, index, _ = read_shard(Path(directory) / shard["file"])
        documents += [tokens[index[d]:index[d + 1]] for d in range(len(index) - 1)]
    return manifest, documents


def test_per_file_resumes_and_splits_over_tasks(tmp_path):
    """--per-file: each input file's shards and a marker; a rerun redoes only the files whose marker
    is missing, byte for byte; two tasks at once give the same dataset; the documents equal the
    one-pass run's, in order."""
    import subprocess
    from phitest import PHI_BIN

    shared = require_shared_data()
    tok = tokenizer_dirs(tmp_path / "tok")["phi3"]
    paragraphs = [p for p in (shared / "text" / "war_and_peace" / "war-and-peace.txt").read_text(encoding="utf-8")
                  .split("\n\n") if p.strip()][:3000]
    inputs = []
    for k in range(5):
        path = tmp_path / f"in{k}.jsonl"
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in paragraphs[k::5]), encoding="utf-8")
        inputs.append(path)
    common = ["data", "tokenize", "--tokenizer", tok, "--input", *inputs, "--shard-tokens", "30000"]
    run_phi(*common, "--output", tmp_path / "plain")
    run_phi(*common, "--output", tmp_path / "parts", "--per-file")
    plain_manifest, plain_docs = dataset_documents(tmp_path / "plain")
    manifest, docs = dataset_documents(tmp_path / "parts")
    assert docs == plain_docs and manifest["n_tokens"] == plain_manifest["n_tokens"]
    assert [s["file"][:5] for s in manifest["shards"]] == sorted(s["file"][:5] for s in manifest["shards"])
    assert len({s["file"][:5] for s in manifest["shards"]}) == 5
    before = digest(tmp_path / "parts")

    (tmp_path / "parts" / ".parts" / "00003.json").unlink()  # as if killed while file 3 was written
    proc = run_phi(*common, "--output", tmp_path / "parts", "--per-file")
    assert "4 files were already done" in proc.stderr
    assert digest(tmp_path / "parts") == before

    procs = [subprocess.Popen([PHI_BIN, *map(str, common), "--output", str(tmp_path / "tasks"), "--tasks", "2",
                               "--task-index", str(i), "--wait", "120"], stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    logs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    assert digest(tmp_path / "tasks") == before


def test_per_file_refuses_masked_and_plain_files_together(tmp_path):
    require_shared_data()
    tok = tokenizer_dirs(tmp_path / "tok")["phi3"]
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "plain words"}) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"prompt": "Q?", "answer": "A."}) + "\n")
    proc = run_phi("data", "tokenize", "--tokenizer", tok, "--input", tmp_path / "a.jsonl", tmp_path / "b.jsonl",
                   "--output", tmp_path / "o", "--per-file", check=False)
    assert proc.returncode != 0 and "loss mask" in proc.stderr and "b.jsonl" in proc.stderr
    assert not (tmp_path / "o" / "manifest.json").exists()
