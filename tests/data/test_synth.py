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


class Rater(BaseHTTPRequestHandler):
    """Rates like a teacher would: Python code 7, anything else 2; an 'UNRATEABLE' document gets a
    reply with no number; 20% of requests fail with 503 first."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        with self.server.lock:
            self.server.requests += 1
            fail = self.server.rng.random() < 0.2
        if fail:
            return Flaky._send(self, 503, {"error": {"message": "busy"}})
        reply = "I cannot rate this." if "UNRATEABLE" in prompt else ("Score: 7" if "def " in prompt else "2")
        Flaky._send(self, 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}],
                                "usage": {"prompt_tokens": 10, "completion_tokens": 1}})


def test_annotate_labels_then_train_the_classifier(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Rater)
    server.daemon_threads = True
    server.lock, server.rng, server.requests = threading.Lock(), random.Random(2), 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rng = random.Random(4)
        docs = []
        for i in range(30):
            if i % 2:
                docs.append({"id": f"c{i}", "text": f"def f{i}(x):\n    return x * {i}\n"})
            else:
                docs.append({"id": f"p{i}", "text": " ".join(rng.choice(["the", "king", "said", "to", "his", "son"])
                                                              for _ in range(20))})
        docs.append({"id": "odd", "text": "UNRATEABLE text"})
        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "d.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        (tmp_path / "spec.json").write_text(json.dumps({"endpoint": url, "model": "rater", "retries": 10,
                                                         "timeout_seconds": 5, "concurrency": 3}))
        run_phi("data", "annotate", "--spec", tmp_path / "spec.json", "--input", tmp_path / "in", "--output",
                tmp_path / "ann", timeout=300)
        kept = [json.loads(x) for x in (tmp_path / "ann" / "00000.jsonl").read_text().splitlines()]
        removed = [json.loads(x) for x in (tmp_path / "ann" / "removed.jsonl").read_text().splitlines()]
        assert [r["id"] for r in removed] == ["odd"] and removed[0]["reason"] == "unrated"
        assert len(kept) == 30
        for d in kept:
            code = d["id"].startswith("c")
            assert d["metadata"]["annotation"]["score"] == (7 if code else 2)
            assert d["metadata"]["label"] == (1 if code else 0)
        stats = json.loads((tmp_path / "ann" / "stats.json").read_text())
        assert stats["this_run"]["requests"] == 31 and stats["completion_tokens"] == 31

        # The labels train the phi-1 classifier.
        _, model_dir = random_model_with_tokenizer(tmp_path, "phi2")
        run_phi("data", "classify", "train", "--model", model_dir, "--labels", tmp_path / "ann", "--output",
                tmp_path / "clf", "--max-tokens", "32", timeout=600)
        info = json.loads((tmp_path / "clf" / "classifier.json").read_text())
        assert info["documents"] == 30 and info["positives"] == 15 and info["train_accuracy"] >= 0.9
    finally:
        server.shutdown()
