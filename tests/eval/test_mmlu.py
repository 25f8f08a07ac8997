"""`phi eval mmlu` against lm-evaluation-harness's HF backend on the same random phi-2 and Phi-3 models
and the same MMLU files: every question's choice identical, every log-likelihood within 1e-4.
lm-eval runs its own default mmlu template (its installed _default_template_yaml and subject yamls)
over the local files this test writes; nothing comes from the hub."""
import csv
import json
import math
import os
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import (assert_clean_failure, random_model_with_tokenizer, require_shared_data, run_phi,  # noqa: E402
                     start_server, stop_server)

pytest.importorskip("lm_eval", reason="lm-eval is the oracle (scripts/setup.sh installs it)")

SUBJECTS = ["abstract_algebra", "high_school_geography", "moral_scenarios"]
LIMIT = 12


def extract_mmlu(tmp_path, subjects=SUBJECTS):
    """The shared tarball's dev/test CSVs for `subjects` under tmp_path/mmlu."""
    tar_path = require_shared_data() / "eval" / "mmlu" / "mmlu_dev_test_reformatted.tar.gz"
    out = Path(tmp_path) / "mmlu_data"
    with tarfile.open(tar_path) as tar:
        members = [m for m in tar.getmembers() if any(f"/{s}_" in m.name for s in subjects)]
        tar.extractall(out, members=members, filter="data")
    return out / "mmlu"


def read_split(data_dir, subject, split):
    with open(data_dir / split / f"{subject}_{split}.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["question", "choice0", "choice1", "choice2", "choice3", "answer"]
    return [{"question": r[0], "subject": subject, "choices": r[1:5], "answer": int(r[5])} for r in rows[1:]]


def lm_eval_tasks(tmp_path, data_dir, subjects):
    """Local copies of lm-eval's own mmlu subject tasks reading JSON files (cais/mmlu's schema)."""
    import lm_eval
    import yaml

    default = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default"
    task_dir = Path(tmp_path) / "lm_eval_tasks"
    task_dir.mkdir()
    names = []
    for s in subjects:
        files = {}
        for split in ("dev", "test"):
            path = task_dir / f"{s}_{split}.jsonl"
            path.write_text("".join(json.dumps(d) + "\n" for d in read_split(data_dir, s, split)))
            files[split] = str(path)
        spec = yaml.safe_load((default / f"mmlu_{s}.yaml").read_text())
        spec.pop("tag", None)
        spec.update({"include": str(default / "_default_template_yaml"), "task": f"local_mmlu_{s}",
                     "dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": files}})
        (task_dir / f"local_mmlu_{s}.yaml").write_text(yaml.safe_dump(spec))
        names.append(f"local_mmlu_{s}")
    return task_dir, names


def run_lm_eval(model_dir, task_dir, names, shots, limit, model="hf", model_args=None):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    result = simple_evaluate(model=model, model_args=model_args or f"pretrained={model_dir},dtype=float32,device=cpu",
                             tasks=names, num_fewshot=shots, limit=limit, log_samples=True, batch_size=8,
                             task_manager=TaskManager(include_path=str(task_dir)))
    out = {}
    for name in names:
        subject = name[len("local_mmlu_"):]
        for sample in result["samples"][name]:
            lls = [float(r[0]) for r in sample["filtered_resps"]]
            out[(subject, sample["doc_id"])] = lls
    return out


@pytest.mark.parametrize("family", ["phi2", "phi3"])
def test_mmlu_matches_lm_eval(tmp_path, family):
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    data_dir = extract_mmlu(tmp_path)
    _, model_dir = random_model_with_tokenizer(tmp_path, family, max_position_embeddings=2048)
    if family == "phi3":
        # Phi-3's tokenizer_config.json says whether prompts start with <s>; both engines read it.
        (model_dir / "tokenizer_config.json").write_text(json.dumps(
            {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "<|endoftext|>",
             "unk_token": "<unk>"}))
    report, samples = tmp_path / "report.json", tmp_path / "samples.jsonl"
    run_phi("eval", "mmlu", "--model", model_dir, "--data", data_dir, "--shots", 5, "--subjects", ",".join(SUBJECTS),
            "--limit", LIMIT, "--batch-size", 5, "--output", report, "--samples", samples)
    ours = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(ours) == LIMIT * len(SUBJECTS)

    task_dir, names = lm_eval_tasks(tmp_path, data_dir, SUBJECTS)
    theirs = run_lm_eval(model_dir, task_dir, names, 5, LIMIT)
    assert len(theirs) == len(ours)
    worst = 0.0
    for s in ours:
        ref = theirs[(s["subject"], s["index"])]
        assert s["pred"] == max(range(4), key=lambda c: (ref[c], -c)), (s, ref)
        worst = max(worst, max(abs(a - b) for a, b in zip(s["loglikelihoods"], ref)))
        assert s["shots"] == 5 and not s["truncated"]
    assert worst < 1e-4, worst
    print(f"{family}: {len(ours)} questions, max |loglikelihood difference| {worst:.2e}")

    metrics = json.loads(report.read_text())["metrics"]
    for subject in SUBJECTS:
        hits = [s["pred"] == s["gold"] for s in ours if s["subject"] == subject]
        assert math.isclose(metrics["subjects"][subject]["acc"], sum(hits) / len(hits))
    assert math.isclose(metrics["acc"], sum(s["pred"] == s["gold"] for s in ours) / len(ours))


