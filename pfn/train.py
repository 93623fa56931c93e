"""The offline pretraining job: fit a PFN to a prior.

    pfn train --config configs/default.toml [--resume] [--init-from WEIGHTS]
    pfn train --config changed.toml --resume --allow-config-change   # e.g. a longer schedule
    torchrun --nproc_per_node 4 -m pfn.train --config configs/default.toml

``--resume`` continues from the newest checkpoint that verifies (damaged newer ones are
reported and set aside as ``*.damaged``) and refuses a config that differs from the
checkpoint's unless ``--allow-config-change`` is given. Errors are one line on stderr
naming the file, exit status 2.

Every step draws a fresh batch of synthetic datasets (rows per dataset, split point and
task drawn per step) and minimises the negative log-likelihood of the test rows' targets
given the training rows: cross-entropy for classes, the bar-distribution NLL for
regression (Müller et al., 2022). Batches come from a generator seeded by (seed, rank,
step), and the learning rate is a function of the step, so a resumed run computes exactly
what an uninterrupted run would.

Reads top to bottom like nanoGPT's train.py: config, setup, model, optimizer, loop with
validation and checkpoints. Configuration lives in :mod:`pfn.config`, logs and plots in
:mod:`pfn.train_log`, checkpoint files in :mod:`pfn.checkpoint`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from pfn import bar
from pfn.checkpoint import (
    check_architecture,
    describe,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_model_file,
    save_checkpoint,
    save_model,
    set_aside,
)
from pfn.config import (
    PLACEMENT_FIELDS,
    DataConfig,
    OptimConfig,
    TrainConfig,
    config_changes,
    config_from_dict,
    config_to_dict,
    load_config,
    with_run,
)
from pfn.model import PFN, target_scale
from pfn.train_log import TrainLog
from priors import Batch

__all__ = ["TrainConfig", "train", "main", "draw_batch", "step_generator", "lr_factor"]


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The generator for one step: a pure function of (seed, rank, step)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + rank * 7_919 + step) % (2**63))


def draw_batch(prior, data: DataConfig, g: torch.Generator, step: int | None = None
               ) -> Batch:
    """One step's batch; ``step`` sets the row curriculum (None: its final row range)."""
    n_rows = data.draw_rows(g, step)
    frac = data.min_train_fraction + float(torch.rand(1, generator=g)) * (
        data.max_train_fraction - data.min_train_fraction)
    n_train = min(max(2, round(frac * n_rows)), n_rows - 1)
    task = "regression" if float(torch.rand(1, generator=g)) < data.p_regression \
        else "classification"
    return prior.sample(data.batch_size, n_rows, n_train, g, task)


def batch_loss(model: PFN, batch: Batch, device: torch.device, groups: int = 1
               ) -> torch.Tensor:
    """Mean NLL of the test rows' targets (nats per row).

    With ``groups`` > 1 the datasets are sorted by width and forwarded in that many groups,
    each cut to its own widest dataset. Datasets never interact inside the model and all
    have the same number of test rows, so the loss is that of one pass over the padded
    batch, while per-cell encoders skip most of the padding of a batch whose widest
    dataset is far wider than its median one.
    """
    if groups > 1:
        parts = batch.num_features.argsort().chunk(groups)
        return sum(_loss(model, _subset(batch, i), device) * len(i) for i in parts) \
            / batch.batch_size
    return _loss(model, batch, device)


def _subset(batch: Batch, idx: torch.Tensor) -> Batch:
    return replace(batch, x=batch.x[idx], y=batch.y[idx], num_features=batch.num_features[idx],
                   num_classes=batch.num_classes[idx], categorical=batch.categorical[idx])


