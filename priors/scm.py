"""The structural-causal-model prior of TabPFN (Hollmann et al., 2022, Sec. 4.4).

A dataset is drawn by building a random layered graph: root causes are noise, every further
layer applies sparse random weights (edge dropout), a random activation per layer (or a
random decision tree per node, see :mod:`priors.trees`) and Gaussian noise. Features and the
target are read from random nodes, so some features are causes of the target, some are its
effects and some are unrelated to it. Some root causes may be categorical (a level per row
whose random per-level vector feeds the first layer, see :mod:`priors.categorical`); their
codes are then observed as categorical features. Everything is batched: per-dataset sizes
are realised by masking units of one padded tensor, never by a Python loop over datasets or
rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from priors.activations import apply_activation, check_activations
from priors.base import Batch, Range, check_probability, check_sizes, coerce_ranges
from priors.categorical import draw_codes, embed_codes, level_effects
from priors.postprocess import PostprocessConfig, finish
from priors.trees import random_trees


@dataclass
class SCMConfig:
    """Hyperparameters of the SCM prior; each Range is drawn independently per dataset."""

    max_features: int = 100
    num_features: Range = field(default_factory=lambda: Range(1, 100, log=True))
    num_layers: Range = field(default_factory=lambda: Range(2, 6))
    hidden: Range = field(default_factory=lambda: Range(2, 8, log=True))
    noise_std: Range = field(default_factory=lambda: Range(1e-4, 0.1, log=True))
    weight_scale: Range = field(default_factory=lambda: Range(0.5, 3.0, log=True))
    edge_dropout: Range = field(default_factory=lambda: Range(0.0, 0.8))
    activations: tuple[str, ...] = ("tanh", "relu", "identity", "sigmoid", "sine", "abs", "step")
    p_tree: float = 0.5  # probability that a dataset uses tree-based edges at all
    tree_fraction: Range = field(default_factory=lambda: Range(0.2, 1.0))  # of its nodes
    tree_depth: Range = field(default_factory=lambda: Range(1, 4))
    # Categorical root causes (per dataset): some, or (p_all_categorical) every feature.
    p_categorical_roots: float = 0.0
    categorical_root_fraction: Range = field(default_factory=lambda: Range(0.1, 1.0))
    p_all_categorical: float = 0.0
    root_levels: Range = field(default_factory=lambda: Range(2, 10, log=True))
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
        self.noise_std.check("noise_std", 0.0)
        self.weight_scale.check("weight_scale", 0.0)
        self.edge_dropout.check("edge_dropout", 0.0, 0.99)
        self.tree_fraction.check("tree_fraction", 0.0, 1.0)
        self.tree_depth.check("tree_depth", 1, 8)
        check_probability("p_tree", self.p_tree)
        check_probability("p_categorical_roots", self.p_categorical_roots)
        check_probability("p_all_categorical", self.p_all_categorical)
        self.categorical_root_fraction.check("categorical_root_fraction", 0.0, 1.0)
        self.root_levels.check("root_levels", 2, 1000)
        check_activations(self.activations)


class SCMPrior:
    """Random MLP / tree SCMs. ``sample`` returns a :class:`priors.base.Batch`."""

    def __init__(self, config: SCMConfig | None = None) -> None:
        self.config = config or SCMConfig()

    def sample(
        self, batch_size: int, n_rows: int, n_train: int, generator: torch.Generator,
        task: str = "classification",
    ) -> Batch:
        check_sizes(batch_size, n_rows, n_train, task)
        c, g, b, r = self.config, generator, batch_size, n_rows
        n_feat = c.num_features.sample_int(b, g)
        n_layers = c.num_layers.sample_int(b, g)
        # Wide enough that every dataset has a node for each feature plus the target.
        min_width = torch.ceil((n_feat + 2).float() / n_layers.float()).long()
        width = torch.maximum(c.hidden.sample_int(b, g), min_width)
        w_max, l_max = int(width.max()), int(n_layers.max())
        unit_used = torch.arange(w_max).view(1, w_max) < width.view(b, 1)  # (b, w_max)
        unit_on = unit_used.unsqueeze(1).float()

        noise = c.noise_std.sample(b, g).view(b, 1, 1)
        scale = c.weight_scale.sample(b, g).view(b, 1, 1)
        drop = c.edge_dropout.sample(b, g).view(b, 1, 1)
        use_tree = torch.rand(b, generator=g) < c.p_tree
        tree_frac = c.tree_fraction.sample(b, g) * use_tree.float()
        depth = c.tree_depth.sample_int(b, g)

        # Root causes: per-unit Gaussian with random mean and spread.
        mu = torch.randn(b, 1, w_max, generator=g)
        sd = torch.exp(torch.empty(b, 1, w_max).uniform_(-1.0, 0.5, generator=g))
        h = (mu + sd * torch.randn(b, r, w_max, generator=g)) * unit_on
        n_cat = self._num_categorical_roots(n_feat, g)
        if bool((n_cat > 0).any()):
            codes, emb = self._categorical_roots(n_cat, r, w_max, g)
            share = (n_cat.float() / n_feat.float()).view(b, 1, 1)
            h = (h * (1 - share).sqrt() + emb * share.sqrt()) * unit_on
        layers = [h]
        for _ in range(l_max):
            keep = (torch.rand(b, w_max, w_max, generator=g) >= drop).float()
            w = torch.randn(b, w_max, w_max, generator=g) * keep
            w = w * scale / torch.sqrt(width.view(b, 1, 1).float() * (1 - drop) + 1e-6)
            bias = torch.randn(b, 1, w_max, generator=g) * 0.5
            act = torch.randint(0, len(c.activations), (b,), generator=g)
            z = apply_activation(torch.bmm(h, w) + bias, act, c.activations)
            if bool(use_tree.any()):
                # Trees only for the used units picked as tree nodes (others would be masked).
                is_tree = (torch.rand(b, w_max, generator=g) < tree_frac.view(b, 1)) & unit_used
                ds, unit = is_tree.nonzero(as_tuple=True)
                z[ds, :, unit] = random_trees(h, width, depth, ds, g)
            h = (z + noise * torch.randn(b, r, w_max, generator=g)) * unit_on
            layers.append(h)

        nodes = torch.cat(layers, dim=2)  # (b, r, (l_max + 1) * w_max)
        n_nodes = nodes.shape[2]
        layer_of = torch.arange(n_nodes) // w_max
        unit_of = torch.arange(n_nodes) % w_max
        valid = (unit_of.view(1, -1) < width.view(b, 1)) & (
            layer_of.view(1, -1) <= n_layers.view(b, 1)
        )
        # Target from a non-root node; features from any other valid node.
        keys = torch.rand(b, n_nodes, generator=g)
        t_keys = torch.where(valid & (layer_of.view(1, -1) >= 1), keys, torch.full_like(keys, 2.0))
        target = t_keys.argmin(1)
        f_keys = torch.rand(b, n_nodes, generator=g)
        f_keys = torch.where(valid, f_keys, torch.full_like(f_keys, 2.0))
        f_keys.scatter_(1, target.view(b, 1), 3.0)
        # Only the first n_feat.max() columns are read; finish pads to max_features.
        d = int(n_feat.max())  # <= number of valid nodes - 1 (see min_width)
        idx = f_keys.argsort(1)[:, :d]
        x = nodes.gather(2, idx.view(b, 1, d).expand(b, r, d))
        y = nodes.gather(2, target.view(b, 1, 1).expand(b, r, 1)).squeeze(2)
        is_code = None
        if bool((n_cat > 0).any()):
            # The codes replace node columns at random places among the used ones.
            col = torch.arange(d).view(1, d)
            keys = torch.rand(b, d, generator=g) + (col >= n_feat.view(b, 1)).float() * 2.0
            rank = keys.argsort(1).argsort(1)
            is_code = rank < n_cat.view(b, 1)
            slot = rank.clamp(max=codes.shape[2] - 1).unsqueeze(1).expand(b, r, d)
            picked = codes.gather(2, slot)
            x = torch.where(is_code.unsqueeze(1), picked.to(x.dtype), x)

        x, y, n_feat, n_cls, cat = finish(x, y, n_feat, n_train, task, c.postprocess, g,
                                          n_columns=c.max_features, categorical=is_code)
        return Batch(x, y, n_feat, n_cls, cat, n_train, task)

    def _num_categorical_roots(self, n_feat: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """(batch,) how many features are categorical root causes (0 for most datasets)."""
        c, b = self.config, n_feat.shape[0]
        if c.p_categorical_roots == 0 and c.p_all_categorical == 0:
            return torch.zeros_like(n_feat)  # draws nothing: old configs keep their streams
        some = torch.rand(b, generator=g) < c.p_categorical_roots
        every = torch.rand(b, generator=g) < c.p_all_categorical
        frac = c.categorical_root_fraction.sample(b, g)
        n = torch.where(some, (frac * n_feat).ceil().long(), torch.zeros_like(n_feat))
        return torch.where(every, n_feat, n).clamp(max=n_feat)

    def _categorical_roots(self, n_cat: torch.Tensor, n_rows: int, width: int,
                           g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes (batch, rows, vars) of the categorical roots and their summed effects on the
        root units (batch, rows, width), scaled to unit variance per unit."""
        b, v = n_cat.shape[0], int(n_cat.max())
        levels = self.config.root_levels.sample_int(b * v, g).view(b, v)
        codes = draw_codes(levels, n_rows, g)
        ordinal = torch.rand(b, v, generator=g) < self.config.postprocess.p_ordinal
        effects = level_effects(levels, ordinal, width, g)
        on = torch.arange(v).view(1, v) < n_cat.view(b, 1)
        emb = embed_codes(codes, effects, on) / n_cat.clamp_min(1).float().sqrt().view(b, 1, 1)
        return codes, emb

