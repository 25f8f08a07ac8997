"""transformers' eager training step for the phi-1.5 shape (random weights, bf16 autocast, float32
master weights, torch AdamW): the baseline scripts/gpu_check.sh puts next to bench_gpu's
train/phi-1.5. Prints one JSON line {batch, seq, tokens_per_s, model_tflops}."""
import json
import sys
import time

import torch
import transformers

cfg = json.load(open(sys.argv[1]))
batch, seq = int(sys.argv[2]), int(sys.argv[3])
config = transformers.PhiConfig(vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
                                intermediate_size=cfg["intermediate_size"], num_hidden_layers=cfg["n_layers"],
                                num_attention_heads=cfg["n_heads"], partial_rotary_factor=cfg["rotary_dim"] / (cfg["hidden_size"] // cfg["n_heads"]),
                                max_position_embeddings=cfg["max_position_embeddings"])
torch.manual_seed(0)
model = transformers.PhiForCausalLM(config).cuda()
model.config._attn_implementation = "eager"
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
n_params = sum(p.numel() for p in model.parameters())


def step(b):
    ids = torch.randint(0, cfg["vocab_size"], (b, seq + 1), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(ids[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


result = {"batch": batch, "seq": seq}
for b in (batch, batch // 2, 1):
    try:
        step(b)
        torch.cuda.synchronize()
        times = []
        for _ in range(4):
            t = time.perf_counter()
            step(b)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        t = sorted(times)[len(times) // 2]
        per_token = 6 * n_params + 6 * cfg["n_layers"] * seq * cfg["hidden_size"]
        result.update(batch=b, tokens_per_s=b * seq / t, model_tflops=per_token * b * seq / t / 1e12)
        break
    except (torch.OutOfMemoryError, RuntimeError) as e:
        # Out of memory shows up as OutOfMemoryError, or as a cuBLAS workspace allocation failure.
        if not isinstance(e, torch.OutOfMemoryError) and "ALLOC" not in str(e):
            raise
        result["oom_at_batch"] = b
        opt.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
print(json.dumps(result))