def to_hendrycks(data_dir, out_dir, subjects):
    """The same questions in Hendrycks' original form: no header, answers A-D."""
    for split in ("dev", "test"):
        (out_dir / split).mkdir(parents=True)
        for s in subjects:
            with open(out_dir / split / f"{s}_{split}.csv", "w", newline="") as f:
                w = csv.writer(f)
                for d in read_split(data_dir, s, split):
                    w.writerow([d["question"], *d["choices"], "ABCD"[d["answer"]]])


@pytest.fixture(scope="module")
def phi2_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mmlu_model")
    return random_model_with_tokenizer(tmp, "phi2", max_position_embeddings=2048)[1]


def test_original_format_same_samples_and_resume(tmp_path, phi2_model):
    data_dir = extract_mmlu(tmp_path)
    original = tmp_path / "hendrycks"
    to_hendrycks(data_dir, original, SUBJECTS)
    runs = {}
    for name, d in (("reformatted", data_dir), ("original", original)):
        samples = tmp_path / f"{name}.jsonl"
        run_phi("eval", "mmlu", "--model", phi2_model, "--data", d, "--subjects", ",".join(SUBJECTS), "--limit", 6,
                "--output", tmp_path / f"{name}.json", "--samples", samples)
        runs[name] = [json.loads(line) for line in samples.read_text().splitlines()]
        assert not (tmp_path / f"{name}.json.cache").exists()  # removed once the report is written
    assert runs["reformatted"] == runs["original"]

    # A run killed after its first subject resumes from the cache: that subject is not scored again
    # and the samples equal the uninterrupted run's.
    cache = tmp_path / "resume.cache"
    first = tmp_path / "first.jsonl"
    run_phi("eval", "mmlu", "--model", phi2_model, "--data", data_dir, "--subjects", SUBJECTS[0], "--limit", 6,
            "--samples", first, "--cache", cache)
    # (an explicit --cache is kept: this one now holds what a run killed after its first subject leaves)
    assert (cache / "fingerprint.json").exists() and (cache / f"{SUBJECTS[0]}.jsonl").exists()
    report = tmp_path / "resumed.json"
    run_phi("eval", "mmlu", "--model", phi2_model, "--data", data_dir, "--subjects", ",".join(SUBJECTS), "--limit", 6,
            "--output", report, "--samples", tmp_path / "resumed.jsonl", "--cache", cache)
    timings = json.loads(report.read_text())["timings"]
    assert timings["questions_scored"] == 6 * (len(SUBJECTS) - 1)
    assert [json.loads(x) for x in (tmp_path / "resumed.jsonl").read_text().splitlines()] == runs["reformatted"]

    # A cache made with other settings is refused, not mixed in.
    stale = tmp_path / "stale.cache"
    run_phi("eval", "mmlu", "--model", phi2_model, "--data", data_dir, "--subjects", SUBJECTS[0], "--limit", 3,
            "--cache", stale)
    proc = run_phi("eval", "mmlu", "--model", phi2_model, "--data", data_dir, "--subjects", SUBJECTS[0], "--limit", 4,
                   "--cache", stale, check=False)
    assert_clean_failure(proc, "other settings", "fingerprint.json")


