"""What a training run leaves for people to read: ``log.csv``, ``loss.png``, TensorBoard
events and a progress bar. Only rank 0 keeps a log.

The CSV has one row per logged step. A run resumed from the checkpoint at step S first cuts
the rows after S (written before a kill, and about to be computed again), so every step
appears once and the log always describes the weights that exist.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

COLUMNS = ["step", "lr", "loss_classification", "loss_regression", "datasets_per_s",
           "val_classification", "val_regression", "time"]
CURVES = ("loss_classification", "loss_regression", "val_classification", "val_regression")


def read_log(path: Path) -> list[dict]:
    """The rows of a log.csv with numbers as floats (empty cells dropped); a row torn by a
    kill mid-write is skipped."""
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as fh:
        for raw in csv.DictReader(fh):
            try:
                row = {k: float(v) for k, v in raw.items() if k in COLUMNS and v}
                step = int(raw["step"])
            except (TypeError, ValueError):
                continue
            if len(raw) == len(COLUMNS) and None not in raw.values():
                rows.append(row | {"step": step})
    return rows


def cut_log(path: Path, last_step: int) -> None:
    """Keep only the rows up to ``last_step`` (atomically); 0 empties the log."""
    if not path.exists():
        return
    rows = [r for r in read_log(path) if r["step"] <= last_step]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows({k: repr(v) if isinstance(v, float) else v for k, v in r.items()}
                    for r in rows)
    os.replace(tmp, path)


class TrainLog:
    """Collects training losses between log rows and writes rows, plots and events.

    ``start``: the step the run starts or resumes at; ``enabled`` is False on ranks > 0.
    """

    def __init__(self, run_dir: Path, start: int, total: int, enabled: bool = True,
                 progress: bool = True) -> None:
        self.enabled, self.run_dir = enabled, run_dir
        self.path = run_dir / "log.csv"
        self.losses: list[tuple[str, float]] = []
        self.seen, self.t0 = 0, time.time()
        self.writer = self.bar = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        cut_log(self.path, start)
        self.writer = _tensorboard(run_dir, purge_step=start + 1)
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, dynamic_ncols=True, file=sys.stderr)

    def add(self, task: str, loss: float, datasets: int) -> None:
        """Record one training step's loss and how many datasets it consumed (all ranks)."""
        self.losses.append((task, loss))
        self.seen += datasets
        if self.bar is not None:
            self.bar.update(1)

    def train_row(self, step: int, lr: float) -> dict:
        """Mean training losses per task since the last row, the step's learning rate,
        and throughput."""
        def mean(task: str) -> float | str:
            v = [x for t, x in self.losses if t == task]
            return sum(v) / len(v) if v else ""

        row = {"step": step, "lr": lr, "loss_classification": mean("classification"),
               "loss_regression": mean("regression"),
               "datasets_per_s": self.seen / max(time.time() - self.t0, 1e-9),
               "time": time.time()}
        self.losses = []
        return row

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        if self.writer is not None:
            for k, v in row.items():
                if isinstance(v, float) and k != "time":
                    self.writer.add_scalar(k, v, row["step"])
        if self.bar is not None:
            shown = {k: f"{row[k]:.3f}" for k in CURVES if isinstance(row.get(k), float)}
            self.bar.set_postfix(shown)

    def plot(self) -> None:
        if self.enabled:
            plot_losses(read_log(self.path), self.run_dir / "loss.png")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def _tensorboard(run_dir: Path, purge_step: int):
    """A TensorBoard writer that hides events at or after ``purge_step`` left by an
    interrupted run; None without tensorboard (the CSV log is enough)."""
    try:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(run_dir / "tb"), purge_step=purge_step)
    except Exception:
        return None


def plot_losses(history: list[dict], path: Path) -> None:
    """Loss curves as PNG (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    values = []
    for key in CURVES:
        pts = [(r["step"], r[key]) for r in history if isinstance(r.get(key), float)]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=key, markersize=3,
                    marker="o" if key.startswith("val") else None)
            values += [v for _, v in pts]
    if values:  # a rare batch with an extreme regression target spikes the loss to ~100
        values.sort()  # nats: cut the axis above the bulk so the curves stay readable
        ax.set_ylim(min(0.0, values[0]), 1.5 * values[int(0.99 * (len(values) - 1))])
    ax.set_xlabel("step")
    ax.set_ylabel("NLL (nats per test row)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
