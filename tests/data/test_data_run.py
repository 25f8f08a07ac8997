"""`phi data run` with data_recipes/phi1-python.json on a slice of this machine's Python standard
library: every stage in order, a planted HumanEval solution removed by decontamination, the mixture
read by a tiny phi-1 pretraining run; a run killed at random moments (SIGKILL, three times) and
resumed gives byte-identical outputs; two tasks splitting the files give the same outputs as one;
bad recipes are named."""
import json
import os
import random
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import (PHI_BIN, REPO, assert_clean_failure, random_model_with_tokenizer, require_shared_data,  # noqa: E402
                     run_phi, start_server, stop_server, tokenizer_dirs)

RECIPE = REPO / "data_recipes" / "phi1-python.json"
STAGES = ["import", "filter", "exact", "near", "decontaminate", "annotate", "classify", "tokens", "synth", "synth_exact",
          "synth_decontaminate", "synth_tokens", "mix"]


class Rater(BaseHTTPRequestHandler):
    """A stand-in rater with a fixed rule: a file with at least three functions is worth 8, others 3."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant",
                                                                 "content": "8" if prompt.count("def ") >= 3 else "3"}}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The recipe's inputs: a slice of the standard library plus a planted HumanEval solution, phi-1's
    tokenizer, and `phi serve` with a small random phi-2-shaped model as the teacher (greedy, one
    request at a time: its answers are the same on every run)."""
    shared = require_shared_data()
    root = tmp_path_factory.mktemp("run")
    _, teacher = random_model_with_tokenizer(root / "teacher", "phi2")
    server, url = start_server(teacher)
    rater = ThreadingHTTPServer(("127.0.0.1", 0), Rater)
    rater.daemon_threads = True
    threading.Thread(target=rater.serve_forever, daemon=True).start()
    tok = tokenizer_dirs(root / "tok")["phi2"]  # phi-1's tokenizer: GPT-2 BPE + CodeGen whitespace tokens
    import gzip
    problem = json.loads(gzip.open(shared / "eval" / "humaneval" / "HumanEval.jsonl.gz", "rt").readline())
    extra = root / "extra"
    extra.mkdir()
    (extra / "solution.py").write_text(problem["prompt"] + problem["canonical_solution"])
    (extra / "copy_of_solution.py").write_text(problem["prompt"] + problem["canonical_solution"])
    env = dict(os.environ, PHI_PY_STDLIB=sysconfig.get_paths()["stdlib"], PHI1_TOKENIZER=str(tok),
               PHI_TEACHER_URL=url + "/v1", PHI_TEACHER_MODEL="phi-test",
               PHI_RATER_URL=f"http://127.0.0.1:{rater.server_address[1]}/v1", PHI_RATER_MODEL="rater",
               PHI_CLASSIFIER_MODEL=str(teacher))
    evals = json.dumps([str(shared / "eval" / "humaneval"), str(shared / "eval" / "mbpp")])
    sets = ["--set", f"import.from={json.dumps([env['PHI_PY_STDLIB'], str(extra)])}",
            "--set", "import.files_per_shard=40", "--set", f"decontaminate.eval={evals}",
            "--set", f"synth_decontaminate.eval={evals}", "--set", "synth.count=12", "--set", "synth.max_tokens=24",
            "--set", "synth.concurrency=1", "--set", "synth.temperature=0", "--set", "synth.documents_per_shard=4",
            "--set", "annotate.every=3", "--set", "classify.max_tokens=64"]
    yield {"env": env, "sets": sets, "root": root, "problem": problem}
    stop_server(server)
    rater.shutdown()


