"""Bayesian-neural-network prior: targets from a randomly initialised MLP on random inputs.

The simplest prior of Müller et al. (2022): features are independent inputs (uniform or
Gaussian), the target is a random MLP of random width, depth and activation applied to them
plus Gaussian noise. Unlike the SCM prior, every feature is a cause and none is an effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from priors.activations import apply_activation, check_activations
from priors.base import Batch, Range, check_sizes, coerce_ranges
from priors.postprocess import PostprocessConfig, finish


@dataclass
class BNNConfig:
    """Hyperparameters of the BNN prior (each Range drawn per dataset)."""

    max_features: int = 100
    num_features: Range = field(default_factory=lambda: Range(1, 100, log=True))
    num_layers: Range = field(default_factory=lambda: Range(1, 4))
    hidden: Range = field(default_factory=lambda: Range(8, 128, log=True))
    weight_scale: Range = field(default_factory=lambda: Range(0.5, 3.0, log=True))
    noise_std: Range = field(default_factory=lambda: Range(1e-3, 0.5, log=True))
    activations: tuple[str, ...] = ("tanh", "relu", "sigmoid", "sine", "abs", "leaky_relu")
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)

    def __post_init__(self) -> None:
        coerce_ranges(self)
        if isinstance(self.postprocess, dict):
            self.postprocess = PostprocessConfig(**self.postprocess)
        self.activations = tuple(self.activations)
        if self.max_features < 1:
            raise ValueError(f"max_features must be >= 1, got {self.max_features}")
        self.num_features.check("num_features", 1, self.max_features)
        self.num_layers.check("num_layers", 1, 32)
        self.hidden.check("hidden", 1, 4096)
        self.weight_scale.check("weight_scale", 0.0)
        self.noise_std.check("noise_std", 0.0)
        check_activations(self.activations)


class BNNPrior:
    """Random-MLP regression functions. ``sample`` returns a :class:`priors.base.Batch`."""

    def __init__(self, config: BNNConfig | None = None) -> None:
        self.config = config or BNNConfig()

    def sample(
        self, batch_size: int, n_rows: int, n_train: int, generator: torch.Generator,
        task: str = "classification",
    ) -> Batch:
        check_sizes(batch_size, n_rows, n_train, task)
        c, g, b, r = self.config, generator, batch_size, n_rows
        n_feat = c.num_features.sample_int(b, g)
        # Inputs: N(0, 1) or uniform with unit variance per dataset, drawn only for the used
        # cells of the first n_feat.max() columns (finish pads to max_features).
        f = int(n_feat.max())
        used = torch.arange(f).view(1, 1, f) < n_feat.view(b, 1, 1)
        gauss = torch.rand(b, generator=g) < 0.5
        x = torch.zeros(b, r, f)
        for is_gauss in (True, False):
            n = int(n_feat[gauss == is_gauss].sum()) * r  # cells to fill
            if n:
                cells = (used & (gauss == is_gauss).view(b, 1, 1)).expand(b, r, f)
                x.masked_scatter_(cells, torch.randn(n, generator=g) if is_gauss
                                  else (torch.rand(n, generator=g) - 0.5) * 3.46)
        n_layers = c.num_layers.sample_int(b, g)
        width = c.hidden.sample_int(b, g)
        w_max = int(width.max())
        unit_on = (torch.arange(w_max).view(1, 1, -1) < width.view(b, 1, 1)).float()
        scale = c.weight_scale.sample(b, g).view(b, 1, 1)
        act = torch.randint(0, len(c.activations), (b,), generator=g)
        fan_in = n_feat.view(b, 1, 1).float()
        h = torch.bmm(x, torch.randn(b, f, w_max, generator=g) * scale / fan_in.sqrt())
        h = apply_activation(h + torch.randn(b, 1, w_max, generator=g), act, c.activations)
        h = h * unit_on
        for layer in range(1, int(n_layers.max())):
            w = torch.randn(b, w_max, w_max, generator=g) * scale
            w = w / width.view(b, 1, 1).float().sqrt()
            z = apply_activation(torch.bmm(h, w), act, c.activations) * unit_on
            h = torch.where((n_layers > layer).view(b, 1, 1), z, h)
        out_w = torch.randn(b, w_max, 1, generator=g) / width.view(b, 1, 1).float().sqrt()
        y = torch.bmm(h, out_w).squeeze(-1)
        # Noise relative to the signal's spread; a constant signal (e.g. every ReLU unit dead)
        # gets unit-scale noise instead of none, so no dataset has a constant target.
        spread = y.std(1, keepdim=True)
        spread = torch.where(spread > 0, spread, torch.ones_like(spread))
        y = y + c.noise_std.sample(b, g).view(b, 1) * spread * torch.randn(b, r, generator=g)
        x, y, n_feat, n_cls, cat = finish(x, y, n_feat, n_train, task, c.postprocess, g,
                                  n_columns=c.max_features)
        return Batch(x, y, n_feat, n_cls, cat, n_train, task)
