"""Phi-3.5-mini and Phi-4-mini against transformers (float32, CPU), in both directions:
a random transformers model read by the engine, and a model the engine writes from the preset
(`phi init --preset ... --set <small sizes>`) read by transformers. docs/phi4_mini.md lists what
differs from Phi-3-mini; the checks here are those differences (LongRoPE sets, partial rotary 0.75,
GQA, tied embeddings, an o200k-sized vocabulary, the family each config.json is recognised as)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import REPO, phi_forward, record, relative_error, run_phi, save_random_hf_model  # noqa: E402

transformers = pytest.importorskip("transformers")
from safetensors import safe_open  # noqa: E402

TOLERANCE = 1e-4
O200K_VOCAB = 200064  # Phi-4-mini's (padded) vocabulary


def preset(name):
    return json.loads((REPO / "configs" / "models" / f"{name}.json").read_text())


def every_nth(values, count):
    """`count` of a published factor list, evenly spaced, for a small model's rotary width."""
    idx = np.linspace(0, len(values) - 1, count).round().astype(int)
    return [float(values[i]) for i in idx]


def hf_logits(model, seq):
    with torch.no_grad():
        return model(torch.tensor([seq])).logits[0].float().numpy()


def compare(model, model_dir, tmp_path, vocab, lengths, family, case, seed=5):
    rng = np.random.default_rng(seed)
    worst = 0.0
    for i, n in enumerate(lengths):  # one call each: LongRoPE picks its factor set per forward
        seq = rng.integers(0, vocab, n).tolist()
        err = relative_error(phi_forward(model_dir, [seq], tmp_path, name=f"{case}{i}")[0], hf_logits(model, seq))
        worst = max(worst, err)
        assert err <= TOLERANCE, f"{case}, length {n}: relative error {err}"
    record(family, case, worst)


def family_of(model_dir):
    return json.loads(run_phi("info", "--model", model_dir, "--json").stdout)["family"]


def small_hf_model(tmp_path, name, **kwargs):
    return save_random_hf_model(tmp_path / name, transformers.Phi3Config(**kwargs)), tmp_path / name


def phi35_small_kwargs():
    """Phi-3.5-mini's published config at a small size: MHA, full rotary, its own LongRoPE sets."""
    p = preset("phi-3.5-mini")
    half = 8  # head_dim 16
    return dict(vocab_size=p["vocab_size"], hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                original_max_position_embeddings=32, rms_norm_eps=p["norm_eps"], sliding_window=p["sliding_window"],
                rope_scaling={"type": "longrope", "short_factor": every_nth(p["long_rope"]["short_factor"], half),
                              "long_factor": every_nth(p["long_rope"]["long_factor"], half)},
                bos_token_id=p["bos_token_id"], eos_token_id=p["eos_token_id"], pad_token_id=p["pad_token_id"])


def phi4mini_small_kwargs():
    """Phi-4-mini's published config at a small size: GQA 4q/2kv, partial rotary 0.75 (12 of 16
    dims), tied embeddings, the o200k-sized vocabulary, LongRoPE sets of rotary_dim/2 values."""
    p = preset("phi-4-mini")
    half = 6
    return dict(vocab_size=O200K_VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                original_max_position_embeddings=32, partial_rotary_factor=p["rotary_dim"] / p["head_dim"],
                tie_word_embeddings=True, rms_norm_eps=p["norm_eps"], sliding_window=p["sliding_window"],
                rope_scaling={"type": "longrope", "short_factor": every_nth(p["long_rope"]["short_factor"], half),
                              "long_factor": every_nth(p["long_rope"]["long_factor"], half)},
                bos_token_id=p["bos_token_id"], eos_token_id=p["eos_token_id"], pad_token_id=p["pad_token_id"])


def test_phi35_mini_random_model_matches_transformers(tmp_path):
    kwargs = phi35_small_kwargs()
    model, model_dir = small_hf_model(tmp_path, "phi35", **kwargs)
    assert family_of(model_dir) == "phi3"
    # 20 tokens fit the original context (short factors); 70 exceed it (long factors).
    compare(model, model_dir, tmp_path, kwargs["vocab_size"], (20, 70), "phi3.5-mini", "longrope short+long")