def data_run(setup, out, *extra, max_files=160, check=True, popen=False):
    args = [PHI_BIN, "data", "run", "--recipe", str(RECIPE), "--output", str(out), *setup["sets"],
            "--set", f"import.max_files={max_files}", *extra]
    if popen:
        return subprocess.Popen(args, env=setup["env"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proc = subprocess.run(args, env=setup["env"], capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def snapshot(out):
    """Every output file's bytes, stats.json without its timings, this run's request counts and
    dedup's memory figures (those of the task that finished, which depend on the split);
    temporaries would show up here."""
    files = {}
    for p in sorted(Path(out).rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(out).as_posix()
        if p.name == "stats.json":
            s = json.loads(p.read_text())
            for k in ("seconds", "documents_per_second", "megabytes_per_second", "this_run", "memory"):
                s.pop(k, None)
            files[rel] = json.dumps(s, sort_keys=True).encode()
        else:
            files[rel] = p.read_bytes()
    return files


@pytest.fixture(scope="module")
def reference(setup):
    out = setup["root"] / "reference"
    proc = data_run(setup, out)
    return out, proc


def test_recipe_runs_every_stage_and_trains(setup, reference, tmp_path):
    out, proc = reference
    stats = {s: json.loads((out / s / "stats.json").read_text()) for s in STAGES[:7] + STAGES[8:11]}
    assert stats["import"]["documents_in"] == 162 and stats["import"]["documents_out"] >= 100
    assert stats["import"]["documents_out"] + stats["import"]["removed"]["empty"] == 162  # empty __init__.py files
    assert stats["filter"]["documents_in"] == stats["import"]["documents_out"]
    for a, b in zip(STAGES[:4], STAGES[1:5]):
        assert stats[b]["documents_in"] == stats[a]["documents_out"], (a, b)
    assert stats["exact"]["removed"]["duplicate"] >= 1  # the two copies of the solution
    removed = [json.loads(x) for x in (out / "decontaminate" / "removed.jsonl").read_text().splitlines()]
    assert [r["eval_item"] for r in removed if r["id"].startswith("extra/")] == [
        "HumanEval.jsonl.gz:" + setup["problem"]["task_id"]], removed
    # A third of the files rated; the classifier trained on those labels keeps the files it scores >= 0.5.
    assert stats["annotate"]["documents_in"] == sum((n + 2) // 3 for n in (
        len((out / "decontaminate" / f).read_text().splitlines()) for f in sorted(os.listdir(out / "decontaminate"))
        if f.endswith(".jsonl") and f[0].isdigit()))
    labels = [json.loads(x)["metadata"]["label"] for f in sorted((out / "annotate").glob("0*.jsonl"))
              for x in f.read_text().splitlines()]
    assert 0 < sum(labels) < len(labels)
    assert stats["classify"]["documents_in"] == stats["decontaminate"]["documents_out"]
    assert 0 < stats["classify"]["documents_out"] < stats["classify"]["documents_in"]
    info = json.loads((out / "classify" / "classifier" / "classifier.json").read_text())
    assert info["documents"] == len(labels) and info["train_accuracy"] >= 0.8
    done = json.loads((out / "tokens" / "done.json").read_text())
    assert done["documents"] == stats["classify"]["documents_out"] and done["tokens"] > 20000
    assert stats["synth"]["documents_in"] == 12 and stats["synth"]["this_run"]["requests"] == 12
    assert stats["synth_exact"]["documents_in"] == stats["synth"]["documents_out"]
    synth_tokens = json.loads((out / "synth_tokens" / "done.json").read_text())["tokens"]
    mixture = json.loads((out / "mix" / "mixture.json").read_text())
    assert [m["epochs"] for m in mixture["sources"]] == [1, 2]
    assert [m["tokens"] for m in mixture["sources"]] == [done["tokens"], synth_tokens]
    assert mixture["tokens_per_pass"] == done["tokens"] + 2 * synth_tokens
    assert abs(mixture["sources"][1]["weight"] - 2 * synth_tokens / mixture["tokens_per_pass"]) < 1e-12
    recipe = json.loads((out / "recipe.json").read_text())
    assert [s["name"] for s in recipe["stages"]] == STAGES and recipe["stages"][1]["params"]["python"] is True
    # A second run has nothing to do.
    again = data_run(setup, out)
    assert again.stderr.count("nothing to do") >= 8, again.stderr[-2000:]

    run_phi("train", "--config", REPO / "configs" / "train" / "phi1-python-tiny.json",
            "--set", f"data.sources=\"{out / 'mix' / 'mixture.json'}\"", "--set", f"run.dir={tmp_path / 'train'}",
            "--set", "training.max_steps=4", "--set", "schedule.total_steps=4", "--set", "checkpoint.every=4",
            "--set", "model.set=[\"vocab_size=51200\", \"hidden_size=32\", \"intermediate_size=64\", \"n_layers=1\", \"n_heads=2\", \"n_kv_heads=2\", \"max_position_embeddings=256\"]",
            timeout=900)
    metrics = [json.loads(x) for x in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert losses and all(0 < x < 20 for x in losses)


def markers(out):
    """Progress markers a run leaves: each finished file of a stage (.parts/NNNNN.json) and each
    finished stage (stats.json, done.json)."""
    out = Path(out)
    if not out.exists():
        return 0
    return sum(1 for p in out.rglob("*.json") if p.parent.name == ".parts" or p.name in ("stats.json", "done.json"))


def test_killed_runs_resume_byte_identical(setup):
    """SIGKILL at three random points of a run over 1,200 files (after a random number of finished
    files, so the kills land mid-run however fast the machine is), each run resuming the last; then
    a run to the end. The reference is an uninterrupted run of the same recipe into the same
    directory (the stages record their input paths), moved aside."""
    out = setup["root"] / "killed"
    data_run(setup, out, max_files=1200)
    total = markers(out)
    ref_out = setup["root"] / "reference-large"
    out.rename(ref_out)
    rng = random.Random(11)
    kills = 0
    for target in sorted(rng.sample(range(2, total - 1), 3)):
        proc = data_run(setup, out, max_files=1200, popen=True)
        deadline = time.monotonic() + 300
        while proc.poll() is None and markers(out) < target and time.monotonic() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    data_run(setup, out, max_files=1200)
    assert kills >= 2, f"the runs finished before the kills ({total} markers)"
    ours, theirs = snapshot(out), snapshot(ref_out)
    assert sorted(ours) == sorted(theirs), set(ours) ^ set(theirs)
    differ = [k for k in ours if ours[k] != theirs[k]]
    assert not differ, differ


def test_two_tasks_equal_one(setup, reference):
    ref_out, _ = reference
    out = setup["root"] / "tasks"
    data_run(setup, out)  # the reference, into the same directory (the stages record their input paths)
    theirs = snapshot(out)
    import shutil
    shutil.rmtree(out)
    procs = [data_run(setup, out, "--tasks", "2", "--task-index", str(i), "--wait", "300", popen=True) for i in (1, 0)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    ours = snapshot(out)
    assert sorted(ours) == sorted(theirs), set(ours) ^ set(theirs)
    differ = [k for k in ours if ours[k] != theirs[k]]
    assert not differ, differ


def test_bad_recipes_are_named(setup, tmp_path):
    recipe = json.loads(RECIPE.read_text())
    cases = []
    r = json.loads(json.dumps(recipe))
    r["stages"][1]["rulez"] = "code"
    cases.append((r, ["rulez", "$.stages[1]"]))
    r = json.loads(json.dumps(recipe))
    r["stages"][1]["params"]["max_line_lenght"] = 10
    cases.append((r, ["max_line_lenght", "$.stages[1].params"]))
    r = json.loads(json.dumps(recipe))
    r["stages"][2]["stage"] = "classify-me"
    cases.append((r, ["classify-me", "$.stages[2]"]))
    r = json.loads(json.dumps(recipe))
    r["stages"][0]["from"] = ["${PHI_NO_SUCH_VARIABLE}"]
    cases.append((r, ["PHI_NO_SUCH_VARIABLE", "$.stages[0].from[0]"]))
    for i, (bad, fragments) in enumerate(cases):
        path = tmp_path / f"bad{i}.json"
        path.write_text(json.dumps(bad))
        proc = subprocess.run([PHI_BIN, "data", "run", "--recipe", str(path), "--output", str(tmp_path / f"o{i}")],
                              env=setup["env"], capture_output=True, text=True, timeout=120)
        assert_clean_failure(proc, *fragments)
        assert not (tmp_path / f"o{i}" / "import").exists()  # checked before anything ran


@pytest.mark.parametrize("name", ["phi1.5-web.json", "phi3-web.json"])
def test_full_scale_recipes_check(tmp_path, name):
    """The papers' recipes parse and resolve (--dry-run), given the inputs their comments name."""
    topics = tmp_path / "topics.txt"
    topics.write_text("photosynthesis\nprime numbers\nthe French revolution\n")
    env = dict(os.environ, WEB_JSONL=str(tmp_path / "web"), PHI1_CODE=str(tmp_path / "code"), TOPICS_20K=str(topics),
               TOPICS=str(topics), PHI_TEACHER_URL="http://127.0.0.1:1/v1", PHI_TEACHER_MODEL="teacher",
               PHI1_TOKENIZER=str(tmp_path / "tok"), PHI3_TOKENIZER=str(tmp_path / "tok"),
               PHI_EVAL_DIR=str(tmp_path / "eval"), PHI_RATER_URL="http://127.0.0.1:1/v1", PHI_RATER_MODEL="rater",
               PHI_CLASSIFIER_MODEL=str(tmp_path / "feature-model"))
    proc = subprocess.run([PHI_BIN, "data", "run", "--recipe", str(REPO / "data_recipes" / name), "--output",
                           str(tmp_path / "out"), "--dry-run"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resolved = json.loads(proc.stdout)
    mixes = [s for s in resolved["stages"] if s["stage"] == "mix"]
    assert mixes and all(abs(sum(x["weight"] for x in m["sources"]) - 1) < 1e-9 for m in mixes)
    assert any(s["stage"] == "synth" and s["topics"] == ["photosynthesis", "prime numbers", "the French revolution"]
               for s in resolved["stages"])
    assert any(s["stage"] == "classify" and s["labels"] == "web_annotate" for s in resolved["stages"])
    assert not (tmp_path / "out").exists()  # nothing ran
