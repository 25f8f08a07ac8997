"""Prints scripts/gpu_check.sh's table from its output folder: python3 gpu_table.py OUT GTEST_RC BUILD_S."""
import json
import subprocess
import sys
from pathlib import Path

out, gtest_rc, build_s = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
PEAK_BF16 = 989.4e12  # H100 / H200 SXM dense bf16


def load(name):
    try:
        return json.loads((out / name).read_text())
    except Exception:
        return {}


# Google Benchmark appends "/iterations:N/manual_time" to the registered names.
bench = {b["name"].split("/iterations:")[0]: b
         for b in load("bench.json").get("benchmarks", []) + load("bench_unverified.json").get("benchmarks", [])}
try:
    card = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                          text=True).stdout.strip()
except OSError:
    card = "no nvidia-smi"
log = (out / "gpu_tests.log").read_text() if (out / "gpu_tests.log").exists() else ""
passed = log.count("[       OK ]")
failed = log.count("[  FAILED  ]") // 2 if "FAILED" in log else 0
print(f"\ncard: {card}; build {build_s} s; GPU tests (CudaKernels.* of verified kernels): "
      f"{'pass' if gtest_rc == 0 else 'FAIL'} ({passed} ok, {failed} failed)")
unverified = (out / "gpu_unverified.log").read_text().split("\n") if (out / "gpu_unverified.log").exists() else []
for line in filter(None, unverified):
    name, rc = line.rsplit(" ", 1)
    status = {"0": "pass", "124": "TIMEOUT", "skipped": "skipped"}.get(rc, f"FAIL (exit {rc})")
    print(f"  {name} (unverified): {status}")
print()
print("| attention (causal, bf16) B,H,S,D | phi TFLOP/s | phi mma.sync | SDPA flash | SDPA cuDNN | phi / cuDNN | mma / cuDNN |")
print("|---|---|---|---|---|---|---|")
for mode in ("fwd", "fwdbwd"):
    for shape in ("4/32/2048/96", "4/32/2048/64", "2/32/4096/80", "8/32/1024/128"):
        vals = [bench.get(f"attention/{impl}/{mode}/{shape}", {}).get("TFLOPs")
                for impl in ("phi", "phi-mma", "flash", "cudnn")]
        fmt = ["-" if v is None else f"{v:.0f}" for v in vals]
        ratio = f"{vals[0] / vals[3]:.2f}" if vals[0] and vals[3] else "-"
        ratio_mma = f"{vals[1] / vals[3]:.2f}" if vals[1] and vals[3] else "-"
        print(f"| {mode} {shape.replace('/', ',')} | {fmt[0]} | {fmt[1]} | {fmt[2]} | {fmt[3]} | {ratio} | {ratio_mma} |")
copy = bench.get("copy", {}).get("GBps")
print()
print("| decode Phi-3-mini bf16, batch 1, 512 prompt, 256 new | tokens/s | bandwidth floor | fraction |")
print("|---|---|---|---|")
for backend in ("aten", "fused", "graph"):
    d = bench.get(f"decode/{backend}", {})
    if d and copy:
        floor = copy * 1e9 / d["weight_bytes"]
        label = {"aten": "ATen ops, torch attention, eager", "fused": "fused kernels (attention, norms, rotary, act), eager",
                 "graph": "fused kernels + CUDA graph"}[backend]
        if d.get("graph_nodes"):
            label += f" ({d['graph_nodes']:.0f} graph nodes per token)"
        print(f"| {label} | {d['tokens_per_s']:.1f} | {floor:.1f} (copy {copy:.0f} GB/s, "
              f"{d['weight_bytes'] / 1e9:.2f} GB weights) | {d['tokens_per_s'] / floor:.2f} |")
    else:
        print(f"| attention {backend} | - | - | - |")
graph = bench.get("decode/graph", {})
gemv_ms = {}
print()
print("| batch-1 GEMV, Phi-3-mini bf16 [N, K] | phi GB/s | cuBLAS GB/s | phi / copy |")
print("|---|---|---|---|")
for name, (n, k) in (("qkv", (9216, 3072)), ("o", (3072, 3072)), ("gate_up", (16384, 3072)), ("down", (3072, 8192)),
                     ("lm_head", (32064, 3072))):
    ours, cublas = (bench.get(f"gemv/{impl}/{name}", {}).get("GBps") for impl in ("phi", "cublas"))
    if ours:
        gemv_ms[name] = n * k * 2 / (ours * 1e9) * 1e3
    print(f"| {name} [{n}, {k}] | {ours or 0:.0f} | {cublas or 0:.0f} | {(ours or 0) / copy if copy else 0:.2f} |")
