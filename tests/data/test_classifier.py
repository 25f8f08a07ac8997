"""`phi data classify`: the phi-1 quality classifier. Its features (mean-pooled final hidden states)
equal transformers' on the same token ids, its logistic regression equals scikit-learn's
LogisticRegression fitted on the same features, and applied as a stage it separates held-out Python
files from prose; bad labels are named."""
import json
import random
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import assert_clean_failure, random_model_with_tokenizer, require_shared_data, run_phi  # noqa: E402


def corpora(rng, n_code, n_prose):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py"))
    rng.shuffle(files)
    code = []
    for p in files:
        text = p.read_text(encoding="utf-8", errors="replace")
        if len(text) > 800:
            code.append(text[:1500])
        if len(code) == n_code:
            break
    lines = [x for x in (require_shared_data() / "text" / "tinyshakespeare" / "input.txt").read_text().splitlines() if x]
    prose = []
    for _ in range(n_prose):
        start = rng.randrange(len(lines) - 40)
        prose.append("\n".join(lines[start:start + 25]))
    return code, prose


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("sklearn", reason="scikit-learn is the oracle")
    root = tmp_path_factory.mktemp("clf")
    model, model_dir = random_model_with_tokenizer(root, "phi2")
    rng = random.Random(0)
    code, prose = corpora(rng, 70, 70)
    train = [{"text": t, "label": 1} for t in code[:50]] + [{"text": t, "label": 0} for t in prose[:50]]
    rng.shuffle(train)
    (root / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    run_phi("data", "classify", "train", "--model", model_dir, "--labels", root / "labels.jsonl", "--output",
            root / "clf", "--max-tokens", "64", "--features-out", root / "features.safetensors", timeout=900)
    return {"root": root, "model": model, "model_dir": model_dir, "train": train,
            "held_out": [(t, 1) for t in code[50:]] + [(t, 0) for t in prose[50:]]}


def test_features_equal_transformers(trained):
    import torch
    from safetensors.numpy import load_file

    feats = load_file(str(trained["root"] / "features.safetensors"))
    ids = [json.loads(x) for x in (trained["root"] / "features.safetensors.ids.jsonl").read_text().splitlines()]
    assert feats["features"].shape == (100, 64) and len(ids) == 100 and max(len(x) for x in ids) == 64
    assert list(feats["labels"]) == [r["label"] for r in trained["train"]]
    with torch.no_grad():
        for i in range(0, 100, 7):
            hidden = trained["model"].model(torch.tensor([ids[i]])).last_hidden_state[0].mean(0).numpy()
            err = np.abs(hidden - feats["features"][i]).max() / np.abs(hidden).max()
            assert err < 1e-4, (i, err)


def test_logistic_regression_equals_sklearn(trained):
    from safetensors.numpy import load_file
    from sklearn.linear_model import LogisticRegression

    feats = load_file(str(trained["root"] / "features.safetensors"))
    X = feats["features"].astype(np.float64)
    y = feats["labels"]
    mean, std = X.mean(0), X.std(0)
    Xs = (X - mean) / std
    sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=100000).fit(Xs, y)
    ours = load_file(str(trained["root"] / "clf" / "classifier.safetensors"))
    np.testing.assert_allclose(ours["mean"], mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours["scale"], std, rtol=1e-9)
    p_sk = sk.predict_proba(Xs)[:, 1]
    p_ours = 1 / (1 + np.exp(-(Xs @ ours["weight"] + ours["bias"][0])))
    assert np.abs(p_sk - p_ours).max() < 1e-5, np.abs(p_sk - p_ours).max()
    assert np.abs(sk.coef_[0] - ours["weight"]).max() < 1e-3 * max(1.0, np.abs(sk.coef_).max())
    info = json.loads((trained["root"] / "clf" / "classifier.json").read_text())
    assert info["documents"] == 100 and info["positives"] == 50 and info["train_accuracy"] == pytest.approx(
        float(((p_ours >= 0.5) == y).mean()))


def test_apply_separates_held_out_code_from_prose(trained, tmp_path):
    held = trained["held_out"]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "d.jsonl").write_text(
        "".join(json.dumps({"id": f"h{i}", "text": t}) + "\n" for i, (t, _) in enumerate(held)))
    run_phi("data", "classify", "apply", "--classifier", trained["root"] / "clf", "--input", tmp_path / "in",
            "--output", tmp_path / "out", timeout=900)
    kept = {json.loads(x)["id"]: json.loads(x)["metadata"]["quality_score"]
            for x in (tmp_path / "out" / "00000.jsonl").read_text().splitlines()}
    removed = {json.loads(x)["id"]: json.loads(x) for x in (tmp_path / "out" / "removed.jsonl").read_text().splitlines()}
    assert set(kept) | set(removed) == {f"h{i}" for i in range(len(held))}
    assert all(s >= 0.5 for s in kept.values()) and all(r["reason"] == "low_quality" and r["quality_score"] < 0.5
                                                        for r in removed.values())
    correct = sum((f"h{i}" in kept) == (label == 1) for i, (_, label) in enumerate(held))
    assert correct >= 0.9 * len(held), correct


def test_bad_labels_are_named(tmp_path, trained):
    (tmp_path / "l.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 2}\n')
    proc = run_phi("data", "classify", "train", "--model", trained["model_dir"], "--labels", tmp_path / "l.jsonl",
                   "--output", tmp_path / "c", check=False)
    assert_clean_failure(proc, "l.jsonl:2", "label")
    (tmp_path / "l.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": true}\n')
    proc = run_phi("data", "classify", "train", "--model", trained["model_dir"], "--labels", tmp_path / "l.jsonl",
                   "--output", tmp_path / "c", check=False)
    assert_clean_failure(proc, "both classes")
    proc = run_phi("data", "classify", "apply", "--classifier", tmp_path / "nothing", "--input", tmp_path / "l.jsonl",
                   "--output", tmp_path / "o", check=False)
    assert_clean_failure(proc, "not a quality classifier")
