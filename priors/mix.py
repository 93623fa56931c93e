"""Mixtures of priors, and building any prior from a plain config mapping (TOML).

A mixture draws, for each dataset of a batch, which component prior it comes from; the
sub-batches are sampled in one call per component and interleaved in random order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from priors.base import Batch, Prior, check_sizes
from priors.bnn import BNNConfig, BNNPrior
from priors.choice import ChoiceConfig, ChoicePrior
from priors.glm import GLMConfig, GLMPrior
from priors.gp import GPConfig, GPPrior
from priors.rules import RulesConfig, RulesPrior
from priors.scm import SCMConfig, SCMPrior

PRIORS: dict[str, tuple[type, type]] = {
    "scm": (SCMPrior, SCMConfig),
    "gp": (GPPrior, GPConfig),
    "bnn": (BNNPrior, BNNConfig),
    "rules": (RulesPrior, RulesConfig),
    "glm": (GLMPrior, GLMConfig),
    "choice": (ChoicePrior, ChoiceConfig),
}


class MixturePrior:
    """Sample each dataset from ``priors[i]`` with probability ``weights[i]``."""

    def __init__(self, priors: Sequence[Prior], weights: Sequence[float]) -> None:
        if len(priors) == 0:
            raise ValueError("MixturePrior needs at least one prior")
        if len(priors) != len(weights):
            raise ValueError(f"got {len(priors)} priors but {len(weights)} weights")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {list(weights)}")
        self.priors = list(priors)
        self.weights = torch.tensor([float(w) for w in weights]) / sum(weights)

    def sample(
        self, batch_size: int, n_rows: int, n_train: int, generator: torch.Generator,
        task: str = "classification",
    ) -> Batch:
        check_sizes(batch_size, n_rows, n_train, task)
        which = torch.multinomial(self.weights, batch_size, replacement=True, generator=generator)
        parts = []
        for i, prior in enumerate(self.priors):
            n = int((which == i).sum())
            if n:
                parts.append(prior.sample(n, n_rows, n_train, generator, task))
        width = max(p.x.shape[2] for p in parts)

        def pad(t: torch.Tensor, value: float | bool = 0) -> torch.Tensor:
            extra = width - t.shape[-1]
            return torch.nn.functional.pad(t, (0, extra), value=value) if extra else t

        x = torch.cat([pad(p.x) for p in parts])
        cat = torch.cat([pad(p.categorical, False) for p in parts])
        order = torch.randperm(batch_size, generator=generator)
        return Batch(
            x=x[order],
            y=torch.cat([p.y for p in parts])[order],
            num_features=torch.cat([p.num_features for p in parts])[order],
            num_classes=torch.cat([p.num_classes for p in parts])[order],
            categorical=cat[order],
            n_train=n_train,
            task=task,
        )


def build_prior(spec: Mapping[str, Any]) -> Prior:
    """Build a prior from a mapping such as a TOML ``[prior]`` table.

    ``{"scm": {"weight": 0.7, ...SCMConfig fields}, "bnn": {"weight": 0.3}}`` gives a
    mixture; a single entry gives that prior alone. Unknown names or fields raise ValueError.
    """
    if not spec:
        raise ValueError("prior spec is empty; name at least one of " + ", ".join(PRIORS))
    priors, weights = [], []
    for name, options in spec.items():
        if name not in PRIORS:
            raise ValueError(f"unknown prior {name!r}; known: {sorted(PRIORS)}")
        options = dict(options or {})
        weights.append(float(options.pop("weight", 1.0)))
        prior_cls, config_cls = PRIORS[name]
        try:
            config = config_cls(**options)
        except TypeError as err:
            raise ValueError(f"prior {name!r}: {err}") from err
        priors.append(prior_cls(config))
    return priors[0] if len(priors) == 1 else MixturePrior(priors, weights)
