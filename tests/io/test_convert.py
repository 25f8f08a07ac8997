"""`phi convert` writes directories that transformers' from_pretrained loads back: dtype changes,
sharding, every family's weight names (Phi-3-small through its own grouped/interleaved layout)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import phi_forward, randomize_, run_phi  # noqa: E402

transformers = pytest.importorskip("transformers")
from safetensors.numpy import load_file  # noqa: E402
from safetensors.torch import load_file as load_torch_file  # noqa: E402


def make_model(tmp_path, family):
    torch.manual_seed(0)
    if family == "phi":
        config = transformers.PhiConfig(vocab_size=200, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, partial_rotary_factor=0.5)
        model = transformers.PhiForCausalLM(config).eval()
    else:
        config = transformers.Phi3Config(vocab_size=200, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, bos_token_id=1,
                                         eos_token_id=2, pad_token_id=0)
        model = transformers.Phi3ForCausalLM(config).eval()
    randomize_(model, scale=0.05)
    model.save_pretrained(tmp_path / "src", safe_serialization=True)
    return model, tmp_path / "src"


def load_hf(path, cls, dtype):
    return cls.from_pretrained(path, dtype=dtype).eval()


@pytest.mark.parametrize("family", ["phi", "phi3"])
@pytest.mark.parametrize("dtype,torch_dtype", [("bf16", torch.bfloat16), ("f16", torch.float16), ("f32", torch.float32)])
def test_convert_round_trips_through_transformers(tmp_path, family, dtype, torch_dtype):
    model, src = make_model(tmp_path, family)
    out = tmp_path / "out"
    run_phi("convert", "--from", src, "--to", out, "--dtype", dtype)
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == str(torch_dtype).split(".")[1]
    cls = type(model)
    loaded = load_hf(out, cls, torch_dtype)
    reference = {k: v.to(torch_dtype) for k, v in model.state_dict().items()}
    got = loaded.state_dict()
    assert set(got) == set(reference)
    for name, tensor in reference.items():
        assert got[name].dtype == torch_dtype, name
        assert torch.equal(got[name], tensor), name
    # The stored dtype is what was asked for.
    stored = load_torch_file(str(out / "model.safetensors"))
    assert all(v.dtype == torch_dtype for v in stored.values())


def test_convert_shards_and_transformers_loads_the_shards(tmp_path):
    model, src = make_model(tmp_path, "phi3")
    out = tmp_path / "sharded"
    run_phi("convert", "--from", src, "--to", out, "--dtype", "f32", "--max-shard-size", "20KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and not (out / "model.safetensors").exists()
    loaded = load_hf(out, transformers.Phi3ForCausalLM, torch.float32)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    # The engine reads the sharded directory too, with the same logits as the source.
    ids = [[3, 1, 4, 1, 5, 9, 2, 6]]
    np.testing.assert_array_equal(phi_forward(out, ids, tmp_path, name="a"), phi_forward(src, ids, tmp_path, name="b"))


def test_convert_phi3small_keeps_its_layout(tmp_path):
    test_dir = Path(__file__).resolve().parents[1] / "models"
    sys.path.insert(0, str(test_dir))
    from test_parity_phi3small import make_config, make_weights, write_model  # noqa: E402

    config = make_config()
    weights = make_weights(config)
    src = write_model(tmp_path, config, weights)
    out = tmp_path / "out"
    run_phi("convert", "--from", src, "--to", out, "--dtype", "f32")
    converted = load_file(str(out / "model.safetensors"))
    assert set(converted) == set(weights)
    for name, tensor in weights.items():
        np.testing.assert_array_equal(converted[name], tensor, err_msg=name)
    written = json.loads((out / "config.json").read_text())
    assert written["model_type"] == "phi3small"
    ids = [[5, 99999, 7, 100000, 42]]
    np.testing.assert_array_equal(phi_forward(out, ids, tmp_path, name="a"), phi_forward(src, ids, tmp_path, name="b"))


def test_convert_refuses_to_overwrite_its_source(tmp_path):
    _, src = make_model(tmp_path, "phi")
    before = (src / "model.safetensors").read_bytes()
    proc = run_phi("convert", "--from", src, "--to", src, check=False)
    assert proc.returncode != 0 and "same directory" in proc.stderr
    assert (src / "model.safetensors").read_bytes() == before
