"""`phi data tokenize` + `phi train`: a tiny recipe trains through the CLI; a stopped and resumed run
has a bitwise-identical loss trajectory; a run killed with SIGKILL in the middle of writing a
checkpoint resumes from the previous one; frozen parameters stay unchanged and hold no state."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import PHI_BIN, read_shard, require_shared_data, run_phi  # noqa: E402


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A byte-level BPE tokenizer trained here and train/valid shards of Tiny Shakespeare."""
    data = require_shared_data() / "text" / "tinyshakespeare" / "input.txt"
    root = tmp_path_factory.mktemp("train")
    text = data.read_text(encoding="utf-8")
    # Speeches become documents, separated the way `phi data tokenize` reads .txt files.
    speeches = [s for s in text[:150000].split("\n\n") if s.strip()]
    (root / "train.txt").write_text("<|endoftext|>".join(speeches), encoding="utf-8")
    (root / "valid.txt").write_text(text[-20000:], encoding="utf-8")
    run_phi("tokenizer", "train", "--kind", "bpe", "--vocab-size", "512", "--input", root / "train.txt", "--output", root / "tok")
    run_phi("data", "tokenize", "--tokenizer", root / "tok", "--input", root / "train.txt", "--output", root / "data" / "train",
            "--shard-tokens", "20000")
    run_phi("data", "tokenize", "--tokenizer", root / "tok", "--input", root / "valid.txt", "--output", root / "data" / "valid")
    return root


def recipe(workspace, run_dir, **changes):
    r = {
        "run": {"dir": str(run_dir), "seed": 3},
        "model": {"preset": "tiny-phi3", "set": ["vocab_size=512", "max_position_embeddings=256"]},
        "data": {"sources": [{"path": str(workspace / "data" / "train")}], "valid": str(workspace / "data" / "valid"),
                 "seq_len": 64},
        "training": {"batch_size": 4, "grad_accum": 2, "max_steps": 30, "log_every": 10, "eval_every": 15, "eval_batches": 2},
        "checkpoint": {"every": 10, "keep": 2},
        "optimizer": {"name": "adamw", "lr": 3e-3},
        "schedule": {"kind": "cosine", "warmup_steps": 3, "total_steps": 30},
    }
    for key, value in changes.items():
        section, field = key.split("__")
        r[section][field] = value
    path = Path(run_dir).parent / (Path(run_dir).name + ".json")
    path.write_text(json.dumps(r))
    return path


def losses(run_dir):
    return [(row["step"], row["loss"]) for row in map(json.loads, (Path(run_dir) / "metrics.jsonl").read_text().splitlines())]


GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden_losses" / "tiny-phi3-shakespeare.json"


def test_losses_follow_the_golden_curve(workspace, tmp_path):
    """The first 30 steps of the test recipe (tiny Phi-3, BPE-512 Tiny Shakespeare, AdamW, cosine)
    on the CPU against the curve recorded in tests/fixtures/golden_losses (as torchtitan keeps
    tests/assets/losses): a change to the model, the loss, the data order or the optimizer moves
    it. Float32 kernels may differ slightly between CPUs, hence a 1e-3 relative tolerance.
    PHI_UPDATE_GOLDEN=1 rewrites the file (say why in the commit)."""
    config = recipe(workspace, tmp_path / "golden")
    run_phi("train", "--config", config, "--set", "data.valid=", "--set", "checkpoint.every=0")
    rows = losses(tmp_path / "golden")
    assert [step for step, _ in rows] == list(range(1, 31))
    if os.environ.get("PHI_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps({"recipe": "tests/train/test_train.py recipe(), data.valid empty",
                                      "steps": 30, "losses": [loss for _, loss in rows]}, indent=1) + "\n")
    golden = json.loads(GOLDEN.read_text())["losses"]
    assert len(golden) == 30
    for (step, loss), expected in zip(rows, golden):
        assert abs(loss - expected) <= 1e-3 * abs(expected), f"step {step}: {loss} vs golden {expected}"
    assert golden[-1] < golden[0] - 1.0  # the recorded curve is a learning one


