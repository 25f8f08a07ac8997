"""Phi-3 mini/medium (Phi3ForCausalLM) parity: GQA, partial rotary, sliding window, LongRoPE with
sequences longer than the original context, against transformers in float32 on CPU."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import phi_forward, record, relative_error, save_random_hf_model  # noqa: E402

transformers = pytest.importorskip("transformers")
TOLERANCE = 1e-4
VOCAB = 320


def make_phi3(tmp_path, name="model", **overrides):
    kwargs = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    kwargs.update(overrides)
    return save_random_hf_model(tmp_path / name, transformers.Phi3Config(**kwargs)), tmp_path / name


def hf_logits(model, seq):
    with torch.no_grad():
        return model(torch.tensor([seq])).logits[0].float().numpy()


def check(model, model_dir, tmp_path, lengths, case, seed=3):
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(0, VOCAB, n).tolist() for n in lengths]
    worst = 0.0
    for i, seq in enumerate(sequences):  # one call each: LongRoPE picks factors per forward
        ours = phi_forward(model_dir, [seq], tmp_path, name=f"s{i}")[0]
        err = relative_error(ours, hf_logits(model, seq))
        worst = max(worst, err)
        assert err <= TOLERANCE, f"{case}, length {len(seq)}: relative error {err}"
    record("phi3", case, worst)


def test_phi3_gqa(tmp_path):
    model, model_dir = make_phi3(tmp_path)
    check(model, model_dir, tmp_path, (1, 9, 48), "gqa 4q/2kv")


def test_phi3_mha(tmp_path):
    model, model_dir = make_phi3(tmp_path, num_key_value_heads=4)
    check(model, model_dir, tmp_path, (12, 30), "mha")


def test_phi3_partial_rotary(tmp_path):
    model, model_dir = make_phi3(tmp_path, partial_rotary_factor=0.5)
    check(model, model_dir, tmp_path, (25,), "partial rotary 0.5")


def test_phi3_sliding_window(tmp_path):
    model, model_dir = make_phi3(tmp_path, sliding_window=8)
    check(model, model_dir, tmp_path, (6, 40), "sliding window 8")


def test_phi3_longrope_short_and_long(tmp_path):
    rng = np.random.default_rng(4)
    half = 8  # head_dim 16 -> 8 frequencies
    scaling = {"type": "longrope",
               "short_factor": (1.0 + rng.random(half)).tolist(),
               "long_factor": (1.0 + 8 * rng.random(half)).tolist()}
    model, model_dir = make_phi3(tmp_path, original_max_position_embeddings=32, rope_scaling=scaling)
    # 20 tokens fit the original context (short factors); 70 and 100 exceed it (long factors).
    check(model, model_dir, tmp_path, (20, 70, 100), "longrope short+long")


def test_phi3_batch_of_unequal_lengths_equals_single_runs(tmp_path):
    model, model_dir = make_phi3(tmp_path)
    rng = np.random.default_rng(5)
    sequences = [rng.integers(0, VOCAB, n).tolist() for n in (3, 27, 14, 1)]
    batched = phi_forward(model_dir, sequences, tmp_path, name="batch")
    for i, seq in enumerate(sequences):
        alone = phi_forward(model_dir, [seq], tmp_path, name=f"alone{i}")[0]
        np.testing.assert_allclose(batched[i, : len(seq)], alone, rtol=0, atol=1e-5)
        assert np.all(batched[i, len(seq):] == 0)