def test_phi4_mini_random_model_matches_transformers(tmp_path):
    kwargs = phi4mini_small_kwargs()
    model, model_dir = small_hf_model(tmp_path, "phi4mini", **kwargs)
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        assert "lm_head.weight" not in f.keys()  # tied: transformers does not store it
    assert family_of(model_dir) == "phi4-mini"
    compare(model, model_dir, tmp_path, O200K_VOCAB, (9, 20, 70), "phi4-mini",
            "partial rotary 0.75 + gqa + tied + longrope")


def test_phi4_mini_config_json_as_published_is_recognised(tmp_path):
    """The published config.json's keys (model_type phi3 plus mlp_bias, lm_head_bias,
    full_attn_mod, interpolate_factor) load without warnings as the phi4-mini family, with the
    preset's numbers."""
    p = preset("phi-4-mini")
    published = {
        "architectures": ["Phi3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 199999, "embd_pdrop": 0.0, "eos_token_id": 199999, "full_attn_mod": 1,
        "hidden_act": "silu", "hidden_size": 3072, "initializer_range": 0.02, "intermediate_size": 8192,
        "interpolate_factor": 1, "lm_head_bias": False, "max_position_embeddings": 131072, "mlp_bias": False,
        "model_type": "phi3", "num_attention_heads": 24, "num_hidden_layers": 32, "num_key_value_heads": 8,
        "original_max_position_embeddings": 4096, "pad_token_id": 199999, "partial_rotary_factor": 0.75,
        "resid_pdrop": 0.0, "rms_norm_eps": 1e-05,
        "rope_scaling": {"long_factor": p["long_rope"]["long_factor"], "short_factor": p["long_rope"]["short_factor"],
                         "type": "longrope"},
        "rope_theta": 10000.0, "sliding_window": 262144, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "transformers_version": "4.45.0", "use_cache": True, "vocab_size": 200064}
    model_dir = tmp_path / "published"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(published))
    proc = run_phi("info", "--model", model_dir, "--json")
    assert "not used by phi-engine" not in proc.stderr, proc.stderr
    ours = json.loads(proc.stdout)
    from_preset = json.loads(run_phi("info", "--preset", "phi-4-mini", "--json").stdout)
    assert ours["family"] == "phi4-mini"
    assert ours["parameters"] == from_preset["parameters"]
    # transformers' own count for the same config (tied: the embedding is counted once).
    with torch.device("meta"):
        hf = transformers.Phi3ForCausalLM(transformers.Phi3Config(**published))
    assert ours["parameters"] == sum(p.numel() for p in hf.parameters())


@pytest.mark.parametrize("name,small", [
    ("phi-3.5-mini", ["n_layers=2", "hidden_size=64", "intermediate_size=96", "n_heads=4", "n_kv_heads=4",
                      "head_dim=16", "rotary_dim=16", "max_position_embeddings=256",
                      "long_rope.original_max_position_embeddings=32"]),
    ("phi-4-mini", ["n_layers=2", "hidden_size=64", "intermediate_size=96", "n_heads=4", "n_kv_heads=2",
                    "head_dim=16", "rotary_dim=12", "max_position_embeddings=256",
                    "long_rope.original_max_position_embeddings=32"]),
])
def test_engine_written_model_loads_in_transformers(tmp_path, name, small):
    """`phi init` from the preset writes config.json + safetensors that transformers loads as the
    same model (tied embeddings and partial rotary preserved) and that give the same logits."""
    p = preset(name)
    half = int(small[6].split("=")[1]) // 2
    factors = [f"long_rope.short_factor={json.dumps(every_nth(p['long_rope']['short_factor'], half))}",
               f"long_rope.long_factor={json.dumps(every_nth(p['long_rope']['long_factor'], half))}"]
    out = tmp_path / "written"
    run_phi("init", "--preset", name, "--output", out, "--seed", "3", "--init-std", "0.05",
            *sum((["--set", s] for s in small + factors), []))
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "phi3"
    assert config["tie_word_embeddings"] == p.get("tie_embeddings", False)
    model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert model.config.vocab_size == p["vocab_size"]
    if p.get("tie_embeddings"):
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    compare(model, out, tmp_path, p["vocab_size"], (20, 70), name, "engine-written, read by transformers")
