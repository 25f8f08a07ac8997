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
bench = {b["name"].split("/iterations:")[0]: b for b in load("bench.json").get("benchmarks", [])}
try:
    card = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                          text=True).stdout.strip()
except OSError:
    card = "no nvidia-smi"
log = (out / "gpu_tests.log").read_text() if (out / "gpu_tests.log").exists() else ""
passed = log.count("[       OK ]")
failed = log.count("[  FAILED  ]") // 2 if "FAILED" in log else 0
print(f"\ncard: {card}; build {build_s} s; GPU tests (CudaKernels.*): {'pass' if gtest_rc == 0 else 'FAIL'} "
      f"({passed} ok, {failed} failed)\n")
print("| attention (causal, bf16) B,H,S,D | phi TFLOP/s | SDPA flash | SDPA cuDNN | phi / cuDNN |")
print("|---|---|---|---|---|")
for mode in ("fwd", "fwdbwd"):
    for shape in ("4/32/2048/96", "4/32/2048/64", "2/32/4096/80", "8/32/1024/128"):
        vals = [bench.get(f"attention/{impl}/{mode}/{shape}", {}).get("TFLOPs") for impl in ("phi", "flash", "cudnn")]
        fmt = ["-" if v is None else f"{v:.0f}" for v in vals]
        ratio = f"{vals[0] / vals[2]:.2f}" if vals[0] and vals[2] else "-"
        print(f"| {mode} {shape.replace('/', ',')} | {fmt[0]} | {fmt[1]} | {fmt[2]} | {ratio} |")
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
print()
hf = load("hf_train.json")
print("| phi-1.5 training step, bf16 | tokens/s | MFU |")
print("|---|---|---|")
for backend, label in (("fused", "our flash attention + fused elementwise"),
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
