"""`phi data synth teacher`: prompts from templates x topics x audiences x styles sent to an
OpenAI-compatible endpoint. Against a stand-in server on 127.0.0.1 that fails at random (500, 429,
hangs past the client's timeout), every prompt is answered exactly once and lands in the output
once; a second run with more prompts asks only the new ones (the request cache); against `phi serve`
with a small random model the stage runs end to end."""
import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import assert_clean_failure, random_model_with_tokenizer, run_phi, start_server, stop_server  # noqa: E402


class Flaky(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        key = (prompt, body.get("seed"))
        with self.server.lock:
            self.server.requests += 1
            outcome = self.server.rng.random()
        if outcome < 0.25:
            return self._send(500, {"error": {"message": "overloaded"}})
        if outcome < 0.40:
            return self._send(429, {"error": {"message": "slow down"}})
        if outcome < 0.48:
            time.sleep(2.0)  # past the client's 1 s timeout; then the connection closes unanswered
            self.close_connection = True
            return
        with self.server.lock:
            self.server.answered[key] = self.server.answered.get(key, 0) + 1
        self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"Answer to: {prompt}"},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 3, "total_tokens": 0}})

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def flaky_server(seed):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    server.daemon_threads = True
    server.lock = threading.Lock()
    server.rng = random.Random(seed)
    server.requests = 0
    server.answered = {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def spec(url, count, **extra):
    s = {"endpoint": url + "/v1", "model": "teacher",
         "templates": ["Write a textbook section on {topic} for {audience}, {style}.",
                       "Write an exercise with its solution about {topic} for {audience}, {style}."],
         "topics": ["loops", "recursion", "lists", "dictionaries", "sorting", "strings", "classes", "generators",
                    "closures", "files"],
         "audiences": ["beginners", "high-school students", "engineers"],
         "styles": ["with many examples", "concisely", "as a dialogue"],
         "count": count, "seed": 3, "concurrency": 4, "retries": 20, "timeout_seconds": 1,
         "documents_per_shard": 16, "max_tokens": 64}
    s.update(extra)
    return s


def read_docs(out):
    return [json.loads(x) for f in sorted(out.glob("0*.jsonl")) for x in f.read_text().splitlines()]


def test_flaky_endpoint_every_prompt_answered_once(tmp_path):
    server = flaky_server(seed=1)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        (tmp_path / "spec.json").write_text(json.dumps(spec(url, 40)))
        run_phi("data", "synth", "teacher", "--spec", tmp_path / "spec.json", "--output", tmp_path / "out", timeout=600)
        docs = read_docs(tmp_path / "out")
        assert [d["id"] for d in docs] == [f"synth-{i}" for i in range(40)]
        for d in docs:
            m = d["metadata"]
            assert d["text"] == "Answer to: " + m["prompt"]
            assert m["prompt"] == m["template"].format(topic=m["topic"], audience=m["audience"], style=m["style"])
        assert len({(d["metadata"]["topic"], d["metadata"]["audience"], d["metadata"]["style"]) for d in docs}) >= 25
        assert len(server.answered) == 40 and set(server.answered.values()) == {1}  # each asked and answered once
        stats = json.loads((tmp_path / "out" / "stats.json").read_text())
        run = stats["this_run"]
        assert run["requests"] == 40 and run["cached"] == 0 and run["tries"] > 40
        assert stats["completion_tokens"] == 120 and stats["documents_out"] == 40
        failed_tries = server.requests - 40
        print(f"{server.requests} requests for 40 prompts ({failed_tries} failed, retried)")

        # More prompts: the first 40 come from the cache, only the new 20 are asked.
        (tmp_path / "spec.json").write_text(json.dumps(spec(url, 60)))
        run_phi("data", "synth", "teacher", "--spec", tmp_path / "spec.json", "--output", tmp_path / "out", timeout=600)
        docs2 = read_docs(tmp_path / "out")
        assert docs2[:40] == docs and len(docs2) == 60
        assert len(server.answered) == 60 and set(server.answered.values()) == {1}
        stats = json.loads((tmp_path / "out" / "stats.json").read_text())
        assert stats["this_run"]["requests"] == 20 and stats["this_run"]["cached"] == 40
        assert stats["completion_tokens"] == 180
    finally:
        server.shutdown()


def test_unreachable_endpoint_fails_clearly_and_keeps_answers(tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps(spec("http://127.0.0.1:9", 3, retries=1, timeout_seconds=1)))
    proc = run_phi("data", "synth", "teacher", "--spec", tmp_path / "spec.json", "--output", tmp_path / "out",
                   check=False, timeout=120)
    assert_clean_failure(proc, "127.0.0.1:9", "run again")
    bad = spec("http://127.0.0.1:9", 3)
    bad["topic"] = ["x"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    proc = run_phi("data", "synth", "teacher", "--spec", tmp_path / "bad.json", "--output", tmp_path / "out2",
                   check=False)
    assert_clean_failure(proc, "topic", "bad.json")


def test_phi_serve_as_the_teacher(tmp_path):
    _, model_dir = random_model_with_tokenizer(tmp_path, "phi3")
    proc, url = start_server(model_dir)
    try:
        (tmp_path / "spec.json").write_text(json.dumps(spec(url, 6, model="phi-test", max_tokens=12, temperature=1.0,
                                                             timeout_seconds=120, retries=2)))
        run_phi("data", "synth", "teacher", "--spec", tmp_path / "spec.json", "--output", tmp_path / "out", timeout=600)
    finally:
        stop_server(proc)
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["documents_in"] == 6 and stats["this_run"]["requests"] == 6
    assert stats["documents_out"] + stats["removed"]["empty_answer"] == 6 and stats["documents_out"] >= 1
    assert 0 < stats["completion_tokens"] <= 6 * 12 and stats["prompt_tokens"] > 6 * 10
