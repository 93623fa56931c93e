"""Saving and loading models and training state: safetensors plus JSON, never pickle.

A *model file* is one safetensors file whose metadata holds the :class:`ModelConfig` as
JSON, so it describes itself. A *training checkpoint* is a directory
``step-00001234/`` with ``model.safetensors``, ``optim.safetensors`` (optimizer moments and
RNG states) and ``state.json`` (step, scheduler, config). It is written as ``*.tmp``, every
file fsynced, then renamed in one atomic step, so a process killed at any moment (SIGKILL
included) leaves either the previous checkpoints or a complete new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pfn.model import PFN, ModelConfig

CHECKPOINT_PREFIX = "step-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, write) -> None:
    """Call ``write(tmp_path)``, fsync, and rename over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def save_model(model: PFN, path: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write the model's weights and config to one safetensors file (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
               for k, v in model.state_dict().items()}
    # Borders are kept in full precision: fp16 would merge neighbouring buckets.
    tensors["borders"] = model.borders.detach().cpu().float().contiguous()
    meta = {"config": model.cfg.to_json(), "format": "tabpfn-lite/1"}
    _write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return path


def load_model(path: str | Path, device: str | torch.device = "cpu") -> PFN:
    """Load a model file written by :func:`save_model` (float32 in memory)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"cannot read model file {path}: {err}") from err
    if "config" not in meta:
        raise ValueError(f"{path} has no model config in its metadata; not a model file")
    cfg = config_from_dict(json.loads(meta["config"]))
    model = PFN(cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    model.load_state_dict(state)
    return model.to(device).eval()


def config_from_dict(d: dict) -> ModelConfig:
    known = {f.name for f in fields(ModelConfig)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown model config fields {sorted(unknown)}")
    return ModelConfig(**d)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint directories under ``run_dir/checkpoints``, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)
            and not p.name.endswith(".tmp") and (p / "state.json").is_file()]
    return sorted(done, key=lambda p: p.name)


def save_checkpoint(run_dir: str | Path, step: int, model: PFN,
                    optimizer: torch.optim.Optimizer, scheduler, extra: dict,
                    keep: int = 3) -> Path:
    """Write a complete training checkpoint atomically and keep only the newest ``keep``."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{CHECKPOINT_PREFIX}{step:08d}"
    tmp = root / (final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_model(model, tmp / "model.safetensors")
    opt = optimizer.state_dict()
    tensors = {"rng.torch": torch.get_rng_state()}
    for pid, st in opt["state"].items():
        for name, value in st.items():
            tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous() \
                if torch.is_tensor(value) else torch.tensor(value)
    save_file(tensors, str(tmp / "optim.safetensors"))
    state = {"step": step, "param_groups": opt["param_groups"],
             "scheduler": scheduler.state_dict(), **extra}
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(ckpt: Path, model: PFN, optimizer: torch.optim.Optimizer, scheduler
                    ) -> dict:
    """Restore model, optimizer, scheduler and torch RNG from ``ckpt``; return state.json."""
    target = getattr(model, "module", model)
    weights = load_file(str(ckpt / "model.safetensors"))
    target.load_state_dict({k: v for k, v in weights.items()})
    tensors = load_file(str(ckpt / "optim.safetensors"))
    state = json.loads((ckpt / "state.json").read_text())
    opt_state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    return state


def config_dict(obj) -> dict:
    """A dataclass as a JSON-ready dict (Range and nested configs included)."""
    return json.loads(json.dumps(asdict(obj), default=str))
