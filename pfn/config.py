"""The training job's configuration: frozen, validated dataclasses and the one parser.

A run is described by a :class:`TrainConfig` with five sections, as in a TOML file::

    [model]   the architecture (pfn.model.ModelConfig, saved with the weights)
    [prior.NAME]  one table per prior family of priors.mix.PRIORS: weight + its config fields
    [data]    how each step's batch is shaped
    [optim]   AdamW and the learning-rate schedule
    [run]     steps, seed, device, output folder, checkpoint and logging cadence

:func:`config_from_dict` is the only parser: the job reads TOML files with it, and
:mod:`pfn.checkpoint` reads the configs recorded in weights files and checkpoints with it,
so a config written by :func:`config_to_dict` always parses back to an equal config.
Every config is immutable; overrides build a new, re-validated one (:func:`with_run`).
"""

from __future__ import annotations

import json
import math
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from pfn.model import ModelConfig
from priors.mix import PRIORS

# Sane bounds for a model config: a file claiming more is damaged or hostile, and is refused
# before anything is allocated for it.
MODEL_LIMITS = {"max_features": 10_000, "max_classes": 100, "d_model": 4096, "n_layers": 64,
                "n_heads": 256, "d_ff": 16_384, "n_buckets": 100_000}


ROW_SCALES = ("uniform", "log")  # DataConfig.rows_scale


@dataclass(frozen=True)
class DataConfig:
    """How each step's batch is shaped. Rows and split are drawn per step.

    Row curriculum (off by default): with ``rows_ramp_steps = K > 0`` the largest row count
    drawn at step s ramps linearly from ``rows_ramp_start`` to ``max_rows`` over the first K
    steps, so the model sees short datasets first. It is a pure function of the step, so a
    resumed run draws what an uninterrupted run would.

    ``rows_scale``: row counts are drawn uniformly in [min_rows, max rows] ("uniform"), or
    log-uniformly ("log": as many datasets of 64-128 rows as of 512-1024). Raising max_rows
    from 512 to 1024 with uniform draws halves the share of short datasets (25% of steps
    at <= 300 rows against 53%), which cost R² on the small real regression tables (model
    v3, MODEL_CARD.md); log draws keep short datasets at half the steps while the long ones
    still teach the contexts of 1000 rows that large tables are split into.
    """

    batch_size: int = 16
    min_rows: int = 64
    max_rows: int = 512
    min_train_fraction: float = 0.3
    max_train_fraction: float = 0.9
    p_regression: float = 0.3  # share of steps that train the regression head
    rows_ramp_steps: int = 0
    rows_ramp_start: int = 0
    rows_scale: str = "uniform"
    # Forward the batch in this many groups of similar width (see pfn.train.batch_loss): 1
    # for the "row" encoder, whose cost hardly depends on the width; more for per-cell ones.
    width_groups: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if not 4 <= self.min_rows <= self.max_rows:
            raise ValueError(f"data: need 4 <= min_rows <= max_rows, got min_rows="
                             f"{self.min_rows}, max_rows={self.max_rows}")
        if not 0 < self.min_train_fraction <= self.max_train_fraction < 1:
            raise ValueError("data: need 0 < min_train_fraction <= max_train_fraction < 1, "
                             f"got {self.min_train_fraction}, {self.max_train_fraction}")
        if not 0 <= self.p_regression <= 1:
            raise ValueError(f"data.p_regression must be in [0, 1], got {self.p_regression}")
        if not 1 <= self.width_groups <= self.batch_size:
            raise ValueError(f"data.width_groups must be in [1, batch_size], got "
                             f"{self.width_groups}")
        if self.rows_scale not in ROW_SCALES:
            raise ValueError(f"data.rows_scale must be one of {ROW_SCALES}, got "
                             f"{self.rows_scale!r}")
        if self.rows_ramp_steps < 0:
            raise ValueError(f"data.rows_ramp_steps must be >= 0 (0 = no row curriculum), "
                             f"got {self.rows_ramp_steps}")
        if self.rows_ramp_steps and not self.min_rows <= self.rows_ramp_start <= self.max_rows:
            raise ValueError(f"data.rows_ramp_start must be in [min_rows, max_rows] = "
                             f"[{self.min_rows}, {self.max_rows}], got {self.rows_ramp_start}")
        if not self.rows_ramp_steps and self.rows_ramp_start:
            raise ValueError(f"data.rows_ramp_start = {self.rows_ramp_start} has no effect "
                             "with rows_ramp_steps = 0; set both or neither")

    def max_rows_at(self, step: int | None) -> int:
        """The largest row count drawn at ``step`` (None: after the curriculum)."""
        k = self.rows_ramp_steps
        if step is None or step >= k:
            return self.max_rows
        return self.rows_ramp_start + (self.max_rows - self.rows_ramp_start) * step // k

    def draw_rows(self, g: torch.Generator, step: int | None) -> int:
        """One step's row count, on ``rows_scale`` up to ``max_rows_at(step)``."""
        hi = self.max_rows_at(step)
        if self.rows_scale == "uniform":  # the draw of every run before rows_scale existed
            return int(torch.randint(self.min_rows, hi + 1, (1,), generator=g))
        u = float(torch.rand(1, generator=g))
        lo = math.log(self.min_rows)
        return min(hi, int(math.exp(lo + u * (math.log(hi + 1) - lo))))


