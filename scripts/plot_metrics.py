#!/usr/bin/env python3
"""Draws the loss (and validation loss) and learning-rate curves of a run's metrics.jsonl to a PNG.
   plot_metrics.py RUN_DIR [--output RUN_DIR/loss.png]"""
import argparse
import json
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
