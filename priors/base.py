"""The one batch type every prior returns, and the small config helpers they share.

A prior is anything with ``sample(batch_size, n_rows, n_train, generator, task)`` returning a
:class:`Batch`. The pretraining loop only ever sees that interface, so SCM, GP and BNN priors
(and mixtures of them) plug in alike, as in automl/PFNs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Protocol

import torch

TASKS = ("classification", "regression")


@dataclass
class Batch:
    """A batch of synthetic supervised datasets.

    x: (batch, rows, features) float32, NaN where a value is missing; columns beyond a
       dataset's ``num_features`` are zero.
    y: (batch, rows) float32; class indices 0..k-1 for classification, real values otherwise.
    num_features: (batch,) int64, used feature columns per dataset.
    num_classes: (batch,) int64, classes per dataset (0 for regression).
    categorical: (batch, features) bool, columns holding integer category codes.
    n_train: rows [0, n_train) are the training (context) rows, the rest are test rows.
    task: "classification" or "regression".
    """

    x: torch.Tensor
    y: torch.Tensor
    num_features: torch.Tensor
    num_classes: torch.Tensor
    categorical: torch.Tensor
    n_train: int
    task: str

    @property
    def batch_size(self) -> int:
        return self.x.shape[0]


class Prior(Protocol):
    def sample(
        self, batch_size: int, n_rows: int, n_train: int, generator: torch.Generator, task: str
    ) -> Batch: ...


@dataclass
class Range:
    """A closed interval a per-dataset hyperparameter is drawn from.

    ``log=True`` draws log-uniformly (scales, rates), else uniformly.
    """

    low: float
    high: float
    log: bool = False

    def check(self, name: str, minimum: float = -math.inf, maximum: float = math.inf) -> None:
        if not (minimum <= self.low <= self.high <= maximum):
            raise ValueError(
                f"{name}: need {minimum} <= low <= high <= {maximum}, got low={self.low}, "
                f"high={self.high}"
            )
        if self.log and self.low <= 0:
            raise ValueError(f"{name}: a log-uniform range needs low > 0, got {self.low}")

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n draws as a float32 tensor of shape (n,)."""
        u = torch.rand(n, generator=generator)
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return torch.exp(lo + u * (hi - lo))
        return self.low + u * (self.high - self.low)

    def sample_int(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n integer draws in [low, high] as int64 (log-uniform favours small values)."""
        lo, hi = self.low, self.high + 1
        u = torch.rand(n, generator=generator)
        if self.log:
            v = torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        else:
            v = lo + u * (hi - lo)
        return v.floor().clamp(self.low, self.high).long()


def as_range(value: Range | dict | list | tuple | float) -> Range:
    """Accept a Range, a {low, high, log} mapping (from TOML) or a [low, high] pair."""
    if isinstance(value, Range):
        return value
    if isinstance(value, dict):
        return Range(**value)
    if isinstance(value, (list, tuple)):
        return Range(*value)
    return Range(float(value), float(value))


def coerce_ranges(config: object) -> None:
    """Turn TOML-style range fields of a config dataclass into :class:`Range` in place."""
    for f in fields(config):  # type: ignore[arg-type]
        value = getattr(config, f.name)
        if "Range" in str(f.type) and not isinstance(value, Range):
            setattr(config, f.name, as_range(value))


def check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")


def check_positive(name: str, value: float, strict: bool = True) -> None:
    if (strict and not value > 0) or (not strict and not value >= 0):
        raise ValueError(f"{name} must be {'>' if strict else '>='} 0, got {value}")


def check_sizes(batch_size: int, n_rows: int, n_train: int, task: str) -> None:
    """Validate the arguments of ``Prior.sample`` (shared by all priors)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n_rows < 2:
        raise ValueError(f"n_rows must be >= 2, got {n_rows}")
    if not 1 <= n_train < n_rows:
        raise ValueError(f"n_train must be in [1, n_rows), got {n_train} with n_rows={n_rows}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task == "classification" and n_train < 2:
        raise ValueError(f"n_train must be >= 2 for classification (each of >= 2 classes "
                         f"needs a training row), got {n_train}")


def standardize(x: torch.Tensor, dim: int = 1, eps: float = 1e-6) -> torch.Tensor:
    """Zero mean, unit variance along ``dim`` (rows), ignoring nothing (no NaN expected)."""
    mean = x.mean(dim=dim, keepdim=True)
    std = x.std(dim=dim, keepdim=True)
    return (x - mean) / (std + eps)
