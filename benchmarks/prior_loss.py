"""Validation loss of several weight files on the same prior batches: how ablation arms
and runs are compared on the prior (the real-data comparison is benchmarks/real_data.py).

    python benchmarks/prior_loss.py --config configs/ablation/row.toml \
        --model row=~/runs/abl-row/model.safetensors --model cell=~/runs/abl-cell/model.safetensors

Batches are drawn exactly as the pretraining job draws its validation batches
(``pfn.train.draw_batch`` with seed ``run.seed + 999``), ``--batches`` of them, so every
model sees the same datasets. Prints mean NLL (nats per test row) per task, with the
standard error over batches, and a row per width band (features <= 10, 11-39, >= 40).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from pfn.checkpoint import load_model
from pfn.config import load_config
from pfn.train import _subset, batch_loss, draw_batch, step_generator

BANDS = (("<=10 features", 1, 10), ("11-39", 11, 39), (">=40", 40, 10_000))


def losses(model, batches, groups: int) -> dict[str, list[float]]:
    """Per batch and per width band: mean NLL; keys 'classification', 'regression',
    and '<task> <band>'."""
    out: dict[str, list[float]] = {}
    with torch.no_grad():
        for b in batches:
            out.setdefault(b.task, []).append(float(batch_loss(model, b, torch.device("cpu"),
                                                               groups)))
            for name, lo, hi in BANDS:
                idx = ((b.num_features >= lo) & (b.num_features <= hi)).nonzero().flatten()
                if len(idx):
                    loss = batch_loss(model, _subset(b, idx), torch.device("cpu"))
                    out.setdefault(f"{b.task} {name}", []).append(float(loss))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="training config whose prior and data "
                    "shape the validation batches")
    ap.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--batches", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = load_config(a.config)
    prior = cfg.prior.build()
    batches = [draw_batch(prior, cfg.data, step_generator(cfg.run.seed + 999, 0, i))
               for i in range(a.batches)]
    results = {}
    for spec in a.model:
        name, _, path = spec.partition("=")
        model = load_model(Path(path).expanduser()).eval()
        results[name] = losses(model, batches, max(cfg.data.width_groups, 4))
    keys = sorted({k for r in results.values() for k in r})
    print("| split | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for k in keys:
        cells = []
        for r in results.values():
            v = r.get(k, [])
            m = sum(v) / len(v)
            se = (sum((x - m) ** 2 for x in v) / max(len(v) - 1, 1) / len(v)) ** 0.5
            cells.append(f"{m:.4f} ± {se:.4f}" if not math.isnan(m) else "")
        print(f"| {k} (n={len(next(iter(results.values())).get(k, []))}) | "
              + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