def test_shards_and_manifest(workspace):
    manifest = json.loads((workspace / "data" / "train" / "manifest.json").read_text())
    assert manifest["format"] == "phi-shards" and manifest["token_bytes"] == 2 and manifest["vocab_size"] == 512
    assert len(manifest["shards"]) >= 2 and manifest["n_tokens"] == sum(s["n_tokens"] for s in manifest["shards"])
    assert manifest["n_documents"] > 100
    assert manifest["eos_id"] == 511


def test_training_lowers_the_loss_and_writes_the_run(workspace, tmp_path):
    config = recipe(workspace, tmp_path / "run")
    run_phi("train", "--config", config)
    rows = losses(tmp_path / "run")
    assert [s for s, _ in rows] == list(range(1, 31))
    assert rows[-1][1] < rows[0][1] - 0.5
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 30 and summary["final_valid_loss"] > 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["training"]["grad_accum"] == 2
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["step-00000020", "step-00000030"]  # keep = 2
    assert (tmp_path / "run" / "checkpoints" / "step-00000030" / "DONE").exists()
    # The checkpoint's model is a Hugging Face directory the engine (and transformers) load.
    ids = tmp_path / "ids.json"
    ids.write_text("[[1, 2, 3]]")
    run_phi("forward", "--model", tmp_path / "run" / "checkpoints" / "step-00000030" / "model", "--input", ids,
            "--output", tmp_path / "logits.safetensors")


def test_resume_is_bitwise_identical(workspace, tmp_path):
    full = recipe(workspace, tmp_path / "full")
    run_phi("train", "--config", full)
    part = recipe(workspace, tmp_path / "part")
    run_phi("train", "--config", part, "--set", "training.max_steps=13")
    run_phi("train", "--config", part, "--resume")
    # The first process stopped after step 13 (the end of a run is always checkpointed); the
    # second continued from there. Every step matches the uninterrupted run exactly.
    part_rows = losses(tmp_path / "part")
    full_rows = dict(losses(tmp_path / "full"))
    for step, loss in part_rows:
        assert loss == full_rows[step], f"step {step}: {loss} != {full_rows[step]}"
    assert part_rows[-1][0] == 30


