"""Shared by the multi-process training tests: a small tokenized corpus (Tiny Shakespeare speeches,
uneven documents), recipes, launching 1 or N ranks, and comparing two runs."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import PHI_BIN, require_shared_data, run_phi  # noqa: E402,F401


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Speeches of Tiny Shakespeare as documents (uneven lengths), a BPE tokenizer trained on them."""
    text = (require_shared_data() / "text" / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    root = tmp_path_factory.mktemp("ddp")
    speeches = [s for s in text[:60000].split("\n\n") if s.strip()]
    (root / "train.txt").write_text("<|endoftext|>".join(speeches), encoding="utf-8")
    run_phi("tokenizer", "train", "--kind", "bpe", "--vocab-size", "384", "--input", root / "train.txt", "--output", root / "tok")
    run_phi("data", "tokenize", "--tokenizer", root / "tok", "--input", root / "train.txt", "--output", root / "shards")
    return root


def write_recipe(data, run_dir, steps=30, extra=None, **sections):
    r = {"run": {"dir": str(run_dir), "seed": 5},
         "model": {"preset": "tiny-phi3", "set": ["vocab_size=384", "max_position_embeddings=128"]},
         "data": {"sources": [{"path": str(data / "shards")}], "seq_len": 48, "pack": False},
         "training": {"batch_size": 6, "grad_accum": 2, "max_steps": steps, "log_every": 10},
         "checkpoint": {"every": 10, "keep": 5},
         "optimizer": {"name": "adamw", "lr": 2e-3},
         "schedule": {"kind": "cosine", "warmup_steps": 3, "total_steps": 30},
         "distributed": {"timeout_s": 60}}
    for key, value in sections.items():
        r[key].update(value)
    path = Path(str(run_dir) + ".json")
    path.write_text(json.dumps(r))
    return path


def train(recipe, nproc, *extra):
    if nproc == 1:
        return run_phi("train", "--config", recipe, *extra, timeout=600)
    proc = subprocess.run([PHI_BIN, "launch", "--nproc", str(nproc), "--", "train", "--config", str(recipe), *extra],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def losses(run_dir):
    return np.array([r["loss"] for r in map(json.loads, (Path(run_dir) / "metrics.jsonl").read_text().splitlines())])


def weights(run_dir, step):
    """A checkpoint's weights; a sharded one (fsdp) exported by phi convert first."""
    from safetensors.numpy import load_file

    checkpoint = Path(run_dir) / "checkpoints" / f"step-{step:08d}"
    if (checkpoint / "sharding.json").exists():
        export = Path(f"{run_dir}-export-{step}")
        if not export.exists():
            run_phi("convert", "--from", checkpoint, "--to", export)
        return load_file(str(export / "model.safetensors"))
    return load_file(str(checkpoint / "model" / "model.safetensors"))


def assert_same_run(a, b, step=30, tol=1e-5):
    la, lb = losses(a), losses(b)
    assert len(la) == len(lb)
    assert np.max(np.abs(la - lb) / np.abs(la)) < tol, (la, lb)
    wa, wb = weights(a, step), weights(b, step)
    assert wa.keys() == wb.keys()
    worst = max(float(np.max(np.abs(wa[k] - wb[k])) / max(float(np.max(np.abs(wa[k]))), 1e-12)) for k in wa)
    assert worst < tol, worst
    return float(np.max(np.abs(la - lb) / np.abs(la))), worst


