"""Training throughput: datasets/s and rows/s of one optimisation step of our PFN.

One step = forward + backward + AdamW on a batch of 16 datasets x 512 rows x 100 features
(half training rows, classification), timed as the median over ``--repeats`` steps after
one warm-up step, for

* our PFN at the reference size (d_model 256, 6 layers, 4 heads, feed-forward 512),
* our PFN at the size of configs/default.toml,
* the naive reference transformer (benchmarks/reference.py: nn.TransformerEncoder with
  full attention over all rows),

all in the same process, interleaved step by step so that a varying load on a shared CPU
hits all three alike. The last line is our speed at the reference size divided by the
reference's: > 1 means our step is faster. Ours is cheaper because test rows attend only
to training rows (N x R attention instead of R x R) and never serve as keys or values.

    python benchmarks/train_throughput.py --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks.reference import ReferenceModel  # noqa: E402
from pfn.config import load_config  # noqa: E402
from pfn.model import PFN, ModelConfig  # noqa: E402

REFERENCE_SIZE = ModelConfig(max_features=100, max_classes=10, d_model=256, n_layers=6,
                             n_heads=4, d_ff=512, n_buckets=1000)


def make_step(model: torch.nn.Module, forward, batch_size: int = 16, n_rows: int = 512,
              n_features: int = 100, seed: int = 0):
    """A closure running one forward + backward + AdamW step on a fixed random batch.

    ``forward(model, x, y_train)`` returns logits (B, T, C) for the rows after the training
    rows; half the rows are training rows.
    """
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch_size, n_rows, n_features, generator=g)
    y = torch.randint(0, 10, (batch_size, n_rows), generator=g)
    n_train = n_rows // 2

    def step() -> None:
        logits = forward(model, x, y[:, :n_train])
        loss = F.cross_entropy(logits.flatten(0, 1), y[:, n_train:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def pfn_forward(model: PFN, x: torch.Tensor, y_train: torch.Tensor) -> torch.Tensor:
    num_classes = torch.full((x.shape[0],), 10)
    return model(x, y_train.float(), "classification", num_classes)


def reference_forward(model: ReferenceModel, x: torch.Tensor, y_train: torch.Tensor
                      ) -> torch.Tensor:
    return model(x, y_train)[:, y_train.shape[1]:]


def median_seconds(steps: list, repeats: int) -> list[float]:
    """Median time per step function; the functions are interleaved within each repeat so a
    varying machine load (shared CPU) affects all of them alike. One warm-up step each."""
    for step in steps:
        step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeats):
        for t, step in zip(times, steps, strict=True):
            t0 = time.perf_counter()
            step()
            t.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--config", default=str(Path(__file__).resolve().parents[1]
                                           / "configs" / "default.toml"))
    a = p.parse_args(argv)
    if a.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {a.repeats}")
    torch.set_num_threads(a.threads)
    batch, rows = 16, 512
    default = load_config(a.config).model
    torch.manual_seed(0)
    models = [("PFN, reference size", PFN(REFERENCE_SIZE).train(), pfn_forward),
              (f"PFN, default.toml (d_model {default.d_model}, {default.n_layers} layers)",
               PFN(default).train(), pfn_forward),
              ("reference transformer (benchmarks/reference.py)", ReferenceModel().train(),
               reference_forward)]
    seconds = median_seconds([make_step(m, f) for _, m, f in models], a.repeats)
    print(f"one training step (forward + backward + AdamW), batch {batch} x {rows} rows x "
          f"100 features, {a.threads} thread(s), median of {a.repeats}")
    print(f"{'model':<48} {'params':>9} {'step s':>8} {'datasets/s':>11} {'rows/s':>9}")
    for (name, model, _), sec in zip(models, seconds, strict=True):
        params = sum(t.numel() for t in model.parameters())
        print(f"{name:<48} {params:>9,} {sec:>8.3f} {batch / sec:>11.2f} "
              f"{batch * rows / sec:>9.0f}")
    print(f"throughput vs reference: {seconds[2] / seconds[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
