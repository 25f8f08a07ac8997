"""Data-parallel training over Gloo on 127.0.0.1: 2 and 3 ranks launched by `phi launch` equal one
process with the same global batch (per-step losses and final weights within 1e-5 relative, float32,
30 steps), with gradient accumulation, unpacked documents of uneven length (the loss is normalised by
the global count of scored tokens), a frozen embedding and tied embeddings, for DDP, ZeRO-1 and fully
sharded training; the training-state bytes each rank holds are measured against the prediction; a
2-rank checkpoint resumes on 3 ranks and on 1 along the uninterrupted trajectory."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import PHI_BIN, require_shared_data, run_phi  # noqa: E402


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


@pytest.mark.parametrize("variant", ["plain", "frozen_embedding_sgd", "tied", "small_buckets", "no_overlap", "zero1",
                                     "zero1_sgd_frozen", "fsdp", "fsdp_sgd_frozen", "fsdp_tied_checkpointing"])
def test_ranks_equal_one_process(data, tmp_path, variant):
    sections = {}
    if variant == "fsdp":
        sections = {"distributed": {"strategy": "fsdp"}}
    if variant == "fsdp_sgd_frozen":
        sections = {"distributed": {"strategy": "fsdp"},
                    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "freeze": ["embed"]}}
    if variant == "fsdp_tied_checkpointing":  # blocks recomputed in backward, their parameters gathered again
        sections = {"distributed": {"strategy": "fsdp"}, "training": {"activation_checkpointing": True},
                    "model": {"set": ["vocab_size=384", "max_position_embeddings=128", "tie_embeddings=true"]}}
    if variant == "zero1":
        sections = {"distributed": {"strategy": "zero1"}}
    if variant == "zero1_sgd_frozen":
        sections = {"distributed": {"strategy": "zero1"},
                    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "freeze": ["embed"]}}
    if variant == "small_buckets":  # many buckets, each all-reduced during backward as it fills
        sections = {"distributed": {"bucket_mb": 0.02}}
    if variant == "no_overlap":
        sections = {"distributed": {"overlap": False}}
    if variant == "frozen_embedding_sgd":
        sections = {"optimizer": {"name": "sgd", "lr": 0.05, "freeze": ["embed"]}}
    if variant == "tied":
        sections = {"model": {"set": ["vocab_size=384", "max_position_embeddings=128", "tie_embeddings=true"]}}
    runs = {}
    for nproc in (1, 2, 3):
        run_dir = tmp_path / f"{variant}-{nproc}"
        train(write_recipe(data, run_dir, **sections), nproc)
        runs[nproc] = run_dir
    for nproc in (2, 3):
        loss_err, weight_err = assert_same_run(runs[1], runs[nproc])
        print(f"{variant}: {nproc} ranks vs 1 process: losses {loss_err:.1e}, weights {weight_err:.1e}")
    assert (runs[2] / "logs" / "rank-1.log").exists()
    # Optimizer-state bytes per rank: measured after the first step equals the prediction; with
    # zero1 the ranks' states add up to one process's.
    import re

    for nproc in (2, 3):
        measured = []
        for r in range(nproc):
            log = (runs[nproc] / "logs" / f"rank-{r}.log").read_text()
            m = re.search(r"optimizer state on this rank: (\d+) bytes measured, (\d+) predicted", log)
            assert m and m.group(1) == m.group(2), log[-2000:]
            measured.append(int(m.group(1)))
        if variant.startswith(("zero1", "fsdp")):
            total = int(re.search(r"\((\d+) trainable", (runs[nproc] / "logs" / "rank-0.log").read_text()).group(1))
            per_parameter = 8 if "sgd" not in variant else 4  # AdamW's two moments; SGD's momentum (float32)
            assert sum(measured) == per_parameter * total and max(measured) < sum(measured)
        else:
            assert len(set(measured)) == 1
    # The bytes of training state per rank (summary.json, rank 0), measured against the prediction.
    single = json.loads((runs[1] / "summary.json").read_text())["memory"]
    for nproc in (1, 2, 3):
        memory = json.loads((runs[nproc] / "summary.json").read_text())["memory"]
        measured, predicted = memory["measured_bytes"], memory["predicted_bytes"]
        sharded = variant.startswith("fsdp") or (variant.startswith("zero1") and nproc > 1)
        if sharded:
            # What the rank holds is the prediction, but for the padding that makes the shards equal
            # (up to 16 bytes per padding element in a shard, 8 in zero1's whole buffers).
            slack = 16 * memory["padding_elements"] / nproc + 8 * memory["padding_elements"] + 16
            assert abs(measured - predicted) <= slack, memory
            assert 0 <= memory["peak_gathered_bytes"] <= memory["predicted_gathered_bytes"], memory
        if variant.startswith("fsdp"):
            # Shards of weights, gradients and state; at most the embedding, the head and two blocks
            # were whole at once.
            frozen = memory["frozen_bytes"]  # frozen weights stay whole on every rank
            assert measured - frozen <= (single["measured_bytes"] - frozen) / nproc + slack
            assert memory["peak_gathered_bytes"] < single["measured_bytes"] / 2, memory
        elif sharded:
            # zero1: whole weights and gradients on every rank, the optimizer state of its shard only.
            state = memory["optimizer_state_bytes"]
            assert 0 < state <= single["optimizer_state_bytes"] / nproc + slack, memory
            assert measured < single["measured_bytes"], memory
        else:
            assert measured == predicted == single["measured_bytes"], memory
    rows = [json.loads(x) for x in (runs[2] / "metrics.jsonl").read_text().splitlines()]
    if variant.startswith(("zero1", "fsdp")):
        assert all("reduce_scatter_wait_s" in r for r in rows)
        rows = []
    started = {r["buckets_started_in_backward"] for r in rows}
    if variant == "small_buckets":
        assert rows[0]["buckets"] > 5 and min(started) > 0  # all-reduces ran during backward
    if variant == "no_overlap":
        assert started == {0}
    if variant.startswith(("zero1", "fsdp")):
        # Each rank holds an equal shard (with the padding) of every unit of trainable parameters.
        import re

        for nproc in (2, 3):
            shares = []
            for r in range(nproc):
                log = (runs[nproc] / "logs" / f"rank-{r}.log").read_text()
                m = re.search(r"this rank holds the shards of (\d+) of (\d+) trainable elements \((\d+) padding", log)
                shares.append(tuple(int(g) for g in m.groups()))
            mine, total, padding = shares[0]
            assert all(s == shares[0] for s in shares) and mine * nproc == total + padding < total + 64
    if variant in ("frozen_embedding_sgd", "zero1_sgd_frozen", "fsdp_sgd_frozen"):
        start = weights(runs[2], 10)["model.embed_tokens.weight"]
        assert np.array_equal(start, weights(runs[2], 30)["model.embed_tokens.weight"])


def test_memory_estimate_fits_phi3_medium_on_8_cards():
    """The start-up estimate (phi info --ranks prints the same numbers): Phi-3-medium with AdamW and
    float32 master weights fits on 8 x 80 GB cards only fully sharded."""
    info = json.loads(run_phi("info", "--preset", "phi-3-medium-4k", "--ranks", "8", "--json").stdout)
    memory, n = info["training_memory"], info["parameters"]
    assert memory["ddp_bytes"] == 16 * n and memory["zero1_bytes"] == 8 * n + 8 * n / 8
    assert memory["fsdp_bytes"] == 16 * n / 8
    card = 80e9
    assert memory["ddp_bytes"] > card and memory["zero1_bytes"] > card
    # Sharded state plus the most gathered at once leaves over half the card for activations.
    assert memory["fsdp_bytes"] + memory["fsdp_gathered_bytes"] < 0.5 * card, memory


def test_resume_on_another_world_size(data, tmp_path):
    """A 2-rank run checkpointed at step 20 continues on 3 ranks and on 1 along the uninterrupted run,
    with DDP, ZeRO-1 and fully sharded training (each rank writes its slices; they are re-cut on load),
    and across strategies."""
    full = tmp_path / "full"
    train(write_recipe(data, full), 1)
    for first, then, nproc in (("ddp", "ddp", 3), ("ddp", "ddp", 1), ("zero1", "zero1", 3), ("zero1", "zero1", 1),
                               ("fsdp", "fsdp", 3), ("fsdp", "ddp", 1), ("ddp", "fsdp", 3)):
        part = tmp_path / f"part-{first}-{then}-{nproc}"
        train(write_recipe(data, part, steps=20, distributed={"strategy": first}), 2)
        if first == "fsdp":
            shards = sorted(p.name for p in (part / "checkpoints" / "step-00000020" / "shards").iterdir())
            assert shards == ["rank-00000.safetensors", "rank-00001.safetensors"]
        train(write_recipe(data, part, steps=30, distributed={"strategy": then}), nproc, "--resume")
        assert_same_run(full, part)


def test_a_sharded_checkpoint_missing_a_shard_is_skipped(data, tmp_path):
    """A sharded checkpoint whose rank file is gone is not resumed from: the one before it is, with a
    warning naming the missing shard."""
    run_dir = tmp_path / "sharded"
    train(write_recipe(data, run_dir, steps=20, distributed={"strategy": "fsdp"}), 2)
    (run_dir / "checkpoints" / "step-00000020" / "shards" / "rank-00001.safetensors").unlink()
    proc = subprocess.run([PHI_BIN, "launch", "--nproc", "2", "--", "train", "--config",
                           str(write_recipe(data, run_dir, steps=25, distributed={"strategy": "fsdp"})), "--resume"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 1's shard is missing" in proc.stderr and "resumed from" in proc.stderr
    assert "step-00000010 (step 10)" in proc.stderr, proc.stderr[-3000:]


def test_bf16_gradient_reduction(data, tmp_path):
    """distributed.reduce_dtype bf16 halves the traffic; the sums are rounded to bf16, so the run
    stays near (not equal to) the float32 one."""
    ref, bf16 = tmp_path / "f32", tmp_path / "bf16"
    train(write_recipe(data, ref), 2)
    train(write_recipe(data, bf16, distributed={"reduce_dtype": "bf16", "bucket_mb": 0.02}), 2)
    sharded = tmp_path / "fsdp-bf16"  # fully sharded: the gradients reduce-scattered in bf16
    train(write_recipe(data, sharded, distributed={"reduce_dtype": "bf16", "strategy": "fsdp"}), 2)
    for run in (bf16, sharded):
        a, b = losses(ref), losses(run)
        assert np.max(np.abs(a - b) / np.abs(a)) < 2e-2
        assert np.max(np.abs(a - b)) > 0  # the rounding is real


def test_mixed_precision_with_every_strategy(data, tmp_path):
    """bf16 autocast (float32 master weights): the sharded strategies follow DDP's run. bf16 rounding
    amplifies the float32 order-of-summation differences between strategies, so near, not equal."""
    runs = {}
    for strategy in ("ddp", "zero1", "fsdp"):
        runs[strategy] = tmp_path / f"bf16-{strategy}"
        train(write_recipe(data, runs[strategy], training={"precision": "bf16"}, distributed={"strategy": strategy}), 2)
    ref = losses(runs["ddp"])
    assert ref[-1] < ref[0] - 0.5  # it trains
    for strategy in ("zero1", "fsdp"):
        assert np.max(np.abs(losses(runs[strategy]) - ref) / ref) < 1e-3


def test_batch_must_divide_among_ranks(data, tmp_path):
    recipe = write_recipe(data, tmp_path / "odd", training={"batch_size": 5})
    proc = subprocess.run([PHI_BIN, "launch", "--nproc", "2", "--", "train", "--config", str(recipe)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "does not divide among 2 ranks" in proc.stderr
    for strategy, fragment in (("zero3", "must be ddp, zero1 or fsdp"),):
        recipe = write_recipe(data, tmp_path / "z", distributed={"strategy": strategy})
        proc = run_phi("train", "--config", recipe, check=False)
        assert proc.returncode == 1 and "$.distributed.strategy" in proc.stderr and fragment in proc.stderr


def wait_for_step(run_dir, step, proc_list, timeout=120):
    import time

    deadline = time.monotonic() + timeout
    metrics = Path(run_dir) / "metrics.jsonl"
    while time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= step:
            return
        assert all(p.poll() is None for p in proc_list), "a rank ended early"
        time.sleep(0.1)
    raise AssertionError(f"step {step} not reached in {timeout} s")


def test_sigterm_saves_a_checkpoint_and_resume_continues(data, tmp_path):
    """SIGTERM to the launcher reaches every rank: they stop at the same step after a checkpoint;
    --resume then finishes along the uninterrupted trajectory."""
    import signal
    import time

    full = tmp_path / "full"
    train(write_recipe(data, full, steps=60, schedule={"total_steps": 60}), 2)
    run_dir = tmp_path / "stopped"
    recipe = write_recipe(data, run_dir, steps=60, schedule={"total_steps": 60}, checkpoint={"every": 1000})
    proc = subprocess.Popen([PHI_BIN, "launch", "--nproc", "2", "--", "train", "--config", str(recipe)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_step(run_dir, 8, [proc])
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    saved = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if (p / "DONE").exists())
    assert len(saved) == 1 and "stopped by SIGTERM" in err, (saved, err[-3000:])
    stopped_at = int(saved[0].split("-")[1])
    assert 8 <= stopped_at < 60
    train(recipe, 2, "--resume")
    a, b = losses(full), losses(run_dir)
    assert len(b) == 60 and np.max(np.abs(a - b) / np.abs(a)) < 1e-5


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_killed_rank_stops_the_job_within_the_timeout(data, tmp_path, strategy):
    """SIGKILL of one rank mid-run (no launcher to clean up): the other exits non-zero within the
    collective timeout naming the collective; the last checkpoint is intact and the job resumes."""
    import os
    import signal
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_dir = tmp_path / "killed"
    recipe = write_recipe(data, run_dir, steps=400, schedule={"total_steps": 400},
                          distributed={"timeout_s": 10, "strategy": strategy}, checkpoint={"every": 5})
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([PHI_BIN, "train", "--config", str(recipe)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    wait_for_step(run_dir, 7, procs)
    procs[1].send_signal(signal.SIGKILL)
    start = time.monotonic()
    _, err = procs[0].communicate(timeout=120)
    assert procs[0].returncode == 1 and "failed" in err and "rank 0 of 2" in err, err[-3000:]
    assert time.monotonic() - start < 40
    procs[1].wait()
    complete = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if (p / "DONE").exists())
    assert complete, "no complete checkpoint left"
    recipe = write_recipe(data, run_dir, steps=int(complete[-1].split("-")[1]) + 5, schedule={"total_steps": 400},
                          distributed={"timeout_s": 10, "strategy": strategy}, checkpoint={"every": 5})
    train(recipe, 2, "--resume")


def test_ranks_with_different_recipes_are_refused(data, tmp_path):
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recipe = write_recipe(data, tmp_path / "mismatch")
    procs = []
    for rank, extra in ((0, []), (1, ["--set", "optimizer.lr=0.1"])):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([PHI_BIN, "train", "--config", str(recipe), *extra], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 1 for p in procs)
    assert any("runs a different recipe" in e for e in errs), errs