def test_sigkill_while_saving_keeps_the_previous_checkpoint(workspace, tmp_path):
    reference = recipe(workspace, tmp_path / "reference")
    run_phi("train", "--config", reference)
    config = recipe(workspace, tmp_path / "killed")
    env = dict(os.environ, PHI_FAULT_CHECKPOINT_DELAY_MS="4000")
    proc = subprocess.Popen([PHI_BIN, "train", "--config", str(config)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    partial = tmp_path / "killed" / "checkpoints" / "step-00000020.tmp"
    deadline = time.time() + 120
    while not partial.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert partial.exists(), "the second checkpoint never started"
    time.sleep(0.5)  # inside the write: the model is on disk, the rest is not
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    complete = [p.name for p in (tmp_path / "killed" / "checkpoints").iterdir() if (p / "DONE").exists()]
    assert complete == ["step-00000010"]
    run_phi("train", "--config", config, "--resume")
    reference_rows = dict(losses(tmp_path / "reference"))
    rows = losses(tmp_path / "killed")
    assert rows[-1][0] == 30
    for step, loss in rows:
        assert loss == reference_rows[step], f"step {step}"


def checkpoint_weights_finite(checkpoint):
    import numpy as np
    from safetensors.numpy import load_file

    tensors = load_file(str(checkpoint / "model" / "model.safetensors"))
    return all(np.isfinite(t).all() for t in tensors.values())


def test_divergence_stops_the_run_and_keeps_the_good_checkpoints(workspace, tmp_path):
    config = recipe(workspace, tmp_path / "diverge", checkpoint__every=5, checkpoint__keep=2)
    run_phi("train", "--config", config, "--set", "training.max_steps=10", "--set", "data.valid=")
    good = sorted(p.name for p in (tmp_path / "diverge" / "checkpoints").iterdir())
    assert good == ["step-00000005", "step-00000010"]
    # A learning rate that blows the weights up: the loss turns non-finite within a few steps.
    proc = run_phi("train", "--config", config, "--resume", "--set", "optimizer.lr=1e12", "--set",
                   "schedule.kind=constant", "--set", "training.max_steps=40", "--set", "data.valid=",
                   "--set", "training.max_nonfinite_steps=3", check=False)
    assert proc.returncode == 1 and "training diverged" in proc.stderr, proc.stderr[-2000:]
    assert "step-00000010" in proc.stderr  # the message names the last good checkpoint
    complete = sorted(p.name for p in (tmp_path / "diverge" / "checkpoints").iterdir() if (p / "DONE").exists())
    assert "step-00000010" in complete
    for name in complete:
        assert checkpoint_weights_finite(tmp_path / "diverge" / "checkpoints" / name), name
    # The good checkpoint still resumes (with a sane learning rate).
    run_phi("train", "--config", config, "--resume", "--set", "training.max_steps=12", "--set", "data.valid=")
    assert losses(tmp_path / "diverge")[-1][0] == 12


def test_stale_tmp_is_removed_and_a_corrupt_latest_checkpoint_falls_back(workspace, tmp_path):
    reference = recipe(workspace, tmp_path / "reference")
    run_phi("train", "--config", reference)
    config = recipe(workspace, tmp_path / "corrupt")
    run_phi("train", "--config", config, "--set", "training.max_steps=20")
    checkpoints = tmp_path / "corrupt" / "checkpoints"
    stale = checkpoints / "step-00000025.tmp"
    stale.mkdir()
    (stale / "model").mkdir()
    # The newest checkpoint's weights are cut short (a disk that filled, a bad copy).
    weights = checkpoints / "step-00000020" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    proc = run_phi("train", "--config", config, "--resume")
    assert not stale.exists()
    assert "step-00000020" in proc.stderr and "cannot be used" in proc.stderr
    assert "resumed from" in proc.stderr and "step-00000010" in proc.stderr
    rows = losses(tmp_path / "corrupt")
    reference_rows = dict(losses(tmp_path / "reference"))
    assert rows[-1][0] == 30
    # Steps 11..30 were run again from the step-10 checkpoint, exactly as the uninterrupted run.
    for step, loss in rows:
        assert loss == reference_rows[step], f"step {step}"


def test_frozen_embedding_with_sgd(workspace, tmp_path):
    from safetensors.numpy import load_file

    config = recipe(workspace, tmp_path / "frozen", optimizer__name="sgd", optimizer__lr=0.05, optimizer__freeze=["embed"])
    proc = run_phi("train", "--config", config, "--set", "training.max_steps=10")
    assert "frozen" in proc.stderr and "12 bytes/parameter" in proc.stderr
    run_phi("init", "--preset", "tiny-phi3", "--set", "vocab_size=512", "--set", "max_position_embeddings=256",
            "--seed", "3", "--output", tmp_path / "init")
    before = load_file(str(tmp_path / "init" / "model.safetensors"))
    after = load_file(str(tmp_path / "frozen" / "checkpoints" / "step-00000010" / "model" / "model.safetensors"))
    assert (before["model.embed_tokens.weight"] == after["model.embed_tokens.weight"]).all()
    assert not (before["model.norm.weight"] == after["model.norm.weight"]).all()
    state = load_file(str(tmp_path / "frozen" / "checkpoints" / "step-00000010" / "optimizer.safetensors"))
    assert not any(k.startswith("embed") for k in state)
    assert any(k.endswith(".momentum") for k in state)


def test_bad_recipes(workspace, tmp_path):
    config = recipe(workspace, tmp_path / "bad")
    for override, fragment in [("training.batch_sise=3", "unknown key $.training.batch_sise"),
                               ("optimizer.name=lion", "must be adamw or sgd"),
                               ("schedule.kind=exp", "must be cosine, linear, constant or wsd"),
                               ("data.seq_len=100000", "too few for one sequence"),
                               ("data.seq_len=1000", "longer than the model's context (256 positions)"),
                               ("training.max_nonfinite_steps=0", "must be > 0"),
                               # a section the recipe leaves out can be set; its keys are still checked
                               ("distributed.stratgy=fsdp", "unknown key $.distributed.stratgy"),
                               ("distributed.strategy=zero3", "must be ddp, zero1 or fsdp")]:
        proc = run_phi("train", "--config", config, "--set", override, check=False)
        assert proc.returncode == 1 and fragment in proc.stderr, (override, proc.stderr)


def test_every_shipped_recipe_parses():
    from phitest import REPO

    recipes = sorted((REPO / "configs" / "train").glob("*.json"))
    assert len(recipes) >= 8
    for path in recipes:
        resolved = json.loads(run_phi("train", "--config", path, "--dry-run").stdout)
        assert resolved["training"]["max_steps"] > 0, path.name


def test_mixed_precision_tracks_float32(workspace, tmp_path):
    """bf16 and f16 autocast with float32 master weights (CPU autocast here; the GPU run in
    scripts/gpu_check.sh does the same on CUDA): the loss falls like the float32 run's."""
    runs = {}
    for precision in ("f32", "bf16", "f16"):
        config = recipe(workspace, tmp_path / precision)
        run_phi("train", "--config", config, "--set", f"training.precision={precision}")
        runs[precision] = [loss for _, loss in losses(tmp_path / precision)]
        summary = json.loads((tmp_path / precision / "summary.json").read_text())
        assert summary["precision"] == precision and summary["skipped_steps"] == 0
    for precision in ("bf16", "f16"):
        assert runs[precision] != runs["f32"]  # really computed in the lower precision
        assert runs[precision][-1] < runs[precision][0] - 0.5
        assert abs(runs[precision][-1] - runs["f32"][-1]) < 0.05 * runs["f32"][-1], (precision, runs[precision][-1])
    # The f16 loss scale is checkpointed (resume continues it).
    state = json.loads((tmp_path / "f16" / "checkpoints" / "step-00000030" / "trainer_state.json").read_text())
    assert state["loss_scale"] == 65536


def test_f16_loss_scale_skips_overflowing_steps_and_backs_off(workspace, tmp_path):
    config = recipe(workspace, tmp_path / "scaled")
    run_phi("train", "--config", config, "--set", "training.precision=f16", "--set", "training.loss_scale=1e9",
            "--set", "training.max_steps=20", "--set", "data.valid=")
    rows = [json.loads(line) for line in (tmp_path / "scaled" / "metrics.jsonl").read_text().splitlines()]
    skipped = [r for r in rows if r["grad_norm"] is None]
    assert len(skipped) >= 3 and rows[0]["grad_norm"] is None, "a loss scale of 1e9 overflows f16 gradients"
    scales = [r["loss_scale"] for r in rows]
    assert scales[0] == 5e8 and all(b <= a for a, b in zip(scales, scales[1:]))  # halved on each overflow
    assert rows[-1]["grad_norm"] is not None and all(r["loss"] == r["loss"] for r in rows)
    summary = json.loads((tmp_path / "scaled" / "summary.json").read_text())
    assert summary["skipped_steps"] == len(skipped)


def test_activation_checkpointing_keeps_the_trajectory(workspace, tmp_path):
    plain = recipe(workspace, tmp_path / "plain", training__max_steps=12)
    run_phi("train", "--config", plain, "--set", "schedule.total_steps=12")
    recomputed = recipe(workspace, tmp_path / "recomputed", training__max_steps=12)
    run_phi("train", "--config", recomputed, "--set", "schedule.total_steps=12",
            "--set", "training.activation_checkpointing=true")
    assert losses(tmp_path / "plain") == losses(tmp_path / "recomputed")  # bitwise on CPU


def test_document_masks(workspace, tmp_path):
    runs = {}
    for masks in ("false", "true"):
        config = recipe(workspace, tmp_path / f"docs-{masks}", training__max_steps=8)
        run_phi("train", "--config", config, "--set", f"data.document_masks={masks}", "--set", "schedule.total_steps=8")
        runs[masks] = losses(tmp_path / f"docs-{masks}")
        saved = json.loads((tmp_path / f"docs-{masks}" / "config.json").read_text())
        assert saved["data"]["document_masks"] == (masks == "true")
    # Speeches are short next to 64 tokens: masking them apart changes the very first loss.
    assert runs["true"][0][1] != runs["false"][0][1]
    assert all(loss == loss for _, loss in runs["true"])


def test_finetune_on_chat_jsonl(tmp_path):
    """phi finetune: a model directory plus conversations in JSONL; the run tokenizes them with the
    model's tokenizer and chat template (loss on assistant turns) and fine-tunes."""
    from phitest import random_model_with_tokenizer

    _, model_dir = random_model_with_tokenizer(tmp_path, "phi3")
    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                                                      {"role": "assistant", "content": f"{i} + {i} = {2 * i}."}]}) + "\n"
                             for i in range(64)))
    for optimizer, extra in (("adamw", {}), ("sgd", {"freeze": ["embed"], "lr": 0.05})):
        run_dir = tmp_path / f"ft-{optimizer}"
        r = {"run": {"dir": str(run_dir), "seed": 1}, "model": {"init_from": str(model_dir)},
             "data": {"sources": [{"path": str(chats)}], "seq_len": 48, "pack": False},
             "training": {"batch_size": 8, "max_steps": 15, "log_every": 5},
             "optimizer": {"name": optimizer, "lr": 3e-3, "weight_decay": 0.0, **extra},
             "schedule": {"kind": "constant", "warmup_steps": 0, "total_steps": 15}}
        (tmp_path / f"ft-{optimizer}.json").write_text(json.dumps(r))
        run_phi("finetune", "--config", tmp_path / f"ft-{optimizer}.json")
        rows = losses(run_dir)
        assert len(rows) == 15 and rows[-1][1] < rows[0][1] - 0.5, rows
        manifest = json.loads((run_dir / "data" / "source-0" / "manifest.json").read_text())
        assert manifest["loss_mask"] is True and manifest["n_documents"] == 64
        # The fine-tuned model is a complete model directory (weights + tokenizer) for generation.
        model = run_dir / "checkpoints" / "step-00000015" / "model"
        assert (model / "tokenizer.model").exists()
    no_init = tmp_path / "no-init.json"
    no_init.write_text(json.dumps({"model": {"preset": "tiny-phi3"}, "data": {"sources": [{"path": str(chats)}]}}))
    proc = run_phi("finetune", "--config", no_init, check=False)
    assert proc.returncode != 0 and "model.init_from" in proc.stderr


