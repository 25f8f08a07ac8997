"""`phi eval mt-bench` against FastChat's llm_judge: for the same answers the judge requests phi
sends are byte-identical to the ones FastChat's gen_judgment sends, the scores parsed from the same
(canned) judge replies are identical, show's averages equal show_result's; judging retries, stops
cleanly and resumes; generate follows the model's chat template turn after turn."""
import hashlib
import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import PHI_BIN, assert_clean_failure, random_model_with_tokenizer, require_shared_data, run_phi  # noqa: E402

pytest.importorskip("fastchat", reason="fschat is the oracle (scripts/setup.sh installs it)")
openai = pytest.importorskip("openai")

REPLIES = ["Rating: [[7]]", "Solid answer. [[8.5]]", "I would give it [6] overall.", "No score from me.",
           "Rating: [[10]], though earlier I thought [[2]]", "[[ 5 ]] is not a rating, but [4] is", "Rating: [[3.]]"]


class StandInJudge:
    """An OpenAI-compatible chat endpoint on 127.0.0.1 answering each prompt with a canned reply
    chosen by a hash of its messages; it records every request body, and can answer 503 to the
    first `unavailable` requests or 400 from the `refuse_from`-th on."""

    def __init__(self):
        self.requests, self.unavailable, self.refuse_from, self.lock = [], 0, None, threading.Lock()
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with judge.lock:
                    if judge.unavailable > 0:
                        judge.unavailable -= 1
                        return self.reply(503, {"error": {"message": "busy"}})
                    if judge.refuse_from is not None and len(judge.requests) >= judge.refuse_from:
                        return self.reply(400, {"error": {"message": "refused by the test"}})
                    judge.requests.append(body)
                key = hashlib.sha256(json.dumps(body["messages"]).encode()).digest()[0]
                content = REPLIES[key % len(REPLIES)]
                self.reply(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": content}}],
                                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

            def reply(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def judge():
    j = StandInJudge()
    yield j
    j.close()


def mt_bench_files(tmp_path):
    data = require_shared_data() / "eval" / "mt_bench"
    questions = [json.loads(x) for x in (data / "question.jsonl").read_text().splitlines()]
    answers_dir = tmp_path / "model_answer"
    answers_dir.mkdir()
    answers = answers_dir / "tiny-phi.jsonl"
    answers.write_text("".join(json.dumps({
        "question_id": q["question_id"], "answer_id": f"a{q['question_id']}", "model_id": "tiny-phi",
        "choices": [{"index": 0, "turns": [f"First answer to {q['question_id']}: {{x}} 100%",
                                           f"Second answer to {q['question_id']}."]}], "tstamp": 0.0}) + "\n"
        for q in questions))
    ref_dir = tmp_path / "reference_answer"
    ref_dir.mkdir()
    shutil.copy(data / "reference_answer_gpt-4.jsonl", ref_dir / "gpt-4.jsonl")
    return data, answers, ref_dir


def fastchat_judgments(data, answers, ref_dir, url, output):
    """FastChat's gen_judgment (single mode) over the same files, its OpenAI call sent with the
    current openai client (FastChat's own targets the pre-1.0 API) to the stand-in judge."""
    import fastchat.llm_judge.common as common
    from fastchat.llm_judge.gen_judgment import make_judge_single, make_match_single

    def chat_completion_openai(model, conv, temperature, max_tokens, api_dict=None):
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        r = client.chat.completions.create(model=model, messages=conv.to_openai_api_messages(), n=1,
                                           temperature=temperature, max_tokens=max_tokens)
        return r.choices[0].message.content

    common.chat_completion_openai = chat_completion_openai
    questions = common.load_questions(str(data / "question.jsonl"), None, None)
    model_answers = common.load_model_answers(str(answers.parent))
    ref_answers = common.load_model_answers(str(ref_dir))
    judges = make_judge_single("gpt-4", common.load_judge_prompts(str(data / "judge_prompts.jsonl")))
    math = [q for q in questions if q["category"] in common.NEED_REF_CATS]
    default = [q for q in questions if q["category"] not in common.NEED_REF_CATS]
    models = [answers.stem]
    matches = (make_match_single(default, models, model_answers, judges["default"])
               + make_match_single(math, models, model_answers, judges["math"], None, ref_answers)
               + make_match_single(default, models, model_answers, judges["default-mt"], multi_turn=True)
               + make_match_single(math, models, model_answers, judges["math-mt"], None, ref_answers, multi_turn=True))
    for m in matches:
        common.play_a_match_single(m, output_file=str(output))
    return [json.loads(x) for x in Path(output).read_text().splitlines()]


def test_judge_requests_and_scores_match_fastchat(tmp_path, judge):
    data, answers, ref_dir = mt_bench_files(tmp_path)
    ours_path = tmp_path / "ours.jsonl"
    judge.unavailable = 1  # the first request is answered 503: retried after a backoff
    run_phi("eval", "mt-bench", "judge", "--answers", answers, "--questions", data / "question.jsonl",
            "--judge-prompts", data / "judge_prompts.jsonl", "--reference", ref_dir / "gpt-4.jsonl",
            "--judge-url", judge.url, "--judge-model", "gpt-4", "--parallel", 4, "--output", ours_path)
    ours_requests = [json.dumps(r["messages"]) for r in judge.requests]
    assert all(r["temperature"] == 0 and r["model"] == "gpt-4" for r in judge.requests)
    judge.requests.clear()
    theirs = fastchat_judgments(data, answers, ref_dir, judge.url, tmp_path / "fastchat.jsonl")
    theirs_requests = [json.dumps(r["messages"]) for r in judge.requests]
    assert len(ours_requests) == len(theirs_requests) == 160
    assert sorted(ours_requests) == sorted(theirs_requests)  # byte-identical judge prompts

    ours = [json.loads(x) for x in ours_path.read_text().splitlines()]
    key = lambda j: (j["question_id"], j["turn"])  # noqa: E731
    by_key = {key(j): j for j in theirs}
    for j in ours:
        t = by_key[key(j)]
        for field in ("model", "judge", "user_prompt", "judgment", "score"):
            assert j[field] == t[field], (field, j[field], t[field])
        assert type(j["score"]) is type(t["score"]), (j["score"], t["score"])
    assert {j["score"] for j in ours} >= {-1, 7, 8.5, 6}

    # show: FastChat's show_result numbers (judgments without a score left out).
    import pandas as pd

    summary_path = tmp_path / "summary.json"
    shown = run_phi("eval", "mt-bench", "show", "--judgments", ours_path, "--questions", data / "question.jsonl",
                    "--output", summary_path).stdout
    df = pd.DataFrame(theirs)[["model", "score", "turn"]]
    df = df[df["score"] != -1]
    summary = json.loads(summary_path.read_text())["models"]["tiny-phi"]
    assert summary["turn_1"] == pytest.approx(df[df["turn"] == 1]["score"].mean(), abs=1e-12)
    assert summary["turn_2"] == pytest.approx(df[df["turn"] == 2]["score"].mean(), abs=1e-12)
    assert summary["average"] == pytest.approx(df["score"].mean(), abs=1e-12)
    assert summary["no_score"] == sum(1 for j in theirs if j["score"] == -1) and "tiny-phi" in shown


def test_judging_stops_cleanly_and_resumes(tmp_path, judge):
    data, answers, ref_dir = mt_bench_files(tmp_path)
    out, cache = tmp_path / "judgments.jsonl", tmp_path / "judge.cache"
    args = ["eval", "mt-bench", "judge", "--answers", answers, "--questions", data / "question.jsonl", "--judge-prompts",
            data / "judge_prompts.jsonl", "--reference", ref_dir / "gpt-4.jsonl", "--judge-url", judge.url,
            "--output", out, "--cache", cache, "--parallel", 2, "--judge-runs", 2, "--limit", 10]
    judge.refuse_from = 15
    assert_clean_failure(run_phi(*args, check=False), "HTTP 400", "refused by the test", "rerun")
    assert not out.exists()
    done = len(list(cache.glob("run*.jsonl")))
    assert 15 <= done <= 16
    judge.refuse_from = None
    judge.requests.clear()
    run_phi(*args)
    assert len(judge.requests) == 40 - done  # nothing finished is asked again
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 40 and sorted({j["run"] for j in lines}) == [0, 1]
    summary = run_phi("eval", "mt-bench", "show", "--judgments", out, "--questions", data / "question.jsonl",
                      "--output", tmp_path / "s.json")
    s = json.loads((tmp_path / "s.json").read_text())["models"]["tiny-phi"]
    assert len(s["runs"]) == 2 and s["median_of_runs"] == pytest.approx(sum(s["runs"]) / 2)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": 81, "model": "m", "turn": 1, "score": "high"}\n')
    assert_clean_failure(run_phi("eval", "mt-bench", "show", "--judgments", bad, "--questions",
                                 data / "question.jsonl", check=False), "bad.jsonl:1", "numeric score")
    proc = run_phi("eval", "mt-bench", "judge", "--answers", answers, "--questions", data / "question.jsonl",
                   "--judge-prompts", data / "judge_prompts.jsonl", "--reference", ref_dir / "gpt-4.jsonl",
                   "--judge-url", "http://127.0.0.1:9/v1", "--output", tmp_path / "x.jsonl", "--max-retries", 0,
                   "--limit", 1, check=False)
    assert_clean_failure(proc, "cannot reach")


def test_generate_follows_the_chat_template_turn_after_turn(tmp_path):
    """Greedy categories: turn 1 is transformers' greedy continuation of the rendered prompt; turn 2
    is the continuation of the conversation holding the stripped turn-1 answer. FastChat reads the file."""
    import torch
    from transformers import AutoTokenizer

    import fastchat.llm_judge.common as common

    model, model_dir = random_model_with_tokenizer(tmp_path, "phi3", max_position_embeddings=512)
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question_id": i, "category": c, "turns": [f"What is {i} + {i}?",
                                                                                       "And times two?"]}) + "\n"
                                 for i, c in ((1, "math"), (2, "coding"), (3, "reasoning"))))
    out_dir = tmp_path / "model_answer"
    out_dir.mkdir()
    answers = out_dir / "tiny.jsonl"
    run_phi("eval", "mt-bench", "generate", "--model", model_dir, "--questions", questions, "--max-new-tokens", 8,
            "--output", answers)
    loaded = common.load_model_answers(str(out_dir))["tiny"]
    tok = AutoTokenizer.from_pretrained(model_dir)

    def greedy(messages):
        rendered = run_phi("tokenizer", "render-chat", "--model", model_dir, "--messages", json.dumps(messages),
                           "--ids").stdout
        ids = torch.tensor([json.loads(rendered)])
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=[32000, 32007], pad_token_id=0)
        return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()

    for qid in (1, 2, 3):
        turns = loaded[qid]["choices"][0]["turns"]
        q = [f"What is {qid} + {qid}?", "And times two?"]
        assert turns[0] == greedy([{"role": "user", "content": q[0]}])
        assert turns[1] == greedy([{"role": "user", "content": q[0]}, {"role": "assistant", "content": turns[0]},
                                   {"role": "user", "content": q[1]}])
