"""Regression tests for the holes an outside probe found with hostile files and inputs: each is a
clear error (exit 1, naming the file or the value), never a crash, a hang or an
allocation of gigabytes."""
import json
import shutil
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import assert_clean_failure, random_model_with_tokenizer, run_phi, tokenizer_dirs  # noqa: E402


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return tokenizer_dirs(tmp_path_factory.mktemp("tok"))


def fails_cleanly(*args, fragments=(), timeout=300):
    """Runs phi and checks a clean failure. A hang fails through the timeout (a bound on the loop,
    not a speed check: speed lives in the benchmarks)."""
    proc = run_phi(*args, check=False, timeout=timeout)
    assert_clean_failure(proc, *fragments)
    return proc


HOSTILE_TEMPLATES = {
    "deep_if": "{% if true %}" * 20000 + "x" + "{% endif %}" * 20000,
    "deep_parens": "{{ " + "(" * 100000 + "1" + ")" * 100000 + " }}",
    "parens_past_the_depth_limit": "{{ " + "(" * 200 + "1" + ")" * 200 + " }}",
    "deep_not": "{{ " + "not " * 100000 + "true }}",
    "filter_chain": "{{ 'a'" + " | upper" * 200000 + " }}",
    "doubling_list": "{% set x = ['aaaaaaaa'] %}" + "{% set x = x + x %}" * 40 + "{{ x | length }}",
    "doubling_string": "{% set s = 'ab' %}" + "{% set s = s ~ s %}" * 45 + "{{ s }}",
    "nested_loops": "{% set l = [" + ",".join(["1"] * 200) + "] %}{% for a in l %}{% for b in l %}{% for c in l %}"
                    "{% for d in l %}x{% endfor %}{% endfor %}{% endfor %}{% endfor %}",
    "huge_number": "{{ 99999999999999999999999999 }}",
    "type_error": "{{ messages - 1 }}",
    "dangling_filter": "{{ messages | }}",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_TEMPLATES))
def test_hostile_chat_templates_are_errors_naming_the_template(dirs, tmp_path, name):
    model = tmp_path / "model"
    shutil.copytree(dirs["phi3"], model)
    config = model / "tokenizer_config.json"
    config.write_text(json.dumps({"chat_template": HOSTILE_TEMPLATES[name]}))
    fails_cleanly("tokenizer", "render-chat", "--model", model, "--messages",
                               json.dumps([{"role": "user", "content": "hi"}]), fragments=[str(config)])


def test_a_template_within_the_limits_still_renders(dirs, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(dirs["phi3"], model)
    nested = "{% if true %}" * 30 + "{{ ((((messages[0]['content'] | upper)))) }}" + "{% endif %}" * 30
    (model / "tokenizer_config.json").write_text(json.dumps({"chat_template": nested}))
    out = run_phi("tokenizer", "render-chat", "--model", model, "--messages", json.dumps([{"role": "user", "content": "hi"}]))
    assert out.stdout == "HI"


def test_zero_attention_heads_is_an_error_not_sigfpe(tmp_path):
    run_phi("init", "--preset", "tiny-phi3", "--output", tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["num_attention_heads"] = 0
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    for command in (("info", "--model", tmp_path / "m"),
                    ("forward", "--model", tmp_path / "m", "--input", tmp_path / "ids.json", "--output", tmp_path / "o")):
        (tmp_path / "ids.json").write_text("[[1, 2]]")
        fails_cleanly(*command, fragments=["num_attention_heads", "must be > 0", "config.json"])


def test_safetensors_header_length_one_byte_short_is_refused(tmp_path):
    run_phi("init", "--preset", "tiny-phi3", "--output", tmp_path / "m")
    path = tmp_path / "m" / "model.safetensors"
    raw = bytearray(path.read_bytes())
    (n,) = struct.unpack_from("<Q", raw, 0)
    assert raw[8 + n - 1:8 + n] == b" ", "the writer pads its header with spaces"
    struct.pack_into("<Q", raw, 0, n - 1)  # into the padding: the JSON still parses
    path.write_bytes(bytes(raw))
    (tmp_path / "ids.json").write_text("[[1, 2]]")
    fails_cleanly("forward", "--model", tmp_path / "m", "--input", tmp_path / "ids.json", "--output", tmp_path / "o",
                  fragments=["invalid safetensors file", "cover", str(path)])


@pytest.mark.parametrize("value,fragment", [("1000000000000", "hidden_size must be at most"),
                                            ("300000", "hidden_size must be at most"),
                                            ("65536", "more than this machine's")])
def test_absurd_model_sizes_are_refused_before_allocating(tmp_path, value, fragment):
    overrides = ["--set", f"hidden_size={value}", "--set", "intermediate_size=262144", "--set", "n_layers=64"]
    if value == "65536":
        overrides += ["--set", "n_heads=512", "--set", "n_kv_heads=512"]
    fails_cleanly("init", "--preset", "tiny-phi3", *overrides, "--output", tmp_path / "m", fragments=[fragment])
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_vocabulary_ids_far_beyond_the_vocabulary_are_refused(dirs, tmp_path):
    model = tmp_path / "bpe"
    shutil.copytree(dirs["gpt2"], model)
    vocab = json.loads((model / "vocab.json").read_text())
    vocab["Ġhostile"] = 100_000_000
    (model / "vocab.json").write_text(json.dumps(vocab))
    fails_cleanly("tokenizer", "encode", "--model", model, "--text", "x",
                               fragments=["100000000", "hostile", "vocab.json"])
    vocab["Ġhostile"] = -5
    (model / "vocab.json").write_text(json.dumps(vocab))
    fails_cleanly("tokenizer", "encode", "--model", model, "--text", "x", fragments=["-5"])


@pytest.mark.parametrize("added,fragment", [({"<|a|>": -1}, "outside"), ({"<|a|>": 32000, "<|b|>": 32000}, "same id"),
                                            ({"<|a|>": 10**12}, "outside")])
def test_bad_added_token_ids_are_refused(dirs, tmp_path, added, fragment):
    model = tmp_path / "spm"
    shutil.copytree(dirs["phi3"], model)
    (model / "added_tokens.json").write_text(json.dumps(added))
    fails_cleanly("tokenizer", "encode", "--model", model, "--text", "x",
                  fragments=[fragment, str(model / "added_tokens.json")])


def test_wrong_json_types_in_tokenizer_files_name_the_file(dirs, tmp_path):
    model = tmp_path / "spm"
    shutil.copytree(dirs["phi3"], model)
    (model / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": "yes"}))
    fails_cleanly("tokenizer", "encode", "--model", model, "--text", "x",
                  fragments=["add_bos_token", str(model / "tokenizer_config.json")])
    (model / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": {"32000": {"content": "<|x|>",
                                                                                                "special": "no"}}}))
    proc = fails_cleanly("tokenizer", "encode", "--model", model, "--text", "x",
                            fragments=[str(model / "tokenizer_config.json")])
    assert "[json.exception" not in proc.stderr


