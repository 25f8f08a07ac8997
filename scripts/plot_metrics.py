#!/usr/bin/env python3
"""Draws the loss (and validation loss), the recipe's eval tasks (held-out perplexity as nats/token on
the loss axis, accuracies on their own axis) and learning-rate curves of a run's metrics.jsonl to a PNG.
   plot_metrics.py RUN_DIR [--output RUN_DIR/loss.png]"""
import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"{args.run_dir}/metrics.jsonl has no rows")
    steps = [r["step"] for r in rows]
    fig, (loss_ax, lr_ax) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    loss_ax.plot(steps, [r["loss"] for r in rows], label="train loss", linewidth=1)
    valid = [(r["step"], r["valid_loss"]) for r in rows if "valid_loss" in r]
    if valid:
        loss_ax.plot(*zip(*valid), "o-", label="validation loss")
    eval_keys = sorted({k for r in rows for k in r if k.startswith("eval/")})
    for key in (k for k in eval_keys if k.endswith("/perplexity")):
        points = [(r["step"], math.log(r[key])) for r in rows if key in r]
        loss_ax.plot(*zip(*points), "s--", label=f"{key.split('/')[1]} (log perplexity)")
    accuracies = [k for k in eval_keys if k.endswith("/acc")]
    if accuracies:
        acc_ax = loss_ax.twinx()
        for key in accuracies:
            points = [(r["step"], r[key]) for r in rows if key in r]
            acc_ax.plot(*zip(*points), "^:", color="tab:green", label=f"{key.split('/')[1]} accuracy")
        acc_ax.set_ylabel("accuracy")
        acc_ax.set_ylim(0, 1)
        acc_ax.legend(loc="upper center")
    loss_ax.set_ylabel("loss (nats/token)")
    loss_ax.legend()
    loss_ax.grid(alpha=0.3)
    lr_ax.plot(steps, [r["lr"] for r in rows], color="tab:orange")
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("step")
    lr_ax.grid(alpha=0.3)
    fig.suptitle(f"{args.run_dir.name}: {len(rows)} steps, final loss {rows[-1]['loss']:.3f}")
    fig.tight_layout()
    output = args.output or args.run_dir / "loss.png"
    fig.savefig(output, dpi=120)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