def _loss(model: PFN, batch: Batch, device: torch.device) -> torch.Tensor:
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
    """Linear warmup, then cosine decay to ``min_lr_ratio`` at step ``total``."""
    if step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    t = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resume(cfg: TrainConfig, model: PFN, optimizer: torch.optim.Optimizer,
           allow_config_change: bool) -> tuple[int, list, list[Path]]:
    """Restore the newest intact checkpoint of the run; returns (step, config changes so
    far, newer damaged checkpoints). Step 0 if the run has no checkpoint yet.

    A config that differs from the checkpoint's (beyond where the run executes) is refused
    unless ``allow_config_change``; then the new config applies in full from this step on.
    """
    run_dir = Path(cfg.run.out_dir)
    ckpt = latest_checkpoint(run_dir, say)
    if ckpt is None:
        say(f"--resume: no checkpoint in {run_dir}, starting fresh")
        return 0, [], []
    newer = [p for p in list_checkpoints(run_dir) if p.name > ckpt.name]
    state = json.loads((ckpt / "state.json").read_text())
    try:
        old = config_from_dict(state.get("config"))
    except ValueError as err:
        raise ValueError(f"checkpoint {ckpt}: its recorded config does not parse: {err}"
                         ) from err
    check_architecture(f"checkpoint {ckpt}", old.model, cfg.model)
    changes = config_changes(config_to_dict(old), config_to_dict(cfg), PLACEMENT_FIELDS)
    if changes and not allow_config_change:
        raise ValueError(f"checkpoint {ckpt} was trained with another config: "
                         + "; ".join(changes) + ". Resume with the same config, or pass "
                         "--allow-config-change to apply the new one from this step on")
    state = load_checkpoint(ckpt, model, optimizer)
    legacy = "" if "format" in state else " (written before manifests: not verified)"
    say(f"resumed from {ckpt} at step {state['step']}{legacy}")
    history = state.get("config_changes", [])
    if changes:
        say("config changed: " + "; ".join(changes))
        history = history + [{"step": state["step"], "changes": changes}]
    return state["step"], history, newer


