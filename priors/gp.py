"""Gaussian-process prior for regression, with an exactly known posterior.

Inputs are uniform on [0, 1]^d; targets are one draw of a zero-mean GP with an RBF or
Matérn kernel plus Gaussian noise, with lengthscale, output scale and noise drawn per dataset.
Because the generating process is known, a network trained on this prior can be compared
with the exact GP posterior predictive (the headline experiment of Müller et al., 2022,
"Transformers Can Do Bayesian Inference").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from priors.base import Batch, Range, check_sizes, coerce_ranges
from priors.postprocess import PostprocessConfig, finish

KERNELS = ("rbf", "matern12", "matern32", "matern52")


def _no_postprocess() -> PostprocessConfig:
    return PostprocessConfig(p_categorical=0.0, p_missing=0.0, p_warp=0.0, p_rescale=0.0,
                             standardize=False)


@dataclass
class GPConfig:
    """Hyperparameters of the GP prior (each Range drawn per dataset)."""

    max_features: int = 100
    num_features: Range = field(default_factory=lambda: Range(1, 3))
    kernels: tuple[str, ...] = KERNELS
    lengthscale: Range = field(default_factory=lambda: Range(0.1, 1.0, log=True))
    outputscale: Range = field(default_factory=lambda: Range(0.5, 2.0, log=True))
    noise: Range = field(default_factory=lambda: Range(1e-3, 0.3, log=True))  # a variance
    postprocess: PostprocessConfig = field(default_factory=_no_postprocess)

    def __post_init__(self) -> None:
        coerce_ranges(self)
        if isinstance(self.postprocess, dict):
            self.postprocess = PostprocessConfig(**self.postprocess)
        self.kernels = tuple(self.kernels)
        if self.max_features < 1:
            raise ValueError(f"max_features must be >= 1, got {self.max_features}")
        self.num_features.check("num_features", 1, self.max_features)
        if not self.kernels or any(k not in KERNELS for k in self.kernels):
            raise ValueError(f"kernels must be a non-empty subset of {KERNELS}, got {self.kernels}")
        self.lengthscale.check("lengthscale", 1e-6)
        self.outputscale.check("outputscale", 1e-6)
        self.noise.check("noise", 0.0)


def kernel_matrix(
    x1: torch.Tensor, x2: torch.Tensor, kernel: str, lengthscale: torch.Tensor | float,
    outputscale: torch.Tensor | float,
) -> torch.Tensor:
    """k(x1, x2) for (batch, n, d) and (batch, m, d) inputs -> (batch, n, m).

    lengthscale and outputscale broadcast as (batch, 1, 1) tensors or floats.
    """
    dist = torch.cdist(x1.double(), x2.double()).div_(lengthscale)  # in place: (batch, n, m)
    if kernel == "rbf":
        k = dist.square_().mul_(-0.5).exp_()
    elif kernel == "matern12":
        k = dist.neg_().exp_()
    elif kernel in ("matern32", "matern52"):
        s = dist.mul_(math.sqrt(3.0 if kernel == "matern32" else 5.0))
        decay = torch.exp(-s)
        poly = s.square().div_(3.0).add_(s) if kernel == "matern52" else s
        k = poly.add_(1.0).mul_(decay)  # (1 + s) e^-s  or  (1 + s + s^2/3) e^-s
    else:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    return k.mul_(outputscale)


class GPPrior:
    """Draws y = f(x) + eps, f ~ GP(0, k). ``sample`` returns a :class:`priors.base.Batch`."""

    def __init__(self, config: GPConfig | None = None) -> None:
        self.config = config or GPConfig()

    def sample(
        self, batch_size: int, n_rows: int, n_train: int, generator: torch.Generator,
        task: str = "regression",
    ) -> Batch:
        check_sizes(batch_size, n_rows, n_train, task)
        c, g, b, r = self.config, generator, batch_size, n_rows
        n_feat = c.num_features.sample_int(b, g)
        d_max = int(n_feat.max())
        x = torch.rand(b, r, d_max, generator=g)
        x = x * (torch.arange(d_max).view(1, 1, -1) < n_feat.view(b, 1, 1))
        ls = c.lengthscale.sample(b, g).view(b, 1, 1).double()
        os_ = c.outputscale.sample(b, g).view(b, 1, 1).double()
        nz = c.noise.sample(b, g).view(b, 1, 1).double()
        which = torch.randint(0, len(c.kernels), (b,), generator=g)
        z = torch.randn(b, r, 1, generator=g, dtype=torch.float64)
        y = torch.empty(b, r)
        for i, name in enumerate(c.kernels):  # one batched Cholesky per kernel in use
            sel = which == i
            if bool(sel.any()):
                cov = kernel_matrix(x[sel], x[sel], name, ls[sel], os_[sel])  # (n, r, r)
                cov.diagonal(dim1=1, dim2=2).add_(nz[sel].view(-1, 1) + 1e-6)  # noise + jitter
                y[sel] = (torch.linalg.cholesky(cov) @ z[sel]).squeeze(-1).float()
        x, y, n_feat, n_cls, cat = finish(x, y, n_feat, n_train, task, c.postprocess, g,
                                  n_columns=c.max_features)
        return Batch(x, y, n_feat, n_cls, cat, n_train, task)
