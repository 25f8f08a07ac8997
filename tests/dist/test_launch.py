"""Multi-process plumbing on 127.0.0.1 with Gloo: `phi launch`, torchrun and Slurm-style launches
run `phi dist check` (every collective verified on every rank); a rank that dies makes the others
stop within the timeout with an error naming the collective; a rank that never arrives fails the
rendezvous within the timeout; torchrun's error file names the failing rank."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import PHI_BIN  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank, world, port, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC_"))}
    env.update({"RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    env.update(extra)
    return env


def test_phi_launch_runs_every_collective():
    proc = subprocess.run([PHI_BIN, "launch", "--nproc", "3", "--", "dist", "check", "--elements", "100000"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "3 ranks (gloo, torchrun), every collective correct" in proc.stdout


def test_torchrun_launches_phi_without_python(tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun is not installed in this Python")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "MASTER_"))}
    proc = subprocess.run([str(torchrun), "--no-python", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                           "--master-port", str(free_port()), PHI_BIN, "dist", "check", "--elements", "1000"],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 ranks (gloo, torchrun), every collective correct" in proc.stdout


def test_slurm_variables():
    port = free_port()
    procs = []
    for rank in range(2):
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR")}
        env.update({"SLURM_PROCID": str(rank), "SLURM_NTASKS": "2", "SLURM_LOCALID": str(rank),
                    "SLURM_NODELIST": "localhost", "MASTER_PORT": str(port)})
        procs.append(subprocess.Popen([PHI_BIN, "dist", "check", "--elements", "1000", "--timeout", "30"], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "2 ranks (gloo, slurm), every collective correct" in outs[0][0]


def test_a_dead_rank_stops_the_others_within_the_timeout(tmp_path):
    port = free_port()
    error_file = tmp_path / "error.json"
    others = [subprocess.Popen([PHI_BIN, "dist", "check", "--timeout", "10"], env=rank_env(r, 3, port),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 2)]
    start = time.monotonic()
    dead = subprocess.run([PHI_BIN, "dist", "check", "--simulate-failure-rank", "1", "--timeout", "10"],
                          env=rank_env(1, 3, port), capture_output=True, text=True, timeout=60)
    assert dead.returncode == 3
    for p in others:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 1, err
        assert "failed" in err and "on rank" in err and "of 3" in err and "another rank died" in err, err
    assert time.monotonic() - start < 30

    # The launcher stops the others and names the failing rank with its exit code and log.
    proc = subprocess.run([PHI_BIN, "launch", "--nproc", "3", "--log-dir", str(tmp_path / "logs"), "--", "dist", "check",
                           "--simulate-failure-rank", "2", "--timeout", "10"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    assert "rank 2 failed first (exit code 3)" in proc.stderr and "exits on purpose" in proc.stderr

    # A rank that never arrives: the rendezvous fails within the timeout.
    start = time.monotonic()
    alone = subprocess.run([PHI_BIN, "dist", "check", "--timeout", "3"],
                           env=rank_env(0, 2, free_port(), TORCHELASTIC_ERROR_FILE=str(error_file)),
                           capture_output=True, text=True, timeout=60)
    assert alone.returncode == 1 and "could not meet the others" in alone.stderr, alone.stderr
    assert time.monotonic() - start < 30
    record = json.loads(error_file.read_text())
    assert "rank 0" in record["message"]["message"] and "could not meet" in record["message"]["message"]
