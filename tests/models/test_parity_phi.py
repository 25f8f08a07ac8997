"""phi-1/1.5/2 (PhiForCausalLM) parity: `phi forward` against transformers in float32 on CPU."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import phi_forward, randomize_, record, relative_error  # noqa: E402

transformers = pytest.importorskip("transformers")
TOLERANCE = 1e-4


def make_phi(tmp_path, **overrides):
    kwargs = dict(vocab_size=300, hidden_size=64, intermediate_size=256, num_hidden_layers=3,
                  num_attention_heads=4, max_position_embeddings=128, partial_rotary_factor=0.5,
                  layer_norm_eps=1e-5)
    kwargs.update(overrides)
    config = transformers.PhiConfig(**kwargs)
    torch.manual_seed(0)
    model = transformers.PhiForCausalLM(config).eval()
    randomize_(model, scale=0.05)
    model.save_pretrained(tmp_path / "model", safe_serialization=True)
    return model, tmp_path / "model"


def hf_logits(model, seq):
    with torch.no_grad():
        return model(torch.tensor([seq])).logits[0].float().numpy()


@pytest.mark.parametrize("rotary", [0.5, 0.25, 1.0])
def test_phi_matches_transformers(tmp_path, rotary):
    model, model_dir = make_phi(tmp_path, **({"partial_rotary_factor": rotary}))
    rng = np.random.default_rng(1)
    sequences = [rng.integers(0, 300, n).tolist() for n in (17, 5, 40, 1)]
    ours = phi_forward(model_dir, sequences, tmp_path)
    assert ours.shape == (4, 40, 300)
    worst = 0.0
    for b, seq in enumerate(sequences):
        ref = hf_logits(model, seq)
        err = relative_error(ours[b, : len(seq)], ref)
        worst = max(worst, err)
        assert err <= TOLERANCE, f"sequence {b}: relative error {err}"
        assert np.all(ours[b, len(seq):] == 0), "padding positions must be zero"
    record("phi", f"partial_rotary={rotary}", worst)


def test_phi_gqa_matches_transformers(tmp_path):
    model, model_dir = make_phi(tmp_path, num_key_value_heads=2)
    seq = np.random.default_rng(2).integers(0, 300, 33).tolist()
    err = relative_error(phi_forward(model_dir, [seq], tmp_path)[0], hf_logits(model, seq))
    record("phi", "gqa", err)
    assert err <= TOLERANCE