def train(cfg: TrainConfig, *, resume_run: bool = False, init_from: str | None = None,
          allow_config_change: bool = False, stop_at: int | None = None,
          progress: bool = True, dump_params: str | None = None,
          cpu_minutes: float | None = None) -> Path:
    """Run (or continue) pretraining; returns the run directory.

    ``allow_config_change``: resume (or warm start) although the config differs from the
    checkpoint's. Every field then takes the new value from the resumed step on: the
    learning rate follows the new schedule as if it had been in force from step 0 (the
    cosine is recomputed for the new ``run.steps``), batches use the new seed, prior and
    data settings; only the model weights, Adam moments and step count carry over.

    ``cpu_minutes``: stop (with a checkpoint) once this process has used that much CPU
    time, counted from this call; ablations compare designs at equal CPU cost this way,
    which a shared, noisy machine does not distort the way wall time would.

    ``dump_params``: a directory where every rank writes its final weights as
    ``rank{r}.safetensors`` (to check that distributed ranks stay in sync).
    """
    # ---- distributed setup: torchrun sets WORLD_SIZE/RANK/LOCAL_RANK ----
    # Under torchrun (which sets WORLD_SIZE) the process group exists even with one rank,
    # so a one-GPU launch runs the same NCCL/DDP path as many.
    distributed = "WORLD_SIZE" in os.environ
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = pick_device(cfg.run.device)
    if distributed:
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
    if not resume_run and list_checkpoints(run_dir):
        raise ValueError(f"run folder {run_dir} already holds checkpoints: pass --resume "
                         "to continue that run, or choose another --out-dir")

    # ---- model and optimizer ----
    prior = cfg.prior.build()
    model = PFN(cfg.model, make_borders_from_prior(prior, cfg)).to(device)
    o = cfg.optim
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}], lr=o.lr, betas=(o.beta1, o.beta2))
    start, changes, damaged = 0, [], []
    if resume_run:
        start, changes, damaged = resume(cfg, model, optimizer, allow_config_change)
    if start > 0 and init_from:
        say(f"--init-from {init_from} ignored: the run resumed from its checkpoint")
    if start == 0 and init_from:
        weights = read_model_file(init_from)
        check_architecture(f"model file {init_from}", weights.config, cfg.model)
        if weights.config != cfg.model and not allow_config_change:
            raise ValueError(f"model file {init_from} has model config "
                             f"{describe(weights.config)}, the run's config has "
                             f"{describe(cfg.model)}; pass --allow-config-change to "
                             "warm-start across them")
        model.load_state_dict(weights.tensors)
        say(f"warm start from {init_from} (sha256 {weights.sha256[:16]}"
            f"{'' if weights.verified else ', unverified: format 1'})")
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # Each step trains one head (classification or regression), and ranks may draw
        # different tasks, so some parameters get no gradient on some ranks.
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                    find_unused_parameters=True)  # also a barrier: every rank has resumed
    core = getattr(model, "module", model)
    if master:
        for ckpt in damaged:
            say(f"set aside damaged checkpoint {ckpt} as {set_aside(ckpt).name}")
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / "config.json.tmp"
        tmp.write_text(json.dumps(config_to_dict(cfg), indent=1))
        os.replace(tmp, run_dir / "config.json")

    val = [draw_batch(prior, cfg.data, step_generator(cfg.run.seed + 999, 0, i))
           for i in range(cfg.run.val_batches)]
    # bf16 autocast on CUDA and on CPU alike (benchmarks/train_speedups.py measures the CPU
    # gain per model size); the loss and the optimizer stay in float32.
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.run.bf16)

    def validate() -> dict:
        core.eval()
        out: dict[str, list[float]] = {"classification": [], "regression": []}
        with torch.no_grad(), autocast:
            for b in val:
                out[b.task].append(float(batch_loss(core, b, device, cfg.data.width_groups)))
        core.train()
        return {f"val_{k}": sum(v) / len(v) for k, v in out.items() if v}

    def checkpoint(step: int) -> None:
        save_checkpoint(run_dir, step, core, optimizer,
                        {"config": config_to_dict(cfg), "config_changes": changes},
                        keep=cfg.run.keep_checkpoints)
        save_model(core, run_dir / "model.safetensors")
        log.plot()

    # ---- the loop ----
    end = cfg.run.steps if stop_at is None else min(stop_at, cfg.run.steps)
    log = TrainLog(run_dir, start, cfg.run.steps, enabled=master, progress=progress)
    cpu0 = time.process_time()
    model.train()
    for step in range(start, end):
        if cpu_minutes is not None and out_of_cpu(cpu0, cpu_minutes, distributed, device):
            if master and step > start and step % cfg.run.checkpoint_every:
                checkpoint(step)  # unless the loop just wrote this step's checkpoint
            break
        lr = o.lr * lr_factor(step, o, cfg.run.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = draw_batch(prior, cfg.data, step_generator(cfg.run.seed, rank, step), step)
        with autocast:
            loss = batch_loss(model, batch, device, cfg.data.width_groups)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        optimizer.step()

        done = step + 1
        log.add(batch.task, float(loss.detach()), batch.batch_size * world)
        row = {}
        if done % cfg.run.log_every == 0 or done == end:
            row |= log.train_row(done, lr)
        if master and (done % cfg.run.val_every == 0 or done == end):
            row |= {"step": done} | validate()
        if row:
            log.write(row)
        if master and (done % cfg.run.checkpoint_every == 0 or done == end):
            checkpoint(done)
    log.close()

    if dump_params:
        from safetensors.torch import save_file

        Path(dump_params).mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in core.state_dict().items()},
                  str(Path(dump_params) / f"rank{rank}.safetensors"))
    if distributed:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return run_dir


def out_of_cpu(cpu0: float, minutes: float, distributed: bool, device: torch.device) -> bool:
    """Whether this process has used ``minutes`` of CPU time since ``cpu0``; under DDP the
    ranks agree (any rank out of budget stops all), so none waits for a missing step.
    The flag lives on the rank's device: NCCL reduces GPU tensors only."""
    spent = time.process_time() - cpu0 >= 60 * minutes
    if not distributed:
        return spent
    import torch.distributed as dist

    flag = torch.tensor([float(spent)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def main(argv: list[str] | None = None) -> int:
    from pfn.cli import CommandParser  # usage errors in one line, as every pfn command

    p = CommandParser(prog="pfn train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="TOML (or YAML) training config")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest intact checkpoint")
    p.add_argument("--allow-config-change", action="store_true",
                   help="resume (or warm start) although the config differs from the "
                        "checkpoint's; the new config then applies in full")
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
    try:
        cfg = with_run(load_config(a.config), out_dir=a.out_dir, steps=a.steps,
                       threads=a.threads)
        train(cfg, resume_run=a.resume, init_from=a.init_from,
              allow_config_change=a.allow_config_change, stop_at=a.stop_at,
              progress=not a.no_progress, dump_params=a.dump_params,
              cpu_minutes=a.cpu_minutes)
    except (ValueError, FileNotFoundError) as err:
        print(f"pfn train: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
