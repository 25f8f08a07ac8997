"""`phi serve` driven by the official `openai` Python client: plain and streaming completions and
chat completions, stop sequences, 16 concurrent requests batched together, malformed bodies, and a
client that disconnects mid-stream."""
import concurrent.futures
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import PHI_BIN, random_model_with_tokenizer, start_server, stop_server  # noqa: E402

openai = pytest.importorskip("openai")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return random_model_with_tokenizer(tmp_path_factory.mktemp("served"), "phi3", max_position_embeddings=512)[1]


@pytest.fixture(scope="module")
def server(model_dir):
    proc, base = start_server(model_dir)
    yield base
    stop_server(proc)


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_health_and_models(server, client):
    with urllib.request.urlopen(server + "/health") as r:
        assert json.loads(r.read())["status"] == "ok"
    models = client.models.list()
    assert [m.id for m in models.data] == ["phi-test"]


def test_completion_plain_and_usage(client):
    r = client.completions.create(model="phi-test", prompt="The capital of France is", max_tokens=12,
                                  temperature=0, extra_body={"ignore_eos": True})
    assert r.object == "text_completion" and len(r.choices) == 1
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 12 and r.usage.prompt_tokens > 0
    again = client.completions.create(model="phi-test", prompt="The capital of France is", max_tokens=12, temperature=0)
    assert again.choices[0].text == r.choices[0].text  # greedy is deterministic


