"""What this CPU offers a training step: bf16 autocast and torch.compile, per model size.

One step = forward + backward + AdamW on a fixed batch (16 datasets, ``--rows`` rows, 100
features, half training rows, classification) for each model size in ``--configs``, in
four variants: float32 (the baseline), bf16 autocast, torch.compile, and both. Variants
are interleaved step by step so a varying load on the shared machine hits all alike;
the table gives the median step time and the speed-up against float32 of the same size.

    python benchmarks/train_speedups.py --threads 1 --repeats 5 \
        --configs configs/v2.toml configs/ablation/cell.toml
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from pfn.config import load_config  # noqa: E402
from pfn.model import PFN  # noqa: E402

VARIANTS = (("float32", False, False), ("bf16 autocast", True, False),
            ("compile", False, True), ("compile + bf16", True, True))


def make_step(cfg, bf16: bool, compiled: bool, rows: int, seed: int = 0):
    torch.manual_seed(seed)
    model = PFN(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    fwd = torch.compile(model) if compiled else model
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, rows, 100, generator=g)
    y = torch.randint(0, 10, (16, rows), generator=g)
    n = rows // 2
    nc = torch.full((16,), 10)

    def step() -> None:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            logits = fwd(x, y[:, :n].float(), "classification", nc)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y[:, n:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=["configs/v2.toml"])
    p.add_argument("--rows", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"training step, batch 16 x {a.rows} rows x 100 features, {a.threads} thread(s), "
          f"median of {a.repeats} (compile: after 2 warm-up steps)")
    print(f"{'config':<28} {'variant':<16} {'step s':>8} {'speed-up':>9}")
    for path in a.configs:
        cfg = load_config(path).model
        steps = [make_step(cfg, bf16, comp, a.rows) for _, bf16, comp in VARIANTS]
        for step in steps:  # warm-up (compilation happens here)
            step()
            step()
        times: list[list[float]] = [[] for _ in steps]
        for _ in range(a.repeats):
            for t, step in zip(times, steps, strict=True):
                t0 = time.perf_counter()
                step()
                t.append(time.perf_counter() - t0)
        med = [statistics.median(t) for t in times]
        for (name, _, _), m in zip(VARIANTS, med, strict=True):
            print(f"{Path(path).name:<28} {name:<16} {m:>8.3f} {med[0] / m:>8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