@dataclass(frozen=True)
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

    def __post_init__(self) -> None:
        if not 0 < self.lr < math.inf:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"optim.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not self.grad_clip > 0:
            raise ValueError(f"optim.grad_clip must be > 0, got {self.grad_clip}")


@dataclass(frozen=True)
class RunConfig:
    steps: int = 10_000
    seed: int = 0
    device: str = "auto"  # auto: cuda when available
    bf16: bool = False  # autocast matrix products to bfloat16 (CUDA or CPU)
    threads: int = 0  # torch CPU threads; 0 leaves torch's default
    out_dir: str = "runs/default"
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    val_every: int = 200
    val_batches: int = 4
    log_every: int = 10
    n_borders_batches: int = 16  # prior batches used to place the bar-distribution borders

    def __post_init__(self) -> None:
        for name in ("steps", "checkpoint_every", "keep_checkpoints", "val_every", "log_every",
                     "n_borders_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"run.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("seed", "threads", "val_batches"):
            if getattr(self, name) < 0:
                raise ValueError(f"run.{name} must be >= 0, got {getattr(self, name)}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError) as err:
                raise ValueError(f"run.device must be 'auto' or a torch device such as "
                                 f"'cpu' or 'cuda:0', got {self.device!r}") from err


# Fields that say where and how fast a run goes, not what it computes: a resumed run may
# change them freely (the run folder moved, another machine, more threads).
PLACEMENT_FIELDS = ("run.out_dir", "run.threads", "run.device")


@dataclass(frozen=True)
class PriorFamily:
    """One family of the prior mixture: its name in ``priors.mix.PRIORS``, its share of the
    datasets, and its config dataclass (``SCMConfig``, ``GPConfig``, ...)."""

    name: str
    weight: float
    config: Any

    def __post_init__(self) -> None:
        if self.name not in PRIORS:
            raise ValueError(f"unknown prior {self.name!r}; known: {sorted(PRIORS)}")
        if not 0 <= self.weight < math.inf:
            raise ValueError(f"prior.{self.name}.weight must be >= 0, got {self.weight}")
        if not isinstance(self.config, PRIORS[self.name][1]):
            raise TypeError(f"prior.{self.name}.config must be a "
                            f"{PRIORS[self.name][1].__name__}, got {type(self.config).__name__}")

    def sizes(self) -> dict[str, int]:
        """The family's ``max_features`` and ``max_classes`` (its own or its post-processing
        config's), where its config has them."""
        out = {}
        for name in ("max_features", "max_classes"):
            for owner in (self.config, getattr(self.config, "postprocess", None)):
                if isinstance(getattr(owner, name, None), int):
                    out[name] = getattr(owner, name)
                    break
        return out


@dataclass(frozen=True)
class PriorConfig:
    """The prior: one or more families, each drawn with probability proportional to its
    weight (a single family is used alone, not as a one-component mixture)."""

    families: tuple[PriorFamily, ...] = (PriorFamily("scm", 1.0, PRIORS["scm"][1]()),)

    def __post_init__(self) -> None:
        if not self.families:
            raise ValueError("prior: name at least one family of " + ", ".join(PRIORS))
        names = [f.name for f in self.families]
        if len(set(names)) != len(names):
            raise ValueError(f"prior: each family may appear once, got {names}")
        if sum(f.weight for f in self.families) <= 0:
            raise ValueError("prior: the family weights must have a positive sum, got "
                             f"{[f.weight for f in self.families]}")

    def __getitem__(self, name: str) -> PriorFamily:
        for f in self.families:
            if f.name == name:
                return f
        raise KeyError(name)

    def names(self) -> list[str]:
        return [f.name for f in self.families]

    def build(self):
        """The prior object the job samples from (``sample(batch_size, n_rows, ...)``)."""
        from priors import MixturePrior

        parts = [PRIORS[f.name][0](f.config) for f in self.families]
        if len(parts) == 1:
            return parts[0]
        return MixturePrior(parts, [f.weight for f in self.families])


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        check_model_limits(self.model)
        # The model must be able to read every dataset the prior draws.
        for family in self.prior.families:
            sizes = family.sizes()
            checks = [("max_features", self.model.max_features)]
            if self.data.p_regression < 1:  # classes matter only if classification is drawn
                checks.append(("max_classes", self.model.max_classes))
            for name, model_value in checks:
                if sizes.get(name, 0) > model_value:
                    raise ValueError(
                        f"prior.{family.name}.{name} = {sizes[name]} exceeds model.{name} = "
                        f"{model_value}: the model cannot take the prior's datasets; make "
                        f"prior.{family.name}.{name} <= {model_value} or enlarge the model")


def check_model_limits(cfg: ModelConfig) -> None:
    for name, limit in MODEL_LIMITS.items():
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > limit:
            raise ValueError(f"model.{name} = {value} is beyond the sane limit {limit}")


# ----- the parser ---------------------------------------------------------------------

_SCALARS = {"int": int, "float": float, "bool": bool, "str": str}


def _is_a(value: Any, want: type) -> bool:
    if isinstance(value, bool) and want is not bool:
        return False  # True is an int to Python, not to a config
    return isinstance(value, want) or (want is float and isinstance(value, int))


def _build(cls: type, values: Any, section: str):
    """``cls(**values)`` with unknown keys and wrongly typed scalars reported by name."""
    if not isinstance(values, Mapping):
        raise ValueError(f"[{section}] must be a table, got {values!r}")
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # unresolvable annotations: the class checks itself
        hints = {}
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"[{section}]: unknown keys {unknown}; allowed: {sorted(known)}")
    for key, value in values.items():
        want = _SCALARS.get(getattr(hints.get(key), "__name__", ""))
        if want is not None and not _is_a(value, want):
            raise ValueError(f"{section}.{key} must be of type {want.__name__}, got {value!r}")
    try:
        return cls(**values)
    except TypeError as err:
        raise ValueError(f"[{section}]: {err}") from err


def model_config_from_dict(d: Any, section: str = "model") -> ModelConfig:
    """A :class:`ModelConfig` from a mapping (a TOML table or a weights file's metadata)."""
    cfg = _build(ModelConfig, d, section)
    check_model_limits(cfg)
    return cfg


def prior_config_from_dict(d: Any) -> PriorConfig:
    """``{"scm": {"weight": 0.7, ...SCMConfig fields}, "gp": {...}}`` -> PriorConfig."""
    if not isinstance(d, Mapping) or not d:
        raise ValueError("[prior] must name at least one family of " + ", ".join(PRIORS))
    families = []
    for name, options in d.items():
        if name not in PRIORS:
            raise ValueError(f"unknown prior {name!r}; known: {sorted(PRIORS)}")
        options = dict(options or {})
        weight = options.pop("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ValueError(f"prior.{name}.weight must be a number, got {weight!r}")
        config = _build(PRIORS[name][1], options, f"prior.{name}")
        families.append(PriorFamily(name, float(weight), config))
    return PriorConfig(tuple(families))


def config_from_dict(d: Any) -> TrainConfig:
    """Parse a whole training config (missing sections take their defaults)."""
    if not isinstance(d, Mapping):
        raise ValueError(f"a training config must be a mapping, got {type(d).__name__}")
    sections = {"model", "prior", "data", "optim", "run"}
    unknown = sorted(set(d) - sections)
    if unknown:
        raise ValueError(f"unknown config sections {unknown}; allowed: {sorted(sections)}")
    parts: dict[str, Any] = {"model": model_config_from_dict(d.get("model", {}))}
    if "prior" in d:
        parts["prior"] = prior_config_from_dict(d["prior"])
    for name, cls in (("data", DataConfig), ("optim", OptimConfig), ("run", RunConfig)):
        parts[name] = _build(cls, d.get(name, {}), name)
    return TrainConfig(**parts)


def load_config(path: str | Path) -> TrainConfig:
    """Read a TOML (or YAML) training config file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return config_from_dict(yaml.safe_load(text) or {})
        return config_from_dict(tomllib.loads(text))
    except (ValueError, TypeError) as err:  # TOMLDecodeError is a ValueError
        raise ValueError(f"{path}: {err}") from err


def config_to_dict(cfg: TrainConfig) -> dict:
    """A JSON-ready dict in the TOML layout; :func:`config_from_dict` parses it back."""
    prior = {f.name: {"weight": f.weight, **asdict(f.config)} for f in cfg.prior.families}
    d = {"model": asdict(cfg.model), "prior": prior, "data": asdict(cfg.data),
         "optim": asdict(cfg.optim), "run": asdict(cfg.run)}
    return json.loads(json.dumps(d))


def with_run(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    """``cfg`` with run fields replaced (command-line overrides); None leaves a field."""
    changes = {k: v for k, v in changes.items() if v is not None}
    return replace(cfg, run=replace(cfg.run, **changes)) if changes else cfg


def flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> {"a.b.c": value}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(old: Mapping, new: Mapping, ignore: tuple[str, ...] = ()) -> list[str]:
    """Fields that differ between two config dicts, as ``"optim.lr: 0.001 -> 0.0005"``."""
    a, b = flatten(old), flatten(new)
    missing = object()
    return [f"{k}: {a.get(k, '(none)')} -> {b.get(k, '(none)')}"
            for k in sorted(a.keys() | b.keys())
            if k not in ignore and a.get(k, missing) != b.get(k, missing)]
