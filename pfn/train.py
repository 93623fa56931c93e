"""The offline pretraining job: fit a PFN to a prior.

    pfn train --config configs/default.toml [--resume] [--init-from WEIGHTS]
    torchrun --nproc_per_node 4 -m pfn.train --config configs/default.toml

Every step draws a fresh batch of synthetic datasets (rows per dataset, split point and
task drawn per step) and minimises the negative log-likelihood of the test rows' targets
given the training rows: cross-entropy for classes, the bar-distribution NLL for
regression (Müller et al., 2022). Batches come from a generator seeded by (seed, rank,
step), so a resumed run draws exactly the batches an uninterrupted run would.

Reads top to bottom like nanoGPT's train.py: config, setup, model, optimizer, loop with
validation, logging and checkpoints.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from pfn import bar
from pfn.checkpoint import (
    config_dict,
    list_checkpoints,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_model,
)
from pfn.model import PFN, ModelConfig, target_scale
from priors import Batch, build_prior


@dataclass
class DataConfig:
    """How each step's batch is shaped. Rows and split are drawn per step."""

    batch_size: int = 16
    min_rows: int = 64
    max_rows: int = 512
    min_train_fraction: float = 0.3
    max_train_fraction: float = 0.9
    p_regression: float = 0.3  # share of steps that train the regression head

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 4 <= self.min_rows <= self.max_rows:
            raise ValueError(f"need 4 <= min_rows <= max_rows, got {self.min_rows}, "
                             f"{self.max_rows}")
        if not 0 < self.min_train_fraction <= self.max_train_fraction < 1:
            raise ValueError("need 0 < min_train_fraction <= max_train_fraction < 1, got "
                             f"{self.min_train_fraction}, {self.max_train_fraction}")
        if not 0 <= self.p_regression <= 1:
            raise ValueError(f"p_regression must be in [0, 1], got {self.p_regression}")


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay to ``min_lr_ratio * lr``: the standard
    transformer recipe; warmup keeps early Adam steps from blowing up attention logits."""

    lr: float = 3e-4
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0


@dataclass
class RunConfig:
    steps: int = 10_000
    seed: int = 0
    device: str = "auto"  # auto: cuda when available
    bf16: bool = False  # autocast to bfloat16 on CUDA
    threads: int = 0  # torch CPU threads; 0 leaves torch's default
    out_dir: str = "runs/default"
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    val_every: int = 200
    val_batches: int = 4
    log_every: int = 10
    n_borders_batches: int = 16  # prior batches used to place the bar-distribution borders


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    prior: dict = field(default_factory=lambda: {"scm": {}})
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        parts = {}
        for f in fields(cls):
            value = d.get(f.name, {})
            if f.name == "prior":
                parts[f.name] = value or {"scm": {}}
                continue
            sub = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig,
                   "run": RunConfig}[f.name]
            known = {g.name for g in fields(sub)}
            unknown = set(value) - known
            if unknown:
                raise ValueError(f"[{f.name}]: unknown keys {sorted(unknown)}")
            parts[f.name] = sub(**value)
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown config sections {sorted(unknown)}")
        return cls(**parts)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return cls.from_dict(yaml.safe_load(text) or {})
        return cls.from_dict(tomllib.loads(text))


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The generator for one step: a pure function of (seed, rank, step)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + rank * 7_919 + step) % (2**63))


def draw_batch(prior, data: DataConfig, g: torch.Generator) -> Batch:
    n_rows = int(torch.randint(data.min_rows, data.max_rows + 1, (1,), generator=g))
    frac = data.min_train_fraction + float(torch.rand(1, generator=g)) * (
        data.max_train_fraction - data.min_train_fraction)
    n_train = min(max(2, round(frac * n_rows)), n_rows - 1)
    task = "regression" if float(torch.rand(1, generator=g)) < data.p_regression \
        else "classification"
    return prior.sample(data.batch_size, n_rows, n_train, g, task)


def batch_loss(model: PFN, batch: Batch, device: torch.device) -> torch.Tensor:
    """Mean NLL of the test rows' targets (nats per row)."""
    x, y = batch.x.to(device), batch.y.to(device)
    n = batch.n_train
    used = int(batch.num_features.max())
    x = x[:, :, :used]  # padded columns beyond every dataset's width carry nothing
    out = model(x, y[:, :n], batch.task, batch.num_classes.to(device),
                batch.num_features.to(device))
    if batch.task == "classification":
        return F.cross_entropy(out.float().flatten(0, 1), y[:, n:].long().flatten())
    core = getattr(model, "module", model)
    mean, std = core.target_scale(y[:, :n])
    yz = (y[:, n:] - mean) / std
    return -bar.log_prob(out, core.borders, yz).mean()


