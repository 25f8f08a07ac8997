"""The `phi` CLI: help for every command, `phi info`, and bad input giving a clear error naming what
is wrong and where, a non-zero exit and no crash."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import REPO, assert_clean_failure, run_phi  # noqa: E402


@pytest.mark.parametrize("command,options", [
    ([], ["info", "forward", "convert", "init", "tokenizer", "generate", "chat", "serve", "data", "train", "eval"]),
    (["tokenizer", "encode"], ["--model", "--text", "--input", "--jsonl", "--add-special"]),
    (["tokenizer", "train"], ["--kind", "--vocab-size", "--input", "--output"]),
    (["generate"], ["--model", "--input", "--output", "--temperature", "--top-p", "--min-p", "--seed", "--stop"]),
    (["chat"], ["--model", "--system", "--chat-template", "--max-new-tokens"]),
    (["serve"], ["--model", "--port", "--max-batch", "--max-tokens-limit", "--max-request-bytes"]),
    (["data", "tokenize"], ["--tokenizer", "--input", "--output", "--shard-tokens"]),
    (["train"], ["--config", "--set", "--resume", "--dry-run"]),
    (["info"], ["--preset", "--model", "--json", "--set"]),
    (["forward"], ["--model", "--input", "--output", "--device", "--dtype", "--set", "--attention", "--kernels",
                   "--flash-kernel"]),
    (["serve"], ["--attention", "--kernels", "--flash-kernel", "--special-tokens-in-content"]),
    (["convert"], ["--from", "--to", "--dtype", "--max-shard-size"]),
])
def test_help_describes_every_option(command, options):
    proc = run_phi(*command, "--help")
    for option in options:
        assert option in proc.stdout, f"{option} missing from `phi {' '.join(command)} --help`"


def test_info_phi3_mini_parameter_count():
    proc = run_phi("info", "--preset", "phi-3-mini-4k")
    assert "3,821,079,552" in proc.stdout
    info = json.loads(run_phi("info", "--preset", "phi-3-mini-4k", "--json").stdout)
    assert info["parameters"] == 3821079552
    assert info["bytes"]["bfloat16"] == 2 * 3821079552
    assert info["kv_cache_bytes_per_token"]["bfloat16"] == 2 * 32 * 32 * 96 * 2


def test_info_every_preset():
    for path in sorted((REPO / "configs" / "models").glob("*.json")):
        info = json.loads(run_phi("info", "--preset", path.stem, "--json").stdout)
        assert info["parameters"] > 0, path.stem


def test_info_model_directory_and_overrides(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    config = {"model_type": "phi3", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
    (model / "config.json").write_text(json.dumps(config))
    two = json.loads(run_phi("info", "--model", model, "--json").stdout)["parameters"]
    one = json.loads(run_phi("info", "--model", model, "--json", "--set", "num_hidden_layers=1").stdout)["parameters"]
    per_layer = 32 * (32 + 2 * 16) + 32 * 32 + 2 * 64 * 32 + 32 * 64 + 2 * 32
    assert two - one == per_layer


def test_unknown_preset_lists_the_presets():
    assert_clean_failure(run_phi("info", "--preset", "phi-9", check=False), "unknown preset \"phi-9\"", "phi-3-mini-4k")


def test_own_config_with_unknown_key_names_path(tmp_path):
    preset = json.loads((REPO / "configs" / "models" / "tiny-phi3.json").read_text())
    preset["n_layer"] = 3
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(preset))
    assert_clean_failure(run_phi("info", "--model", model, check=False), "unknown key $.n_layer", "config.json")


def test_malformed_config_json(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "phi3", "vocab_size": ')
    assert_clean_failure(run_phi("info", "--model", model, check=False), "malformed JSON", "config.json")


def test_wrong_type_in_hf_config(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "phi3", "vocab_size": "many"}))
    assert_clean_failure(run_phi("info", "--model", model, check=False), "$.vocab_size must be an integer")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch
    transformers = pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("tiny") / "model"
    config = transformers.Phi3Config(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, max_position_embeddings=16, bos_token_id=1,
                                     eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    transformers.Phi3ForCausalLM(config).save_pretrained(path, safe_serialization=True)
    return path


@pytest.mark.parametrize("ids,fragments", [
    ("[[1, 2], [3, ", ["malformed JSON"]),
    ("[]", ["$ must be a non-empty array"]),
    ("[[1, 2], 5]", ["$[1] must be a non-empty array"]),
    ("[[1, 2, 77]]", ["$[0][2] = 77 is not a token id in [0, 50)"]),
    ("[[1, -2]]", ["$[0][1] = -2"]),
    ("[[1.5]]", ["$[0][0] = 1.5"]),
    (json.dumps([list(range(1, 18))]), ["$[0] has 17 tokens, more than the model's context of 16"]),
])
def test_forward_rejects_bad_ids(tiny_model, tmp_path, ids, fragments):
    ids_path = tmp_path / "ids.json"
    ids_path.write_text(ids)
    out = tmp_path / "out.safetensors"
    proc = run_phi("forward", "--model", tiny_model, "--input", ids_path, "--output", out, check=False)
    assert_clean_failure(proc, *fragments, str(ids_path))
    assert not out.exists()


def test_forward_bad_device_dtype_and_missing_model(tiny_model, tmp_path):
    ids_path = tmp_path / "ids.json"
    ids_path.write_text("[[1, 2]]")
    out = tmp_path / "o.safetensors"
    base = ["forward", "--input", ids_path, "--output", out]
    assert_clean_failure(run_phi(*base, "--model", tiny_model, "--dtype", "f8", check=False), "unknown dtype \"f8\"")
    assert_clean_failure(run_phi(*base, "--model", tiny_model, "--device", "tpu", check=False), "unknown device")
    assert_clean_failure(run_phi(*base, "--model", tmp_path / "nope", check=False), "no config.json")


@pytest.mark.parametrize("variable", ["PHI_ATTENTION", "PHI_KERNELS", "PHI_FLASH_KERNEL"])
def test_misspelt_kernel_switch_is_an_error(tiny_model, tmp_path, variable):
    import os
    import subprocess
    from phitest import PHI_BIN
    ids_path = tmp_path / "ids.json"
    ids_path.write_text("[[1, 2]]")
    env = dict(os.environ, **{variable: "fuzed"})
    proc = subprocess.run([PHI_BIN, "forward", "--model", str(tiny_model), "--input", str(ids_path), "--output",
                           str(tmp_path / "o.safetensors")], capture_output=True, text=True, timeout=120, env=env)
    assert_clean_failure(proc, f"{variable}=fuzed", "must be")


def test_forward_truncated_weights_keep_output_untouched(tiny_model, tmp_path):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    ids_path = tmp_path / "ids.json"
    ids_path.write_text("[[1, 2]]")
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"previous result")
    proc = run_phi("forward", "--model", broken, "--input", ids_path, "--output", out, check=False)
    assert_clean_failure(proc, "invalid safetensors file", "model.safetensors", "truncated")
    assert out.read_bytes() == b"previous result"


def test_missing_required_option_is_a_usage_error():
    proc = run_phi("forward", "--model", "x", check=False)
    assert proc.returncode != 0 and "--input" in proc.stderr


def test_kernel_options_take_their_values_and_win_over_the_environment(tiny_model, tmp_path):
    import os
    import subprocess
    from phitest import PHI_BIN
    ids_path = tmp_path / "ids.json"
    ids_path.write_text("[[1, 2]]")
    # A misspelt alias in the environment is still an error, even with an option given.
    env = dict(os.environ, PHI_ATTENTION="fused")
    for value in ("aten", "fused"):
        proc = subprocess.run([PHI_BIN, "forward", "--model", str(tiny_model), "--input", str(ids_path), "--output",
                               str(tmp_path / f"{value}.safetensors"), "--attention", value, "--kernels", value,
                               "--flash-kernel", "mma"], capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr
    proc = run_phi("forward", "--model", tiny_model, "--input", ids_path, "--output", tmp_path / "x.safetensors",
                   "--attention", "flash", check=False)
    assert proc.returncode != 0 and "--attention" in proc.stderr
