"""The server on CUDA (part of scripts/gpu_check.sh): `phi serve` with the paged KV cache, bf16 and
the fused kernels, twice: with a cache that holds every request, and with one of 96 tokens that
makes requests wait and preempts them. Eight concurrent greedy completions on each; prints JSON with
how many outputs agree (bf16 recomputation after a preemption may legitimately flip a near-tie) and
the small server's preemptions; on CUDA a third run replays the decode steps as CUDA graphs
(--cuda-graphs) with the small cache.
    python3 scripts/gpu_serve_check.py PHI_BIN MODEL_DIR PROMPTS_JSONL
(PHI_SERVE_DEVICE=cpu PHI_SERVE_DTYPE=f32 runs the same on a CPU.)"""
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

phi, model, prompts_path = sys.argv[1:4]
base_prompts = [json.loads(line)["prompt"] for line in open(prompts_path)]
prompts = [base_prompts[i % len(base_prompts)][:30 + 4 * i] for i in range(8)]
device, dtype = os.environ.get("PHI_SERVE_DEVICE", "cuda"), os.environ.get("PHI_SERVE_DTYPE", "bf16")


def serve(*extra):
    env = dict(os.environ, PHI_ATTENTION="fused", PHI_KERNELS="fused")
    proc = subprocess.Popen([phi, "serve", "--model", model, "--device", device, "--dtype", dtype, "--port", "0",
                             "--max-batch", "8", "--context", "256", *extra], stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stderr.readline()
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if match:
            return proc, f"http://127.0.0.1:{match.group(1)}"
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("server did not start")


def complete(base, prompt):
    body = json.dumps({"prompt": prompt, "max_tokens": 40, "temperature": 0, "ignore_eos": True}).encode()
    req = urllib.request.Request(base + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["choices"][0]["text"]


def run(*extra):
    proc, base = serve(*extra)
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            texts = list(pool.map(lambda p: complete(base, p), prompts))
        with urllib.request.urlopen(base + "/health") as r:
            health = json.loads(r.read())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return texts, health


out = {}
try:
    big, big_health = run("--kv-cache-tokens", "2048")
    small, small_health = run("--kv-cache-tokens", "96", "--page-size", "16")
    graphs = []
    if device == "cuda":
        try:
            graphs, _ = run("--kv-cache-tokens", "96", "--page-size", "16", "--cuda-graphs")
        except Exception as e:  # reported, the rest still counts
            out["graphs_error"] = str(e)[:200]
    out.update({"graphs_identical": sum(a == b for a, b in zip(big, graphs)) if graphs else None})
    out.update({"requests": len(big), "identical": sum(a == b for a, b in zip(big, small)),
           "preemptions": small_health.get("preemptions"), "peak_batch": big_health.get("peak_batch"),
           "free_pages_after": small_health.get("kv_cache_free_pages"), "pages": small_health.get("kv_cache_pages")})
except Exception as e:  # reported in the table
    out = {"error": str(e)[:200]}
print(json.dumps(out))