def test_masked_datasets_train_on_answers_and_assistant_turns(workspace, tmp_path):
    tok = workspace / "tok"
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Q{i}: what is {i} plus {i}?", "answer": f" {2 * i}."}) + "\n"
                             for i in range(200)))
    run_phi("data", "tokenize", "--tokenizer", tok, "--input", pairs, "--output", tmp_path / "pairs")
    manifest = json.loads((tmp_path / "pairs" / "manifest.json").read_text())
    assert manifest["loss_mask"] is True
    tokens, index, mask = read_shard(tmp_path / "pairs" / manifest["shards"][0]["file"])
    answer_ids = json.loads(run_phi("tokenizer", "encode", "--model", tok, "--text", " 0.").stdout)
    first = mask[index[0]:index[1]]
    assert first == [0] * (len(first) - len(answer_ids) - 1) + [1] * (len(answer_ids) + 1)

    chats = tmp_path / "chats.jsonl"
    chats.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                                              {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye!"}]}) + "\n")
    run_phi("data", "tokenize", "--tokenizer", tok, "--input", chats, "--output", tmp_path / "chats",
            "--chat-template", "phi2")
    tokens, index, mask = read_shard(tmp_path / "chats" / "shard-00000.bin")
    trained = run_phi("tokenizer", "decode", "--model", tok, "--ids", json.dumps([t for t, m in zip(tokens, mask) if m])).stdout
    assert "Hello!" in trained and "Bye!" in trained and "Hi" not in trained and "Instruct" not in trained

    for pack in ("true", "false"):  # packed stream, or one (padded) document per sequence
        config = recipe(workspace, tmp_path / f"masked-{pack}")
        run_phi("train", "--config", config, "--set", f'data.sources=[{{"path": "{tmp_path / "pairs"}"}}]',
                "--set", "data.valid=", "--set", "data.seq_len=32", "--set", f"data.pack={pack}",
                "--set", "training.max_steps=5")
        assert all(loss == loss and loss > 0 for _, loss in losses(tmp_path / f"masked-{pack}"))


def test_lego_pipeline(tmp_path):
    """LEGO end to end through the CLI (the short version of scripts/lego.sh): generate train and
    held-out splits, the recipe's 259-token BPE (bytes plus the "=+" / "=-" merges), masked shards, a
    short training run, and the per-position evaluation over the merged sign tokens."""
    run_phi("data", "synth", "lego", "--output", tmp_path / "train.jsonl", "--count", "2000", "--length", "4", "--seed", "1")
    run_phi("data", "synth", "lego", "--output", tmp_path / "heldout.jsonl", "--count", "50", "--length", "4", "--seed", "9")
    train_lines = (tmp_path / "train.jsonl").read_text().splitlines()
    held = (tmp_path / "heldout.jsonl").read_text().splitlines()
    assert not set(json.loads(l)["prompt"] for l in held) & set(json.loads(l)["prompt"] for l in train_lines[:2000])
    example = json.loads(train_lines[0])
    # The answer resolves every variable: check it against the clauses independently.
    assert example["prompt"].startswith(" ") and "; " in example["prompt"]
    clauses = dict(c.strip().split("=") for c in example["prompt"].rstrip("?").split(";"))
    values = {}
    while len(values) < len(clauses):
        for var, rhs in clauses.items():
            sign = 1 if rhs[0] == "+" else -1
            source = rhs[1:]
            if source == "1":
                values[var] = sign
            elif source in values:
                values[var] = sign * values[source]
    items = [a.strip().split("=") for a in example["answer"].rstrip(".").split(",")]
    order = [item[0] for item in items]
    assert sorted(order) == sorted(clauses)
    # Each item restates its clause, then the value (the root's clause is its value).
    assert all(f"{item[0]}={item[1]}" in example["prompt"] for item in items)
    expected = ",".join(f" {v}={clauses[v]}" + ("" if clauses[v][1:] == "1" else f"={'+' if values[v] > 0 else '-'}1")
                        for v in order)
    assert example["answer"] == expected + "."
    assert order[0] == next(v for v, rhs in clauses.items() if rhs[1:] == "1")
    assert all(clauses[order[i]][1:] == order[i - 1] for i in range(1, len(order)))
    run_phi("tokenizer", "train", "--kind", "bpe", "--vocab-size", "285", "--input", tmp_path / "train.jsonl",
            "--output", tmp_path / "tok")
    # The recipe's tokenizer: bytes, the two signs merged with "=", and a space merged with each letter
    # (the byte-level alphabet writes the space as "Ġ").
    merges = [l for l in (tmp_path / "tok" / "merges.txt").read_text().splitlines() if not l.startswith("#")]
    assert sorted(merges) == ["= +", "= -"] + [f"Ġ {c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    run_phi("data", "tokenize", "--tokenizer", tmp_path / "tok", "--input", tmp_path / "train.jsonl", "--output", tmp_path / "data")
    from phitest import REPO
    run_phi("train", "--config", REPO / "configs" / "train" / "lego-tiny.json", "--set", f"run.dir={tmp_path / 'run'}",
            "--set", f'data.sources=[{{"path": "{tmp_path / "data"}"}}]', "--set", "training.max_steps=20",
            "--set", "schedule.total_steps=20", "--set", "schedule.warmup_steps=2")
    report = json.loads(run_phi("eval", "lego", "--model", tmp_path / "run" / "checkpoints" / "step-00000020" / "model",
                                "--input", tmp_path / "heldout.jsonl", "--json").stdout)
    assert report["examples"] == 50 and [p["position"] for p in report["by_position"]] == [1, 2, 3, 4]
    assert all(0 <= p["accuracy"] <= 1 for p in report["by_position"])


def test_kernel_choice_is_recorded_and_reproduced_on_resume(workspace, tmp_path):
    """The recipe's `kernels` section (or the environment aliases) decides the kernels; the
    resolved config records the effective choice and a resumed run takes it from there."""
    config = recipe(workspace, tmp_path / "k", training__max_steps=4, checkpoint__every=2)
    env = dict(os.environ, PHI_FLASH_KERNEL="mma")
    proc = subprocess.run([PHI_BIN, "train", "--config", str(config), "--set", 'kernels={"attention": "fused"}',
                           "--set", "data.valid="], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    recorded = json.loads((tmp_path / "k" / "config.json").read_text())["kernels"]
    assert recorded == {"attention": "fused", "elementwise": "aten", "flash_kernel": "mma"}
    resumed = run_phi("train", "--config", config, "--resume", "--set", "training.max_steps=6", "--set", "data.valid=")
    assert "kernels: attention fused, elementwise aten, flash kernel mma" in resumed.stderr
    proc = run_phi("train", "--config", config, "--set", 'kernels={"attention": "flash"}', check=False)
    assert proc.returncode == 1 and "$.kernels.attention must be aten or fused" in proc.stderr


def test_eval_tasks_during_training(tmp_path):
    """A recipe's evals (perplexity on a held-out file, an MMLU subset) run every N steps and at the
    end; their numbers land in metrics.jsonl and equal `phi eval` on the checkpoint of that step."""
    import tarfile

    from phitest import SHARED, random_model_with_tokenizer, require_shared_data

    require_shared_data()
    _, model_dir = random_model_with_tokenizer(tmp_path, "phi2", max_position_embeddings=1024)
    text = (SHARED / "text" / "tinyshakespeare" / "input.txt").read_text()
    train_txt, heldout = tmp_path / "train.txt", tmp_path / "heldout.txt"
    train_txt.write_text(text[:20000])
    heldout.write_text(text[-3000:])
    shards = tmp_path / "shards"
    run_phi("data", "tokenize", "--tokenizer", model_dir, "--input", train_txt, "--output", shards)
    mmlu = tmp_path / "mmlu_data"
    with tarfile.open(SHARED / "eval" / "mmlu" / "mmlu_dev_test_reformatted.tar.gz") as tar:
        tar.extractall(mmlu, members=[m for m in tar.getmembers() if "/anatomy_" in m.name], filter="data")
    run_dir = tmp_path / "run"
    r = {"run": {"dir": str(run_dir), "seed": 3}, "model": {"init_from": str(model_dir)},
         "data": {"sources": [{"path": str(shards)}], "seq_len": 64},
         "training": {"batch_size": 4, "max_steps": 6, "log_every": 3},
         "checkpoint": {"every": 4, "keep": 3},
         "optimizer": {"name": "adamw", "lr": 1e-3},
         "schedule": {"kind": "constant", "warmup_steps": 0, "total_steps": 6},
         "evals": [{"task": "perplexity", "name": "heldout", "every": 4, "input": str(heldout), "seq_len": 128},
                   {"task": "mmlu", "every": 0, "data": str(mmlu / "mmlu"), "subjects": ["anatomy"], "shots": 2,
                    "limit": 6}]}
    (tmp_path / "r.json").write_text(json.dumps(r))
    run_phi("train", "--config", tmp_path / "r.json")
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    with_ppl = [row["step"] for row in rows if "eval/heldout/perplexity" in row]
    with_mmlu = [row["step"] for row in rows if "eval/mmlu/acc" in row]
    assert with_ppl == [4, 6] and with_mmlu == [6]
    for step in (4, 6):
        checkpoint = run_dir / "checkpoints" / f"step-{step:08d}" / "model"
        report = tmp_path / f"ppl{step}.json"
        run_phi("eval", "perplexity", "--model", checkpoint, "--input", heldout, "--seq-len", 128, "--output", report)
        expected = json.loads(report.read_text())["metrics"]["perplexity_exact"]
        got = next(row for row in rows if row["step"] == step)["eval/heldout/perplexity"]
        assert abs(got / expected - 1) < 1e-5, (step, got, expected)
    report = tmp_path / "mmlu.json"
    run_phi("eval", "mmlu", "--model", run_dir / "checkpoints" / "step-00000006" / "model", "--data", mmlu / "mmlu",
            "--subjects", "anatomy", "--shots", 2, "--limit", 6, "--output", report)
    assert rows[-1]["eval/mmlu/acc"] == json.loads(report.read_text())["metrics"]["acc"]
    bad = dict(r, evals=[{"task": "bleu", "every": 2}])
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    proc = run_phi("train", "--config", tmp_path / "bad.json", check=False)
    assert proc.returncode == 1 and "$.evals[0].task" in proc.stderr and "perplexity or mmlu" in proc.stderr
    bad = dict(r, evals=[{"task": "perplexity", "input": "x", "seq_lenn": 5}])
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    proc = run_phi("train", "--config", tmp_path / "bad.json", check=False)
    assert proc.returncode == 1 and "seq_lenn" in proc.stderr
