"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/): small valid inputs of each
kind, built from the repository's own configs and templates and from the reference libraries
(safetensors, sentencepiece, transformers' config classes). Run once with the project's venv:
    python tests/fuzz/make_corpus.py
The output is checked in; rerun it when a parser learns a new input kind."""
import base64
import io
import json
import struct
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from phitest import gpt2_byte_alphabet  # noqa: E402
OUT = Path(__file__).resolve().parent / "corpus"


def put(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def safetensors_seeds():
    import numpy as np
    from safetensors.numpy import save

    blob = save({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(4, dtype=np.int64),
                 "c": np.ones((2, 2), dtype=np.float16)}, metadata={"format": "pt"})
    put("safetensors", "file", b"\0" + blob)
    index = {"metadata": {"total_size": 56}, "weight_map": {"a": "model-00001-of-00001.safetensors",
                                                            "b": "model-00001-of-00001.safetensors"}}
    put("safetensors", "index", b"\1" + json.dumps(index).encode())


def model_config_seeds():
    put("model_config", "tiny-phi3", (REPO / "configs" / "models" / "tiny-phi3.json").read_text())
    for name in sorted((REPO / "configs" / "models").glob("*.json"))[:6]:
        put("model_config", name.stem, name.read_text())
    import transformers
    small = dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    put("model_config", "hf-phi", transformers.PhiConfig(**small).to_json_string())
    put("model_config", "hf-phi3", transformers.Phi3Config(**small, num_key_value_heads=2).to_json_string())
    long = transformers.Phi3Config(**small, max_position_embeddings=1024, original_max_position_embeddings=256,
                                   rope_scaling={"type": "longrope", "short_factor": [1.0] * 4, "long_factor": [2.0] * 4})
    put("model_config", "hf-phi3-longrope", long.to_json_string())


def train_recipe_seeds():
    for name in ("tiny-textbook", "lego-tiny", "finetune-compare-sgd-frozen-embed"):
        put("train_recipe", name, (REPO / "configs" / "train" / f"{name}.json").read_text())


def tokenizer_seeds():
    u = gpt2_byte_alphabet()
    vocab = {u[b]: b for b in range(256)}
    merges = [(" ", "t"), ("h", "e"), (" t", "he")]
    lines = ["#version: 0.2"]
    for a, b in merges:
        ua, ub = "".join(u[x] for x in a.encode()), "".join(u[x] for x in b.encode())
        vocab[ua + ub] = len(vocab)
        lines.append(f"{ua} {ub}")
    vocab["<|endoftext|>"] = len(vocab)
    put("tokenizer", "bpe", b"\0" + json.dumps(vocab).encode() + b"\0" + "\n".join(lines).encode())
    tokenizer_json = {"model": {"type": "BPE", "vocab": vocab, "merges": lines[1:]},
                      "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False},
                      "added_tokens": [{"id": vocab["<|endoftext|>"], "content": "<|endoftext|>", "special": True}]}
    put("tokenizer", "tokenizer-json", b"\1" + json.dumps(tokenizer_json).encode())
    import sentencepiece as spm
    model = io.BytesIO()
    text = "the quick brown fox jumps over the lazy dog. " * 50 + "hello world, hello there. " * 30
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text.split(". ")), model_writer=model, vocab_size=40,
                                   model_type="bpe", byte_fallback=False, minloglevel=2)
    put("tokenizer", "sentencepiece", b"\2" + model.getvalue())
    ranks = "\n".join(f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256))
    ranks += "\n" + f"{base64.b64encode(b' t').decode()} 256\n{base64.b64encode(b'he').decode()} 257\n"
    put("tokenizer", "tiktoken", b"\3" + ranks.encode())
    put("tokenizer", "added-tokens", b"\4" + json.dumps({"<|user|>": 270, "<|end|>": 271}).encode())
    config = {"add_bos_token": False, "bos_token": "<|endoftext|>", "eos_token": {"content": "<|end|>"},
              "added_tokens_decoder": {"270": {"content": "<|user|>", "special": True, "rstrip": True},
                                       "271": {"content": "<|end|>", "special": True, "lstrip": False}},
              "chat_template": "{% for m in messages %}<|user|>{{ m.content }}<|end|>{% endfor %}"}
    put("tokenizer", "tokenizer-config", b"\5" + json.dumps(config).encode())


def jinja_seeds():
    source = (REPO / "src" / "infer" / "chat_template.cpp").read_text()
    import re
    for i, m in enumerate(re.finditer(r'\{"([a-z0-9-]+)",\s*\n?\s*((?:"(?:[^"\\]|\\.)*"\s*)+)\}', source)):
        text = "".join(json.loads(part) for part in re.findall(r'"(?:[^"\\]|\\.)*"', m.group(2)))
        put("jinja", m.group(1), text)
    put("jinja", "custom", "{% set sep = '\\n' %}{{ bos_token }}{% for m in messages %}{% if m.role not in ['system', "
        "'user', 'assistant'] %}{{ raise_exception('bad role') }}{% endif %}<|{{ m['role'] }}|>{{ sep }}{{ m.content | "
        "trim }}<|end|>{% if not loop.last %}{{ sep }}{% endif %}{% endfor %}{% if add_generation_prompt is defined and "
        "add_generation_prompt %}{{ sep ~ '<|assistant|>' ~ sep }}{% endif %}")
    put("jinja", "expressions", "{{ (1 + 2) ~ 'x' | upper }}{{ messages | length }}{{ messages[-1].content.strip() }}"
        "{{ 'a' in 'abc' and not false }}{{ none is none }}{{ [1, 2] + [3] }}{{ messages[0]['role'] | tojson }}")


def server_request_seeds():
    put("server_request", "completion", b"\0" + json.dumps({"model": "phi", "prompt": "Hello there", "max_tokens": 5,
                                                               "temperature": 0.7, "top_p": 0.9, "stop": ["\n"],
                                                               "logprobs": 2, "seed": 3}).encode())
    put("server_request", "completion-ids", b"\0" + json.dumps({"prompt": [1, 2, 3], "stream": True}).encode())
    put("server_request", "chat", b"\1" + json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                                                  {"role": "user", "content": "Hi <|end|>"}],
                                                     "logprobs": True, "top_logprobs": 2, "max_tokens": 8}).encode())
    put("server_request", "chat-parts", b"\1" + json.dumps({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}], "stream": True}).encode())


def jsonl_seeds():
    lines = [{"prompt": "Once upon a time", "temperature": 0.5, "max_new_tokens": 8, "stop": ["."]},
             {"messages": [{"role": "user", "content": "Hi"}], "top_k": 5, "seed": 2},
             {"prompt_ids": [1, 2, 3], "repetition_penalty": 1.1, "ignore_eos": True}]
    put("jsonl", "generate", "".join(json.dumps(x) + "\n" for x in lines))
    put("jsonl", "blank-and-crlf", '\n  \n{"prompt": "x"}\r\n')


def shard_seeds():
    tokens = [5, 6, 7, 2, 8, 9, 2]
    offsets = [0, 4, 7]
    mask = [0, 1, 1, 1, 0, 1, 1]
    header = b"PHISHRD1" + struct.pack("<IIQQI", 1, 2, len(tokens), len(offsets) - 1, 1) + b"\0" * 28
    body = struct.pack(f"<{len(tokens)}H", *tokens) + struct.pack(f"<{len(offsets)}Q", *offsets) + bytes(mask)
    put("shards", "masked", b"\0" + header + body)
    header = b"PHISHRD1" + struct.pack("<IIQQI", 1, 4, len(tokens), len(offsets) - 1, 0) + b"\0" * 28
    put("shards", "four-byte", b"\0" + header + struct.pack(f"<{len(tokens)}I", *tokens) +
        struct.pack(f"<{len(offsets)}Q", *offsets))
    manifest = {"format": "phi-shards", "version": 1, "loss_mask": True, "token_bytes": 2, "vocab_size": 512,
                "eos_id": 2, "tokenizer": "tok", "n_tokens": 7, "n_documents": 2,
                "shards": [{"file": "shard-00000.bin", "n_tokens": 7, "n_documents": 2}]}
    put("shards", "manifest", b"\1" + json.dumps(manifest).encode())


def eval_inputs_seeds():
    """The first byte picks the reader (fuzz_eval_inputs.cpp): MMLU CSV, HumanEval, MBPP, MT-bench,
    a judge reply, a judge prompt template."""
    put("eval_inputs", "mmlu_reformatted", b"\x00question,choice0,choice1,choice2,choice3,answer\n"
        b'"What, exactly?",a,"b ""quoted""",c,d,2\nplain,1,2,3,4,0\n')
    put("eval_inputs", "mmlu_original", b'\x06Which organ?,heart,lung,liver,skin,B\r\n"multi\nline",w,x,y,z,D\n')
    put("eval_inputs", "humaneval", b"\x01" + json.dumps(
        {"task_id": "HumanEval/0", "prompt": "def f():\n", "canonical_solution": "    return 1\n",
         "test": "def check(c):\n    assert c() == 1\n", "entry_point": "f"}).encode() + b"\n")
    put("eval_inputs", "mbpp", b"\x02" + json.dumps(
        {"task_id": 11, "text": "t", "code": "def f(): return 1", "test_list": ["assert f() == 1"],
         "test_setup_code": "", "challenge_test_list": []}).encode() + b"\n")
    put("eval_inputs", "mt_bench", b"\x03" + json.dumps(
        {"question_id": 81, "category": "writing", "turns": ["a", "b"],
         "choices": [{"index": 0, "turns": ["x", "y"]}]}).encode() + b"\n")
    put("eval_inputs", "rating", b"\x04The answer is good. Rating: [[8.5]] and [7]")
    put("eval_inputs", "format", b"\x05[Question]\n{question}\n{{literal}}\n[Answer]\n{answer}\n{ref_answer_1}")


def data_seeds():
    """The first byte picks the input kind (fuzz_data.cpp): text, documents JSONL, eval JSONL, MMLU
    CSV, a tar archive of eval files."""
    put("data", "text", b"\x00The king said to his son. [1] He went home... def f(x):\n    return (x,\n  'a')\n"
        b"- a bullet\n# heading\r\nlorem ipsum {x}\u2028caf\xc3\xa9 \xe6\x9d\xb1\n")
    put("data", "python", b"\x00class A:\n    def f(self, x=\"\"\"doc\"\"\"):\n\tif x:\n\t\treturn [1,\n 2]\n")
    put("data", "documents", b"\x01" + "".join(json.dumps(d) + "\n" for d in [
        {"id": "a", "text": "one two", "source": "s", "metadata": {"k": 1}}, {"text": "three"}]).encode())
    put("data", "eval_jsonl", b"\x02" + "".join(json.dumps(d) + "\n" for d in [
        {"task_id": "HumanEval/0", "prompt": "def f(a, b):\n    return a + b " * 3, "canonical_solution": "x = 1"},
        {"question_id": 81, "turns": ["Write a travel blog post about a recent trip to Hawaii, please."]}]).encode())
    put("data", "mmlu_csv", b"\x03question,choice0,choice1,choice2,choice3,answer\n"
        b'"Which of the following best describes the structure that collects urine in the body?",a,b,c,d,1\n')
    import io, tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        body = b"question,choice0,choice1,choice2,choice3,answer\nWhat is the capital city of the country of France in Europe today?,Paris,Rome,Oslo,Bern,0\n"
        info = tarfile.TarInfo("test/geo_test.csv")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    put("data", "tar", b"\x04" + buf.getvalue())


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "tests"))
    for make in (safetensors_seeds, model_config_seeds, train_recipe_seeds, tokenizer_seeds, jinja_seeds,
                 server_request_seeds, jsonl_seeds, shard_seeds, eval_inputs_seeds, data_seeds):
        make()
    for d in sorted(OUT.iterdir()):
        print(d.name, len(list(d.iterdir())), "seeds")