if len(gemv_ms) == 5 and graph.get("tokens_per_s"):
    per_token = 32 * (gemv_ms["qkv"] + gemv_ms["o"] + gemv_ms["gate_up"] + gemv_ms["down"]) + gemv_ms["lm_head"]
    step = 1e3 / graph["tokens_per_s"]
    print(f"\nDecode step gap: the 129 GEMVs of one token take {per_token:.2f} ms at these rates, of the captured "
          f"step's {step:.2f} ms ({per_token / step:.0%}); everything else (norms, rotary, cache append, attention, "
          f"activation, launch gaps): {step - per_token:.2f} ms.")
splits = [(n, bench.get(f"decode_attention/b1/768/splits{n}", {}).get("us_per_call")) for n in (0, 1, 2, 3, 4, 6, 8, 12, 16)]
if any(us for _, us in splits):
    print("\nDecode attention, Phi-3-mini shape, batch 1, 768 keys, us per call by key splits (0: launcher's choice): "
          + ", ".join(f"{n}: {us:.1f}" for n, us in splits if us))
pk, pg = (bench.get(f"decode_attention/b16/2048/paged/{m}", {}) for m in ("kernel", "gather"))
if pk.get("us_per_call") or pg.get("us_per_call"):
    print(f"Paged decode attention, 16 x 2048 keys: paged kernel {pk.get('us_per_call', 0):.1f} us "
          f"({pk.get('kv_GBps', 0):.0f} GB/s of K/V), gather + decode kernel {pg.get('us_per_call', 0):.1f} us")
dense, paged, graphed = (bench.get(f"decode_batch/{kind}", {}).get("tokens_per_s")
                         for kind in ("dense", "paged", "paged-graph"))
print(f"\nBatched decode (16 x 512-token prompts, 64 steps, fused attention): fixed-slot cache "
      f"{dense or 0:.0f} tokens/s, paged cache read through gather_pages {paged or 0:.0f} tokens/s "
      f"(paged / dense {(paged or 0) / dense if dense else 0:.2f}), paged step as a CUDA graph "
      f"{graphed or 0:.0f} tokens/s (graph / paged {(graphed or 0) / paged if paged else 0:.2f}).")
print()
hf = load("hf_train.json")
print("| phi-1.5 training step, bf16 | tokens/s | MFU |")
print("|---|---|---|")
for backend, label in (("fused", "our flash attention + fused elementwise"),
                       ("fused-mma", "our mma.sync flash attention + fused elementwise"),
                       ("sdpa+kernels", "torch SDPA + fused elementwise"), ("aten", "torch SDPA + ATen ops")):
    ours = bench.get(f"train/phi-1.5/{backend}", {})
    if ours.get("tokens_per_s"):
        print(f"| phi-engine, {label} (batch 4 x 2048) | {ours['tokens_per_s']:.0f} | "
              f"{ours['model_TFLOPs'] * 1e12 / PEAK_BF16:.1%} |")
    else:
        print(f"| phi-engine, {label} | - {ours.get('error_message', '')[:80]} | - |")
if hf.get("tokens_per_s"):
    note = f" (batch {hf['batch']}{', OOM at ' + str(hf['oom_at_batch']) if 'oom_at_batch' in hf else ''})"
    print(f"| transformers eager{note} | {hf['tokens_per_s']:.0f} | {hf['model_tflops'] * 1e12 / PEAK_BF16:.1%} |")
else:
    print(f"| transformers eager | - ({hf or 'no result'}) | - |")
print()
train = load("train_check.json")
print("| tiny recipe on CUDA, 150 steps | first loss | last loss | tokens/s | skipped steps |")
print("|---|---|---|---|---|")
gen = train.pop("generate", {})
serve = train.pop("serve", {})
for p, r in train.items():
    if "error" in r:
        print(f"| {p} | error: {r['error'][:60]} | | | |")
    else:
        print(f"| {p} | {r['first']:.3f} | {r['last']:.3f} | {r['tokens_per_s']:.0f} | {r['skipped']} |")
if gen:
    print()
    if "error" in gen:
        print(f"phi generate on CUDA (batch 1, greedy, 64 tokens): error {gen['error'][:80]}")
    else:
        print(f"phi generate on CUDA (batch 1, greedy, 64 tokens): captured-step output identical to the eager "
              f"step's for {gen['identical']} of {gen['prompts']} prompts; sample: {gen['sample']!r}")
if serve:
    print()
    if "error" in serve:
        print(f"phi serve on CUDA (paged KV cache): error {serve['error'][:100]}")
    else:
        print(f"phi serve on CUDA (bf16, fused kernels, paged KV cache; 8 concurrent greedy requests): a 96-token "
              f"cache preempted {serve['preemptions']} times and gave the same text as a cache that holds them all "
              f"for {serve['identical']} of {serve['requests']} requests; pages free afterwards "
              f"{serve['free_pages_after']} of {serve['pages']}; with --cuda-graphs: "
              f"{serve.get('graphs_identical')} of {serve['requests']} identical {serve.get('graphs_error', '')}")
