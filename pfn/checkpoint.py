"""Saving and loading models and training state: safetensors plus JSON, never pickle.

A *model file* is one safetensors file whose metadata holds the :class:`ModelConfig` as
JSON, so it describes itself, and (format 2) the SHA-256 of its content: the config and
every tensor's name, dtype, shape and bytes. :func:`read_model_file` refuses a file whose
hash does not match, whose weights hold NaN or inf, whose config is beyond sane bounds, or
whose tensor shapes do not fit its config; the shapes are compared from the header with the
model built on the meta device, before any tensor is read, so a damaged header claiming a
huge model allocates nothing. Files of format 1 (written before hashes) still load,
unverified.

A *training checkpoint* is a directory ``step-00001234/`` with ``model.safetensors``,
``optim.safetensors`` (optimizer moments and RNG state), ``state.json`` (step, config) and,
written last, ``manifest.json`` with each file's size and SHA-256. It is written as
``*.tmp``, every file fsynced, then renamed in one atomic step, so a process killed at any
moment (SIGKILL included) leaves either the previous checkpoints or a complete new one.
:func:`latest_checkpoint` picks the newest one that verifies, so damage that happens later
(a flipped bit, a truncated copy) makes a resume fall back instead of start from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from pfn.config import model_config_from_dict
from pfn.model import PFN, ModelConfig

WEIGHTS_FORMAT = "tabpfn-lite/2"
UNVERIFIED_FORMAT = "tabpfn-lite/1"  # no recorded hash (the files shipped before format 2)
CHECKPOINT_FORMAT = 2
CHECKPOINT_PREFIX = "step-"
CHECKPOINT_FILES = ("model.safetensors", "optim.safetensors", "state.json")
MANIFEST = "manifest.json"
_CHECKPOINT_NAME = re.compile(r"step-\d{8}")


# ----- model files ----------------------------------------------------------------------

def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)``, fsync, and rename over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def content_sha256(config_json: str, tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a model: its config JSON, then per tensor in name order its name, dtype,
    shape and bytes. Independent of the file layout, so equal weights hash equal."""
    h = hashlib.sha256(config_json.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def save_model(model: PFN, path: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write the model's weights, config and content hash to one safetensors file
    (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
               for k, v in model.state_dict().items()}
    # Borders are kept in full precision: fp16 would merge neighbouring buckets.
    tensors["borders"] = model.borders.detach().cpu().float().contiguous()
    config = model.cfg.to_json()
    meta = {"config": config, "format": WEIGHTS_FORMAT,
            "sha256": content_sha256(config, tensors)}
    _write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return path


def _meta_model(cfg: ModelConfig) -> PFN:
    """The model of ``cfg`` on the meta device: every shape, no memory."""
    with torch.device("meta"):
        return PFN(cfg)


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a model file of ``cfg`` holds, with its shape (nothing is allocated)."""
    return {k: tuple(v.shape) for k, v in _meta_model(cfg).state_dict().items()}


def describe(cfg: ModelConfig) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in asdict(cfg).items()) + "}"


def check_architecture(source: str, theirs: ModelConfig, ours: ModelConfig) -> None:
    """Refuse weights whose tensors cannot fit the run's model (``source`` names them)."""
    if expected_shapes(theirs) != expected_shapes(ours):
        raise ValueError(f"{source} has model config {describe(theirs)}, the run's config "
                         f"has {describe(ours)}: another architecture")


@dataclass(frozen=True)
class ModelFile:
    """A model file read and checked by :func:`read_model_file`."""

    path: Path
    config: ModelConfig
    tensors: dict[str, torch.Tensor]
    sha256: str  # the content hash (recorded and checked, or computed for format 1)
    verified: bool  # False for format-1 files, which record no hash


def read_model_file(path: str | Path) -> ModelFile:
    """Read a model file, refusing damaged ones with a ValueError that names the file."""
    return _read(path)[0]


def _read(path: str | Path) -> tuple[ModelFile, PFN]:
    """The checked file, and its model on the meta device (to load the tensors into)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"cannot read model file {path}: {err}") from err
    if "config" not in meta:
        raise ValueError(f"{path} has no model config in its metadata; not a model file")
    fmt = meta.get("format")
    if fmt not in (WEIGHTS_FORMAT, UNVERIFIED_FORMAT):
        raise ValueError(f"model file {path} has format {fmt!r}; this version reads "
                         f"{WEIGHTS_FORMAT} and {UNVERIFIED_FORMAT}")
    if fmt == WEIGHTS_FORMAT and "sha256" not in meta:
        raise ValueError(f"model file {path} (format {fmt}) records no sha256; damaged")
    try:
        cfg = model_config_from_dict(json.loads(meta["config"]))
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"model file {path} has a bad model config: {err}") from err
    meta_model = _meta_model(cfg)
    want = {k: tuple(v.shape) for k, v in meta_model.state_dict().items()}
    if shapes != want:
        bad = sorted(k for k in want.keys() | shapes.keys() if want.get(k) != shapes.get(k))
        raise ValueError(f"model file {path}: tensors do not fit its model config "
                         f"{describe(cfg)}: " + ", ".join(
                             f"{k} {shapes.get(k, 'missing')} != {want.get(k, 'none')}"
                             for k in bad[:3]) + (" ..." if len(bad) > 3 else ""))
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"cannot read model file {path}: {err}") from err
    digest = content_sha256(meta["config"], tensors)
    if "sha256" in meta and digest != meta["sha256"]:
        raise ValueError(f"model file {path}: content SHA-256 {digest[:12]}... differs from "
                         f"the recorded {meta['sha256'][:12]}...: the file is damaged")
    floats = {k: t for k, t in tensors.items() if t.is_floating_point()}
    sums = [t.sum(dtype=torch.float32) for t in floats.values()]
    if sums and not bool(torch.stack(sums).isfinite().all()):  # name culprits if needed
        bad = {k: int((~t.isfinite()).sum()) for k, t in floats.items()}
        bad = {k: n for k, n in bad.items() if n}
        if bad:
            raise ValueError(f"model file {path}: {sum(bad.values())} NaN or inf weights ("
                             + ", ".join(f"{n} in {k}" for k, n in list(bad.items())[:3])
                             + (", ..." if len(bad) > 3 else "") + ")")
    return ModelFile(path, cfg, tensors, digest, "sha256" in meta), meta_model


def weights_fingerprint(path: str | Path) -> str:
    """The SHA-256 that identifies a model file's weights and config (checked on reading)."""
    return read_model_file(path).sha256


def load_model(path: str | Path, device: str | torch.device = "cpu") -> PFN:
    """Load a model file written by :func:`save_model` (float32 in memory).

    The model's ``weights_fingerprint`` attribute is the file's content hash (that of
    :func:`weights_fingerprint`), so whoever holds the model can say which weights it runs.
    """
    found, model = _read(path)
    state = {k: v.float() if v.is_floating_point() else v for k, v in found.tensors.items()}
    model.load_state_dict(state, assign=True)  # the meta model takes the tensors as they are
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        model = PFN(found.config)  # a tensor the file does not hold: initialise normally
        model.load_state_dict(state)
    model.weights_fingerprint = found.sha256
    return model.to(device).eval()


# ----- training checkpoints -------------------------------------------------------------

def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint directories under ``run_dir/checkpoints``, oldest first (not verified)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _CHECKPOINT_NAME.fullmatch(p.name))


def _step_of(ckpt: Path) -> int:
    return int(ckpt.name.removeprefix(CHECKPOINT_PREFIX))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(run_dir: str | Path, step: int, model: PFN,
                    optimizer: torch.optim.Optimizer, extra: dict, keep: int = 3) -> Path:
    """Write a complete training checkpoint atomically and keep only the newest ``keep``."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{CHECKPOINT_PREFIX}{step:08d}"
    tmp = root / (final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_model(model, tmp / "model.safetensors")
    tensors = {"rng.torch": torch.get_rng_state()}
    for pid, st in optimizer.state_dict()["state"].items():
        for name, value in st.items():
            tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous() \
                if torch.is_tensor(value) else torch.tensor(value)
    save_file(tensors, str(tmp / "optim.safetensors"))
    state = {"format": CHECKPOINT_FORMAT, "step": step, **extra}
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    files = {name: {"bytes": (tmp / name).stat().st_size, "sha256": file_sha256(tmp / name)}
             for name in CHECKPOINT_FILES}
    (tmp / MANIFEST).write_text(json.dumps({"format": CHECKPOINT_FORMAT, "step": step,
                                            "files": files}, indent=1))
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


def verify_checkpoint(ckpt: str | Path) -> tuple[dict, ModelFile]:
    """Check a checkpoint folder; return its state.json and its checked model file.

    A ValueError says what is wrong. Checkpoints written before manifests (no manifest.json,
    no format in state.json) pass unverified if their three files are present; their
    weights are still checked.
    """
    ckpt = Path(ckpt)
    manifest_path = ckpt / MANIFEST
    present = sorted(p.name for p in ckpt.iterdir()) if ckpt.is_dir() else []
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
            fmt, step = manifest["format"], manifest["step"]
            listed = {name: (manifest["files"][name]["bytes"], manifest["files"][name]["sha256"])
                      for name in CHECKPOINT_FILES}
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
            raise ValueError(f"{manifest_path}: unreadable manifest ({err!r})") from err
        if fmt != CHECKPOINT_FORMAT or step != _step_of(ckpt):
            raise ValueError(f"{manifest_path}: format {fmt!r} and step {step!r}, expected "
                             f"{CHECKPOINT_FORMAT} and {_step_of(ckpt)}")
        for name, (size, sha256) in listed.items():
            path = ckpt / name
            if not path.is_file():
                raise ValueError(f"{path}: missing")
            if path.stat().st_size != size:
                raise ValueError(f"{path}: {path.stat().st_size} bytes, the manifest says "
                                 f"{size} (truncated or overwritten)")
            if file_sha256(path) != sha256:
                raise ValueError(f"{path}: SHA-256 differs from the manifest's (the file "
                                 "changed after it was written)")
    elif not all(name in present for name in CHECKPOINT_FILES):
        raise ValueError(f"{ckpt}: incomplete, no {MANIFEST} (holds {present or 'nothing'})")
    try:
        state = json.loads((ckpt / "state.json").read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{ckpt / 'state.json'}: unreadable ({err})") from err
    if not isinstance(state, dict):
        raise ValueError(f"{ckpt / 'state.json'}: not a JSON object")
    if not manifest_path.is_file() and "format" in state:
        raise ValueError(f"{ckpt}: {MANIFEST} is missing")
    if state.get("step") != _step_of(ckpt):
        raise ValueError(f"{ckpt / 'state.json'}: step {state.get('step')} does not match "
                         "the folder name")
    return state, read_model_file(ckpt / "model.safetensors")  # NaN or inf disqualify


def latest_checkpoint(run_dir: str | Path, say: Callable[[str], None] = print
                      ) -> Path | None:
    """The newest checkpoint that verifies, or None if the run has none at all.

    Newer ones that fail are reported through ``say`` with the reason; if checkpoints exist
    but none verifies, a ValueError names the run folder.
    """
    found = list_checkpoints(run_dir)
    reasons = []
    for ckpt in reversed(found):
        try:
            verify_checkpoint(ckpt)
        except (ValueError, OSError) as err:
            reasons.append(str(err))
            say(f"skipping checkpoint {ckpt.name}: {err}")
            continue
        return ckpt
    if found:
        raise ValueError(f"no intact checkpoint in {Path(run_dir) / 'checkpoints'} "
                         f"({len(found)} damaged: " + "; ".join(reasons) + ")")
    return None


def set_aside(ckpt: Path) -> Path:
    """Rename a damaged checkpoint ``step-N.damaged`` (kept for inspection, never loaded)."""
    target = ckpt.with_name(ckpt.name + ".damaged")
    i = 1
    while target.exists():
        target, i = ckpt.with_name(f"{ckpt.name}.damaged{i}"), i + 1
    os.replace(ckpt, target)
    return target


def load_checkpoint(ckpt: str | Path, model: PFN, optimizer: torch.optim.Optimizer) -> dict:
    """Verify ``ckpt``, restore model weights, optimizer moments and the torch RNG, and
    return its state.json.

    The optimizer keeps its own hyperparameters (learning rate, betas, weight decay): they
    come from the run's config, so a config change applies to every field alike.
    """
    ckpt = Path(ckpt)
    state, weights = verify_checkpoint(ckpt)
    target = getattr(model, "module", model)
    check_architecture(f"checkpoint {ckpt}", weights.config, target.cfg)
    target.load_state_dict(weights.tensors)
    tensors = load_file(str(ckpt / "optim.safetensors"))
    opt_state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = value
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    torch.set_rng_state(tensors["rng.torch"])
    return state
