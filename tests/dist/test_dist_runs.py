"""Multi-process training runs over Gloo on 127.0.0.1 beyond equivalence (tests/dist/test_ddp.py):
the memory estimate at scale; a 2-rank checkpoint resumed on 3 ranks and on 1, across strategies;
sharded checkpoints missing a shard; bf16 reduction and autocast under every strategy; SIGTERM; a
killed rank; ranks with different recipes."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import PHI_BIN, assert_same_run, losses, run_phi, train, write_recipe  # noqa: E402


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
