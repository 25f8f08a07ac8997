"""Chat templates: every built-in template, and templates read from tokenizer_config.json, render
exactly as Jinja2 (the engine transformers' apply_chat_template uses) renders them."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import run_phi, tokenizer_dirs  # noqa: E402

jinja2 = pytest.importorskip("jinja2")

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?\nThanks"}],
    [{"role": "user", "content": "Unicode: 漢字 🙂"}, {"role": "assistant", "content": "ok"}],
]

# A template in the style of newer tokenizer_config.json files: loops, loop.last, filters, set,
# `is defined`, raise_exception.
CUSTOM = ("{% set sep = '\\n' %}{{ bos_token }}{% for m in messages %}{% if m.role not in ['system', 'user', "
          "'assistant'] %}{{ raise_exception('bad role') }}{% endif %}<|{{ m['role'] }}|>{{ sep }}{{ m.content | trim }}"
          "<|end|>{% if not loop.last %}{{ sep }}{% endif %}{% endfor %}{% if add_generation_prompt is defined and "
          "add_generation_prompt %}{{ sep ~ '<|assistant|>' ~ sep }}{% endif %}")


def reference(template, messages, add_generation_prompt, bos, eos):
    env = jinja2.Environment()
    env.globals["raise_exception"] = lambda m: (_ for _ in ()).throw(ValueError(m))
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                            bos_token=bos, eos_token=eos)


def render(model_dir, messages, *flags):
    return run_phi("tokenizer", "render-chat", "--model", model_dir, "--messages", json.dumps(messages), *flags).stdout


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return tokenizer_dirs(tmp_path_factory.mktemp("tok"))


def builtin_sources():
    # The same strings as src/infer/chat_template.cpp, taken from docs/phi_family.md §8.
    text = (Path(__file__).resolve().parents[2] / "src" / "infer" / "chat_template.cpp").read_text()
    return text


@pytest.mark.parametrize("name,kind,bos,eos", [("phi3", "phi3", "<s>", "</s>"), ("phi3-april", "phi3", "<s>", "</s>"),
                                               ("phi3-medium", "phi3", "<s>", "</s>"),
                                               ("phi3-small", "phi3small", "<|endoftext|>", "<|endoftext|>"),
                                               ("phi4-mini", "phi3", "<s>", "</s>"),
                                               ("phi2", "phi2", "<|endoftext|>", "<|endoftext|>")])
def test_builtin_templates_render_like_jinja2(dirs, tmp_path, name, kind, bos, eos):
    template_file = tmp_path / f"{name}.jinja"
    # Render the built-in through a file too, so the reference uses the very same source text.
    import re
    source = builtin_sources()
    start = source.index('{"' + name + '",')
    chunk = source[start:source.index("},", start)]
    literal = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', chunk)[1:])
    template = literal.encode().decode("unicode_escape")
    template_file.write_text(template)
    for messages in CONVERSATIONS:
        for generation_prompt in (True, False):
            flags = ["--template", name] + ([] if generation_prompt else ["--no-generation-prompt"])
            ours = render(dirs[kind], messages, *flags)
            assert ours == reference(template, messages, generation_prompt, bos, eos), (name, messages)
            assert ours == render(dirs[kind], messages, "--template", template_file,
                                  *([] if generation_prompt else ["--no-generation-prompt"]))


def test_template_from_tokenizer_config(dirs, tmp_path):
    import shutil
    model = tmp_path / "model"
    shutil.copytree(dirs["phi3"], model)
    (model / "tokenizer_config.json").write_text(json.dumps({"chat_template": CUSTOM, "bos_token": "<s>",
                                                             "eos_token": "<|endoftext|>"}))
    for messages in CONVERSATIONS:
        assert render(model, messages) == reference(CUSTOM, messages, True, "<s>", "<|endoftext|>")
    proc = run_phi("tokenizer", "render-chat", "--model", model, "--messages",
                   json.dumps([{"role": "user", "content": "x"}]), "--template", "nope", check=False)
    assert proc.returncode == 1 and "unknown chat template" in proc.stderr


def test_phi3_chat_ids_use_the_special_tokens(dirs):
    ids = json.loads(run_phi("tokenizer", "render-chat", "--model", dirs["phi3"], "--messages",
                             json.dumps(CONVERSATIONS[0]), "--template", "phi3", "--ids").stdout)
    # <|user|> Hello! <|end|> <|assistant|>: the newlines after chat tokens are absorbed (rstrip).
    assert ids[0] == 32010 and ids[-2:] == [32007, 32001]
    assert 13 not in ids  # no newline token survives next to the chat tokens


def test_bad_messages(dirs):
    for messages, fragment in [([], "non-empty array"), ([{"role": "robot", "content": "x"}], "is not system"),
                               ([{"role": "user"}], "content must be a string")]:
        proc = run_phi("tokenizer", "render-chat", "--model", dirs["phi3"], "--messages", json.dumps(messages), check=False)
        assert proc.returncode == 1 and fragment in proc.stderr, proc.stderr
