"""`phi eval perplexity` against transformers' sliding-window perplexity (the "Perplexity of
fixed-length models" guide, run here with the guide's own loop) on the same random models and text."""
import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import assert_clean_failure, random_model_with_tokenizer, require_shared_data, run_phi  # noqa: E402

torch = pytest.importorskip("torch")


def guide_perplexity(model, ids, max_length, stride):
    """The guide's loop verbatim (nll weighted by valid labels minus one), plus the exact per-token value."""
    seq_len = ids.size(1)
    nll_sum, n_tokens, prev_end_loc = 0.0, 0, 0
    exact_sum, exact_n = 0.0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc
        input_ids = ids[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids, labels=target_ids).loss
        num_valid_tokens = (target_ids != -100).sum().item()
        num_loss_tokens = num_valid_tokens - target_ids.size(0)
        nll_sum += loss.item() * num_loss_tokens
        n_tokens += num_loss_tokens
        scored = (target_ids[:, 1:] != -100).sum().item()
        exact_sum += loss.item() * scored
        exact_n += scored
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    return math.exp(nll_sum / n_tokens), math.exp(exact_sum / exact_n)


@pytest.mark.parametrize("family,seq_len,stride", [("phi2", 128, 48), ("phi3", 96, 96), ("phi3", 64, 17)])
def test_perplexity_matches_transformers(tmp_path, family, seq_len, stride):
    from transformers import AutoTokenizer

    text = (require_shared_data() / "text" / "tinyshakespeare" / "input.txt").read_text()[:6000]
    model, model_dir = random_model_with_tokenizer(tmp_path, family, max_position_embeddings=256)
    if family == "phi3":
        (model_dir / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True, "bos_token": "<s>"}))
    src = tmp_path / "text.txt"
    src.write_text(text)
    report = tmp_path / "ppl.json"
    samples = tmp_path / "windows.jsonl"
    run_phi("eval", "perplexity", "--model", model_dir, "--input", src, "--seq-len", seq_len, "--stride", stride,
            "--output", report, "--samples", samples)
    metrics = json.loads(report.read_text())["metrics"]
    windows = [json.loads(x) for x in samples.read_text().splitlines()]
    assert len(windows) == metrics["windows"] and sum(w["scored"] for w in windows) == metrics["scored_tokens"]
    nll = sum(w["nll"] * w["scored"] for w in windows) / metrics["scored_tokens"]
    assert abs(math.exp(nll) / metrics["perplexity_exact"] - 1) < 1e-9
    ids = torch.tensor([AutoTokenizer.from_pretrained(model_dir).encode(text)])
    assert metrics["tokens"] == ids.size(1)
    ppl, exact = guide_perplexity(model.float(), ids, seq_len, stride)
    assert abs(metrics["perplexity"] / ppl - 1) < 1e-4, (metrics["perplexity"], ppl)
    assert abs(metrics["perplexity_exact"] / exact - 1) < 1e-4, (metrics["perplexity_exact"], exact)
    print(f"{family} seq {seq_len} stride {stride}: phi {metrics['perplexity']:.6f} transformers {ppl:.6f}")


def test_perplexity_of_shards_and_resume(tmp_path):
    """A token-shard dataset gives the perplexity of its tokens; a run resumed from a cache of
    finished windows gives the same number."""
    text = (require_shared_data() / "text" / "tinyshakespeare" / "input.txt").read_text()[:4000]
    _, model_dir = random_model_with_tokenizer(tmp_path, "phi2", max_position_embeddings=256)
    src = tmp_path / "text.txt"
    src.write_text(text)
    shards = tmp_path / "shards"
    run_phi("data", "tokenize", "--tokenizer", model_dir, "--input", src, "--output", shards, "--no-eos")
    out = {}
    for name, source in (("text", src), ("shards", shards)):
        report = tmp_path / f"{name}.json"
        run_phi("eval", "perplexity", "--model", model_dir, "--input", source, "--seq-len", 64, "--output", report)
        out[name] = json.loads(report.read_text())["metrics"]
    assert out["text"]["tokens"] == out["shards"]["tokens"]
    assert out["text"]["perplexity"] == pytest.approx(out["shards"]["perplexity"], rel=1e-9)
    cache = tmp_path / "kept.cache"
    first = tmp_path / "first.json"
    run_phi("eval", "perplexity", "--model", model_dir, "--input", src, "--seq-len", 64, "--output", first,
            "--cache", cache)
    assert any(cache.glob("windows-*.jsonl"))
    again = tmp_path / "again.json"
    run_phi("eval", "perplexity", "--model", model_dir, "--input", src, "--seq-len", 64, "--output", again,
            "--cache", cache)
    assert json.loads(again.read_text())["metrics"] == json.loads(first.read_text())["metrics"]
    proc = run_phi("eval", "perplexity", "--model", model_dir, "--input", src, "--seq-len", 512, check=False)
    assert_clean_failure(proc, "--seq-len 512", "context of 256")