def test_long_prompts_drop_examples(tmp_path):
    """With a short context, examples are dropped from the front until the prompt fits; the report
    counts the questions that got fewer."""
    from transformers import AutoTokenizer

    data_dir = extract_mmlu(tmp_path, ["high_school_geography"])
    _, model_dir = random_model_with_tokenizer(tmp_path, "phi2", max_position_embeddings=300)
    report, samples = tmp_path / "r.json", tmp_path / "s.jsonl"
    run_phi("eval", "mmlu", "--model", model_dir, "--data", data_dir, "--subjects", "high_school_geography",
            "--limit", 20, "--output", report, "--samples", samples)
    lines = [json.loads(x) for x in samples.read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(model_dir)
    dev = read_split(data_dir, "high_school_geography", "dev")
    test = read_split(data_dir, "high_school_geography", "test")

    def prompt(k, q):
        def text(d):
            return d["question"].strip() + "".join(f"\n{'ABCD'[i]}. {c}" for i, c in enumerate(d["choices"])) + "\nAnswer:"
        head = "The following are multiple choice questions (with answers) about high school geography.\n\n"
        return head + "".join(text(d) + " " + "ABCD"[d["answer"]] + "\n\n" for d in dev[:k]) + text(q)

    fewer = 0
    for s in lines:
        k = s["shots"]
        assert len(tok.encode(prompt(k, test[s["index"]]))) == s["context_tokens"] <= 300
        if k < 5:
            fewer += 1
            assert len(tok.encode(prompt(k + 1, test[s["index"]]))) > 300
    assert fewer > 0
    assert json.loads(report.read_text())["prompts"]["questions_with_fewer_shots"] == fewer


def test_bad_inputs(tmp_path, phi2_model):
    data_dir = extract_mmlu(tmp_path, ["abstract_algebra"])
    proc = run_phi("eval", "mmlu", "--model", phi2_model, "--data", data_dir, "--subjects", "algebra", check=False)
    assert_clean_failure(proc, "unknown MMLU subject 'algebra'", "abstract_algebra")
    proc = run_phi("eval", "mmlu", "--model", phi2_model, "--data", data_dir, "--subjects", "abstract_algebra",
                   "--shots", 6, check=False)
    assert_clean_failure(proc, "6 examples", "has 5")
    broken = data_dir / "test" / "abstract_algebra_test.csv"
    broken.write_text(broken.read_text() + '"an unterminated question,1,2,3,4,0\n')
    proc = run_phi("eval", "mmlu", "--model", phi2_model, "--data", data_dir, "--subjects", "abstract_algebra",
                   check=False)
    assert_clean_failure(proc, "unterminated quoted field", "abstract_algebra_test.csv")
    broken.write_text("question,choice0,choice1,choice2,choice3,answer\nq,a,b,c,d,7\n")
    proc = run_phi("eval", "mmlu", "--model", phi2_model, "--data", data_dir, "--subjects", "abstract_algebra",
                   check=False)
    assert_clean_failure(proc, "answer '7' is not 0-3", "record 2")
    proc = run_phi("eval", "mmlu", "--model", phi2_model, "--data", tmp_path / "nowhere", "--subjects",
                   "abstract_algebra", check=False)
    assert_clean_failure(proc, "no dev file for MMLU subject abstract_algebra")


def test_lm_eval_local_completions_drives_phi_serve(tmp_path, phi2_model):
    """lm-eval's local-completions model (echo + logprobs requests) against `phi serve` chooses the
    same answers as `phi eval mmlu`, with the same log-likelihoods."""
    data_dir = extract_mmlu(tmp_path)
    subjects = SUBJECTS[:2]
    samples = tmp_path / "samples.jsonl"
    run_phi("eval", "mmlu", "--model", phi2_model, "--data", data_dir, "--subjects", ",".join(subjects),
            "--limit", 5, "--samples", samples)
    ours = {(s["subject"], s["index"]): s for s in map(json.loads, samples.read_text().splitlines())}
    task_dir, names = lm_eval_tasks(tmp_path, data_dir, subjects)
    proc, base = start_server(phi2_model, context=2048)
    try:
        theirs = run_lm_eval(phi2_model, task_dir, names, 5, 5, model="local-completions",
                             model_args=f"model=phi-test,base_url={base}/v1/completions,tokenizer={phi2_model},"
                                        "tokenizer_backend=huggingface,tokenized_requests=True,max_length=2048,"
                                        "num_concurrent=1,max_retries=1")
    finally:
        stop_server(proc)
    assert len(theirs) == len(ours) == 10
    for key, lls in theirs.items():
        s = ours[key]
        assert s["pred"] == max(range(4), key=lambda c: (lls[c], -c)), (s, lls)
        assert max(abs(a - b) for a, b in zip(s["loglikelihoods"], lls)) < 1e-4