def make_borders_from_prior(prior, cfg: TrainConfig) -> torch.Tensor:
    """Bucket borders at quantiles of the standardised targets the model learns to predict.

    Regression batches are drawn with the training run's row counts and splits, and only
    test rows are kept, mapped by :func:`pfn.model.target_scale` as the model maps them.
    Small training parts give heavy-tailed standardised targets; with a fixed half split
    those tails would land in the outer buckets, whose density has a fixed shape, and cost
    the model dearly.
    """
    data = replace(cfg.data, p_regression=1.0)
    samples = []
    for i in range(cfg.run.n_borders_batches):
        b = draw_batch(prior, data, step_generator(cfg.run.seed + 17, 0, i))
        mean, std = target_scale(b.y[:, : b.n_train], cfg.model.standardize)
        samples.append(((b.y[:, b.n_train:] - mean) / std).flatten())
    return bar.make_borders(torch.cat(samples), cfg.model.n_buckets)


def lr_factor(step: int, o: OptimConfig, total: int) -> float:
    if step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    t = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def train(cfg: TrainConfig, resume: bool = False, init_from: str | None = None,
          stop_at: int | None = None, progress: bool = True,
          dump_params: str | None = None, cpu_minutes: float | None = None) -> Path:
    """Run (or continue) pretraining; returns the run directory.

    ``cpu_minutes``: stop (with a checkpoint) once this process has used that much CPU
    time, counted from this call; ablations compare designs at equal CPU cost this way,
    which a shared, noisy machine does not distort the way wall time would.

    ``dump_params``: a directory where every rank writes its final weights as
    ``rank{r}.safetensors`` (to check that distributed ranks stay in sync).
    """
    # ---- distributed setup: torchrun sets WORLD_SIZE/RANK/LOCAL_RANK ----
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = pick_device(cfg.run.device)
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.run.threads > 0:
        torch.set_num_threads(cfg.run.threads)
    torch.manual_seed(cfg.run.seed)
    run_dir = Path(cfg.run.out_dir)
    master = rank == 0

    prior = build_prior(cfg.prior)
    model = PFN(cfg.model, make_borders_from_prior(prior, cfg)).to(device)
    if init_from:
        model.load_state_dict(load_model(init_from).state_dict())
    o = cfg.optim
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay,
                                                              "weight_decay": 0.0}],
        lr=o.lr, betas=(o.beta1, o.beta2))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, o, cfg.run.steps))
    start, history = 0, []
    ckpts = list_checkpoints(run_dir)
    if resume and ckpts:
        state = load_checkpoint(ckpts[-1], model, optimizer, scheduler)
        start, history = state["step"], state.get("history", [])
        if master:
            print(f"resumed from {ckpts[-1]} at step {start}", file=sys.stderr)
    elif resume and master:
        print(f"--resume: no checkpoint in {run_dir}, starting fresh", file=sys.stderr)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # Each step trains one head (classification or regression), and ranks may draw
        # different tasks, so some parameters get no gradient on some ranks.
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                    find_unused_parameters=True)
    core = getattr(model, "module", model)

    val = [draw_batch(prior, cfg.data, step_generator(cfg.run.seed + 999, 0, i))
           for i in range(cfg.run.val_batches)]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16,
                              enabled=cfg.run.bf16 and device.type == "cuda")

    def validate() -> dict:
        core.eval()
        out: dict[str, list[float]] = {"classification": [], "regression": []}
        with torch.no_grad(), autocast:
            for b in val:
                out[b.task].append(float(batch_loss(core, b, device)))
        core.train()
        return {f"val_{k}": sum(v) / len(v) for k, v in out.items() if v}

    log_path = run_dir / "log.csv"
    if master:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(__import__("json").dumps(config_dict(cfg),
                                                                      indent=1))
    bar_ = None
    if master and progress:
        from tqdm import tqdm

        bar_ = tqdm(total=cfg.run.steps, initial=start, dynamic_ncols=True, file=sys.stderr)
    writer = _tensorboard(run_dir) if master else None
    end = cfg.run.steps if stop_at is None else min(stop_at, cfg.run.steps)
    t0, seen, losses = time.time(), 0, []
    cpu0 = time.process_time()
    model.train()
    for step in range(start, end):
        if cpu_minutes is not None and time.process_time() - cpu0 >= 60 * cpu_minutes:
            # Out of CPU budget: checkpoint this step unless the loop just did.
            if master and step > start and step % cfg.run.checkpoint_every:
                save_checkpoint(run_dir, step, core, optimizer, scheduler,
                                {"history": history[-2000:], "config": config_dict(cfg)},
                                keep=cfg.run.keep_checkpoints)
                save_model(core, run_dir / "model.safetensors")
            break
        batch = draw_batch(prior, cfg.data, step_generator(cfg.run.seed, rank, step))
        with autocast:
            loss = batch_loss(model, batch, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        optimizer.step()
        scheduler.step()
        losses.append((batch.task, float(loss.detach())))
        seen += batch.batch_size * world
        done = step + 1
        row = None
        if done % cfg.run.log_every == 0 or done == end:
            rate = seen / max(time.time() - t0, 1e-9)
            cls = [v for t, v in losses if t == "classification"]
            reg = [v for t, v in losses if t == "regression"]
            row = {"step": done, "lr": scheduler.get_last_lr()[0],
                   "loss_classification": sum(cls) / len(cls) if cls else "",
                   "loss_regression": sum(reg) / len(reg) if reg else "",
                   "datasets_per_s": rate, "time": time.time()}
            losses = []
        if done % cfg.run.val_every == 0 or done == end:
            row = (row or {"step": done}) | validate()
        if master and row is not None:
            history.append(row)
            _append_csv(log_path, row)
            if writer:
                for k, v in row.items():
                    if isinstance(v, float) and k != "time":
                        writer.add_scalar(k, v, done)
            if bar_:
                bar_.set_postfix(loss=f"{float(loss):.3f}",
                                 ds_s=f"{row.get('datasets_per_s', 0):.1f}")
        if bar_:
            bar_.update(1)
        if master and (done % cfg.run.checkpoint_every == 0 or done == end):
            save_checkpoint(run_dir, done, core, optimizer, scheduler,
                            {"history": history[-2000:], "config": config_dict(cfg)},
                            keep=cfg.run.keep_checkpoints)
            save_model(core, run_dir / "model.safetensors")
            _plot(history, run_dir / "loss.png")
    if bar_:
        bar_.close()
    if dump_params:
        from safetensors.torch import save_file

        Path(dump_params).mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in core.state_dict().items()},
                  str(Path(dump_params) / f"rank{rank}.safetensors"))
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return run_dir


