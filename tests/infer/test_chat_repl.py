"""`phi chat` in a real terminal: a pseudo-terminal drives the REPL through a multi-turn
conversation, /system, /reset and /quit; replies equal `phi generate` on the same messages."""
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from phitest import PHI_BIN, random_model_with_tokenizer, run_phi  # noqa: E402

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return random_model_with_tokenizer(tmp_path_factory.mktemp("chat"), "phi3", max_position_embeddings=512)[1]


class Terminal:
    def __init__(self, argv):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        self.buffer = b""

    def expect(self, pattern, timeout=60):
        regex = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        deadline = time.time() + timeout
        while True:
            match = regex.search(self.buffer)
            if match:
                before = self.buffer[: match.start()]
                self.buffer = self.buffer[match.end():]
                return before.decode("utf-8", "replace"), match
            remaining = deadline - time.time()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {pattern!r}; screen: {self.buffer[-2000:]!r}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    data = b""
                if not data:
                    raise AssertionError(f"terminal closed waiting for {pattern!r}; screen: {self.buffer[-2000:]!r}")
                self.buffer += data

    def send(self, line):
        os.write(self.master, (line + "\n").encode())

    def close(self):
        try:
            self.proc.wait(timeout=20)
        finally:
            os.close(self.master)


def generate_reply(model_dir, tmp_path, messages):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"messages": messages}) + "\n")
    out = tmp_path / "o.jsonl"
    run_phi("generate", "--model", model_dir, "--input", prompts, "--output", out, "--temperature", "0",
            "--max-new-tokens", "12")
    return json.loads(out.read_text())["text"]


def strip_terminal(text):
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return text.replace("\r\n", "\n").replace("\r", "")


def reply_of(screen):
    """The streamed reply: what the terminal showed after our echoed input, before the stats line."""
    return strip_terminal(screen).split("\n", 1)[1].rsplit("\n", 1)[0] if "\n" in strip_terminal(screen) else ""


def test_chat_repl_multi_turn(model_dir, tmp_path):
    term = Terminal([PHI_BIN, "chat", "--model", str(model_dir), "--temperature", "0", "--max-new-tokens", "12"])
    term.expect(r"/quit")
    term.expect(r">>> ")
    term.send("Hello there")
    screen, stats = term.expect(r"\[(\d+) tokens, ([0-9.]+) tok/s, (\w+)\]")
    first = reply_of(screen)
    assert first == generate_reply(model_dir, tmp_path, [{"role": "user", "content": "Hello there"}])
    assert int(stats.group(1)) > 0
    term.expect(r">>> ")
    term.send("And again?")
    screen, _ = term.expect(r"\[(\d+) tokens, [0-9.]+ tok/s, \w+\]")
    second = reply_of(screen)
    assert second == generate_reply(model_dir, tmp_path, [
        {"role": "user", "content": "Hello there"}, {"role": "assistant", "content": first},
        {"role": "user", "content": "And again?"}])
    term.expect(r">>> ")
    term.send("/system You are a pirate.")
    term.expect(r"\[system prompt set; history cleared\]")
    term.expect(r">>> ")
    term.send("Hi")
    screen, _ = term.expect(r"\[\d+ tokens, [0-9.]+ tok/s, \w+\]")
    assert reply_of(screen) == generate_reply(model_dir, tmp_path, [
        {"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi"}])
    term.expect(r">>> ")
    term.send("/reset")
    term.expect(r"\[history cleared\]")
    term.expect(r">>> ")
    term.send("/bogus")
    term.expect(r"unknown command /bogus")
    term.expect(r">>> ")
    term.send("/quit")
    term.close()
    assert term.proc.returncode == 0