def test_a_huge_prompt_is_refused_by_its_length(tmp_path):
    _, model_dir = random_model_with_tokenizer(tmp_path, "phi3")
    prompts = tmp_path / "huge.jsonl"
    prompts.write_text(json.dumps({"prompt": "word " * 4_000_000, "max_new_tokens": 2}) + "\n")  # 20 MB
    fails_cleanly("generate", "--model", model_dir, "--input", prompts, "--output", tmp_path / "o.jsonl",
                               fragments=["longer than 256 tokens", f"{prompts}:1"])
    assert not (tmp_path / "o.jsonl").exists()
    # A line without a newline that never ends is cut off at the line limit, named.
    lines = tmp_path / "endless.jsonl"
    with open(lines, "w") as f:
        f.write('{"prompt": "')
        f.write("x" * (65 << 20))
    fails_cleanly("generate", "--model", model_dir, "--input", lines, "--output", tmp_path / "o.jsonl",
                  fragments=["longer than 67108864 bytes", f"{lines}:1"])


def test_sequence_length_beyond_the_context_is_refused(tmp_path):
    run_phi("tokenizer", "train", "--kind", "bpe", "--vocab-size", "300", "--input",
            Path(__file__).resolve().parents[2] / "README.md", "--output", tmp_path / "tok")
    run_phi("data", "tokenize", "--tokenizer", tmp_path / "tok", "--input", Path(__file__).resolve().parents[2] / "README.md",
            "--output", tmp_path / "data")
    recipe = {"run": {"dir": str(tmp_path / "run")},
              "model": {"preset": "tiny-phi3", "set": ["vocab_size=300", "max_position_embeddings=64"]},
              "data": {"sources": [{"path": str(tmp_path / "data")}], "seq_len": 128},
              "training": {"max_steps": 2, "batch_size": 1}}
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    fails_cleanly("train", "--config", tmp_path / "r.json", fragments=["seq_len 128 is longer than the model's context (64"])


def test_a_number_too_large_for_a_double_is_malformed_json(tmp_path):
    """Found by fuzzing (safetensors index): nlohmann's number-overflow exception escaped unwrapped."""
    run_phi("init", "--preset", "tiny-phi3", "--output", tmp_path / "m")
    config = (tmp_path / "m" / "config.json").read_text().replace('"rms_norm_eps": 1e-05', '"rms_norm_eps": 7E7777')
    assert "7E7777" in config
    (tmp_path / "m" / "config.json").write_text(config)
    fails_cleanly("info", "--model", tmp_path / "m", fragments=["malformed JSON", "number overflow", "config.json"])