def _append_csv(path: Path, row: dict) -> None:
    cols = ["step", "lr", "loss_classification", "loss_regression", "datasets_per_s",
            "val_classification", "val_regression", "time"]
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(run_dir / "tb"))
    except Exception:  # tensorboard not installed: the CSV log is enough
        return None


def _plot(history: list[dict], path: Path) -> None:
    """Loss curves as PNG (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    values = []
    for key in ("loss_classification", "loss_regression", "val_classification",
                "val_regression"):
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


def main(argv: list[str] | None = None) -> int:
    from pfn.cli import CommandParser  # usage errors in one line, as every pfn command

    p = CommandParser(prog="pfn train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="TOML (or YAML) training config")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--init-from", help="warm-start weights (a model .safetensors file)")
    p.add_argument("--out-dir", help="override run.out_dir")
    p.add_argument("--steps", type=int, help="override run.steps")
    p.add_argument("--stop-at", type=int, help="stop after this step (schedule unchanged)")
    p.add_argument("--threads", type=int, help="override run.threads")
    p.add_argument("--cpu-minutes", type=float,
                   help="stop with a checkpoint after this much process CPU time")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dump-params", metavar="DIR",
                   help="each rank saves its final weights to DIR/rank{r}.safetensors")
    a = p.parse_args(argv)
    cfg = TrainConfig.load(a.config)
    if a.out_dir:
        cfg.run.out_dir = a.out_dir
    if a.steps:
        cfg.run.steps = a.steps
    if a.threads:
        cfg.run.threads = a.threads
    train(cfg, resume=a.resume, init_from=a.init_from, stop_at=a.stop_at,
          progress=not a.no_progress, dump_params=a.dump_params, cpu_minutes=a.cpu_minutes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