def test_completion_stream_equals_plain(client):
    plain = client.completions.create(model="phi-test", prompt="Once upon a time", max_tokens=20, temperature=0)
    chunks = list(client.completions.create(model="phi-test", prompt="Once upon a time", max_tokens=20,
                                            temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == plain.choices[0].text
    assert chunks[-1].choices[0].finish_reason == plain.choices[0].finish_reason


def test_chat_plain_stream_and_logprobs(client):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
    plain = client.chat.completions.create(model="phi-test", messages=messages, max_tokens=16, temperature=0,
                                           logprobs=True, top_logprobs=3)
    choice = plain.choices[0]
    assert choice.message.role == "assistant" and plain.object == "chat.completion"
    assert len(choice.logprobs.content) == plain.usage.completion_tokens
    assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in choice.logprobs.content)
    stream = list(client.chat.completions.create(model="phi-test", messages=messages, max_tokens=16, temperature=0,
                                                 stream=True))
    assert stream[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in stream) == choice.message.content
    assert stream[-1].choices[0].finish_reason == choice.finish_reason


def test_stop_sequences(client):
    base = client.completions.create(model="phi-test", prompt="Numbers:", max_tokens=30, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text
    assert len(base) > 10
    stop = base[5:9]
    for stream in (False, True):
        if stream:
            text = "".join(c.choices[0].text for c in client.completions.create(
                model="phi-test", prompt="Numbers:", max_tokens=30, temperature=0, stop=[stop], stream=True))
        else:
            r = client.completions.create(model="phi-test", prompt="Numbers:", max_tokens=30, temperature=0, stop=[stop])
            assert r.choices[0].finish_reason == "stop"
            text = r.choices[0].text
        assert text == base[: base.index(stop)]


PROMPTS = [f"Request number {i} says" for i in range(16)]


def complete(client, i, temperature=0.0):
    """Request i: greedy, or sampled (seeded, top 4; a flat distribution over the whole vocabulary
    would turn float noise into different draws) with the top 3 log-probabilities."""
    extra = {"ignore_eos": True} if temperature == 0.0 else {"ignore_eos": True, "top_k": 4}
    r = client.completions.create(model="phi-test", prompt=PROMPTS[i], max_tokens=24, temperature=temperature,
                                  seed=100 + i, logprobs=None if temperature == 0.0 else 3, extra_body=extra)
    assert r.usage.completion_tokens == 24
    if temperature == 0.0:
        return r.choices[0].text
    assert len(r.choices[0].logprobs.tokens) == 24
    return r.choices[0].text, r.choices[0].logprobs.token_logprobs


def sixteen_at_once(client):
    """16 concurrent greedy requests, then 16 concurrent sampled ones."""
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        greedy = list(pool.map(lambda i: complete(client, i), range(16)))
        sampled = list(pool.map(lambda i: complete(client, i, 0.8), range(16)))
    return greedy, sampled


@pytest.fixture(scope="module")
def sixteen(server):
    return sixteen_at_once(openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=120))


def test_sixteen_concurrent_requests_are_batched(client, server, sixteen):
    greedy, sampled = sixteen
    assert len(greedy) == 16 and len(sampled) == 16
    with urllib.request.urlopen(server + "/health") as r:
        health = json.loads(r.read())
    assert health["peak_batch"] > 1, "concurrent requests were not decoded together"
    assert health["preemptions"] == 0 and health["kv_cache_free_pages"] == health["kv_cache_pages"]
    # Greedy output does not depend on what else is in the batch.
    for i in (0, 7, 15):
        assert complete(client, i) == greedy[i]


def test_small_paged_cache_preempts_and_gives_the_same_outputs(model_dir, sixteen):
    # 128 tokens of KV cache in 8-token pages for 16 requests of about 30 tokens each: requests wait
    # for pages and the latest running ones are preempted and recomputed; every output (greedy and
    # seeded sampling) must equal the one from the server whose cache holds them all.
    proc, base = start_server(model_dir, "--kv-cache-tokens", "128", "--page-size", "8")
    try:
        small = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
        greedy, sampled = sixteen_at_once(small)
        with urllib.request.urlopen(base + "/health") as r:
            health = json.loads(r.read())
        assert health["kv_cache_pages"] == 16
        assert health["preemptions"] > 0, "the small cache never preempted a request"
        assert health["kv_cache_free_pages"] == 16 and health["load"] == 0
        assert greedy == sixteen[0]
        assert [text for text, _ in sampled] == [text for text, _ in sixteen[1]]
        for (_, ours), (_, reference) in zip(sampled, sixteen[1]):
            assert max(abs(a - b) for a, b in zip(ours, reference)) < 1e-4
        status, body = post(base, "/v1/completions", {"prompt": "word " * 200})
        assert status == 400 and "this server's context is 128" in body["error"]["message"]
        # Six long streams whose clients go away after their first chunk, while the cache is far too
        # small for them: requests are cancelled running, waiting and preempted; all pages come back.
        socks = [open_stream(base, {"prompt": PROMPTS[i], "max_tokens": 100, "stream": True, "ignore_eos": True})
                 for i in range(6)]
        for sock in socks:
            read_first_event(sock, 60)
            sock.close()
        health = wait_for_health(base, lambda h: h["load"] == 0 and h["kv_cache_free_pages"] == 16, 60)
        if health is not None:
            pytest.fail(f"cancelled requests still hold the cache: {health}")
        assert complete(small, 3) == sixteen[0][3]  # and the server still serves
    finally:
        stop_server(proc)


@pytest.mark.parametrize("flag,value", [("--page-size", "0"), ("--kv-cache-tokens", "-5"), ("--max-batch", "0")])
def test_bad_cache_flags_are_refused(model_dir, flag, value):
    run = subprocess.run([PHI_BIN, "serve", "--model", str(model_dir), "--port", "0", flag, value],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and flag in run.stderr


def open_stream(base, body):
    """Sends a completion request over a raw socket (so that the test can drop the connection)."""
    host, port = base.replace("http://", "").split(":")
    payload = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    return sock


def read_first_event(sock, timeout):
    """Reads until the stream's first server-sent event."""
    sock.settimeout(timeout)
    received = b""
    while b"data:" not in received:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the stream before sending data"
        received += chunk


def wait_for_health(base, done, timeout):
    """Polls /health until done(health); returns None then, else the last health seen."""
    deadline = time.time() + timeout
    while True:
        with urllib.request.urlopen(base + "/health") as r:
            health = json.loads(r.read())
        if done(health):
            return None
        if time.time() > deadline:
            return health
        time.sleep(0.2)


def post(server, path, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(server + path, data=data, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.mark.parametrize("path,body,status,fragment", [
    ("/v1/completions", b"{not json", 400, "not valid JSON"),
    ("/v1/completions", [1, 2], 400, "must be a JSON object"),
    ("/v1/completions", {"model": "phi-test"}, 400, "prompt is required"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 100000}, 400, "exceeds this server's limit"),
    ("/v1/completions", {"prompt": "x", "temperature": "hot"}, 400, "temperature must be a number"),
    ("/v1/completions", {"prompt": "x", "n": 2}, 400, "only n = 1"),
    ("/v1/completions", {"prompt": "x", "top_p": 0}, 400, "top_p"),
    ("/v1/completions", {"prompt": [1, 2, 99999999]}, 400, "not a token id"),
    ("/v1/completions", {"prompt": "word " * 600}, 400, "this server's context is 512"),
    ("/v1/chat/completions", {"messages": []}, 400, "non-empty array"),
    ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, 400, "is not system"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}, 400, "content must be a string"),
    ("/v1/nothing", {}, 404, "no route"),
    ("/v1/completions", {"prompt": "x" * 70000}, 413, "too large"),
])
def test_malformed_requests_get_openai_errors(server, path, body, status, fragment):
    code, payload = post(server, path, body)
    assert code == status, payload
    assert fragment in payload["error"]["message"], payload
    assert payload["error"]["type"] == "invalid_request_error"


def test_client_errors_surface_in_the_openai_client(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="phi-test", prompt="x", max_tokens=100000)
    assert "max_tokens" in str(info.value)


def test_disconnecting_client_cancels_its_generation(server, client):
    # Open a long stream, read a little, drop the connection; the server must free the slot.
    sock = open_stream(server, {"prompt": "Tell me a long story", "max_tokens": 256, "stream": True, "extra": 1,
                                "ignore_eos": True})
    read_first_event(sock, 30)
    sock.close()
    if wait_for_health(server, lambda h: h["load"] == 0, 30) is not None:
        pytest.fail("the cancelled request still holds a slot")
    # The server still answers.
    assert client.completions.create(model="phi-test", prompt="still alive?", max_tokens=2).usage.completion_tokens >= 1


def test_cuda_graphs_need_a_cuda_model(model_dir):
    run = subprocess.run([PHI_BIN, "serve", "--model", str(model_dir), "--port", "0", "--cuda-graphs"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "--cuda-graphs needs a CUDA model" in run.stderr


@pytest.mark.parametrize("body,fragment", [
    ({"prompt": "x", "logprobs": -1}, "logprobs must be in [0, 5]"),
    ({"prompt": "x", "logprobs": 6}, "logprobs must be in [0, 5]"),
    ({"prompt": "x", "seed": -1}, "seed must be a non-negative integer"),
    ({"prompt": "x", "seed": 1.5}, "seed must be an integer"),
    ({"prompt": "x", "temperature": 3}, "temperature must be in [0, 2]"),
    ({"prompt": "x", "repetition_penalty": 50}, "repetition_penalty must be in (0, 10]"),
    ({"prompt": "x", "repetition_penalty": 0}, "repetition_penalty must be in (0, 10]"),
    ({"prompt": "word " * 12000}, "longer than 512 tokens"),
    ({"prompt": "x", "echo": True, "max_tokens": 2}, "echo supports max_tokens 0 or 1"),
    ({"prompt": "x", "echo": True, "max_tokens": 1, "temperature": 1}, "needs temperature 0"),
    ({"prompt": "x", "echo": True, "max_tokens": 0, "stream": True}, "echo cannot be streamed"),
    ({"prompt": ["a", "b"], "max_tokens": 2}, "supported with echo only"),
    ({"prompt": [[1, 2], []], "echo": True, "max_tokens": 0}, "prompt must be"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens must be at least 1"),
])
def test_out_of_range_parameters_get_400(server, body, fragment):
    code, payload = post(server, "/v1/completions", body)
    assert code == 400 and fragment in payload["error"]["message"], payload


def test_a_hostile_chat_template_fails_the_request_not_the_server(model_dir, tmp_path):
    import shutil
    hostile = tmp_path / "hostile"
    shutil.copytree(model_dir, hostile)
    template = "{% set s = 'ab' %}" + "{% set s = s ~ s %}" * 45 + "{{ s }}"
    (hostile / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    proc, base = start_server(hostile)
    try:
        code, payload = post(base, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
        assert code == 400 and "chat template" in payload["error"]["message"], payload
        with urllib.request.urlopen(base + "/health", timeout=30) as r:
            assert json.loads(r.read())["status"] == "ok"
        code, payload = post(base, "/v1/completions", {"prompt": "still here", "max_tokens": 2})
        assert code == 200 and payload["usage"]["completion_tokens"] >= 1
    finally:
        stop_server(proc)


@pytest.mark.parametrize("add_bos", [True, False])
def test_text_prompts_follow_add_bos_token_like_transformers(model_dir, tmp_path, add_bos):
    """`add_bos_token` in tokenizer_config.json decides whether a text prompt starts with BOS, in
    the server, `phi generate` and `phi tokenizer encode --as-prompt`, as transformers' tokenizer
    loaded from the same directory decides."""
    import shutil
    model = tmp_path / "m"
    shutil.copytree(model_dir, model)
    (model / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": add_bos, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "legacy": True}))
    reference = transformers.AutoTokenizer.from_pretrained(str(model))  # needs protobuf for tokenizer.model
    prompt = "The capital of France is"
    expected = reference(prompt).input_ids
    assert (expected[0] == 1) == add_bos
    ours = json.loads(subprocess.run([PHI_BIN, "tokenizer", "encode", "--model", str(model), "--text", prompt, "--as-prompt"],
                                     capture_output=True, text=True, check=True).stdout)
    assert ours == expected
    lines = tmp_path / "p.jsonl"
    lines.write_text(json.dumps({"prompt": prompt, "max_new_tokens": 1}) + "\n")
    subprocess.run([PHI_BIN, "generate", "--model", str(model), "--input", str(lines), "--output", str(tmp_path / "o.jsonl")],
                   capture_output=True, text=True, check=True)
    assert json.loads((tmp_path / "o.jsonl").read_text())["prompt_tokens"] == len(expected)
    proc, base = start_server(model)
    try:
        code, payload = post(base, "/v1/completions", {"prompt": prompt, "max_tokens": 1})
        assert code == 200 and payload["usage"]["prompt_tokens"] == len(expected)
    finally:
        stop_server(proc)


def test_echo_scores_prompts_like_transformers(server, client, model_dir):
    """echo + logprobs (lm-eval's log-likelihood request): every prompt token's logprob after the
    ones before it, the top alternatives, and with max_tokens 1 the greedy next token; batch prompts
    as token-id arrays. Checked against transformers' log-softmax of the same ids."""
    import torch

    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompts = [[1, 450, 7483, 310, 3444, 338], [1, 15043, 3186, 13, 29909]]
    r = client.completions.create(model="phi-test", prompt=prompts, max_tokens=1, temperature=0, logprobs=2,
                                  echo=True)
    assert len(r.choices) == 2
    for ids, choice in zip(prompts, sorted(r.choices, key=lambda c: c.index)):
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
        got = choice.logprobs.token_logprobs
        assert got[0] is None and len(got) == len(ids) + 1
        for p in range(1, len(ids)):
            assert abs(got[p] - lp[p - 1, ids[p]].item()) < 1e-4
            assert abs(max(choice.logprobs.top_logprobs[p].values()) - lp[p - 1].max().item()) < 1e-4
        assert abs(got[-1] - lp[-1].max().item()) < 1e-4  # the greedy next token
    zero = client.completions.create(model="phi-test", prompt="The capital of France is", max_tokens=0,
                                     temperature=0, logprobs=0, echo=True)
    assert zero.choices[0].text.endswith("The capital of France is") and zero.usage.completion_tokens == 0
