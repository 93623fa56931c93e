"""Rule-like targets: classes decided by boolean or tree rules over a few columns.

Many real tables are decided by crisp rules over few columns: a board position wins when
three squares agree, a product is rejected when any criterion fails, a customer picks the
option whose price is under a threshold. Smooth random networks rarely produce such targets,
so this prior makes them explicitly. A table mixes discrete columns (2..~8 levels, codes in
no meaningful order) and numeric ones; the target is a weighted sum of a few rule terms, each
over 2..4 informative columns: parity (XOR), majority, "any of", "all of", or a small random
tree (random leaf value per cell). A term sees a discrete column through a random subset of
its levels and a numeric column through a sharp threshold; a tree may test one numeric
column twice (a band of prices). All other columns are irrelevant (independent of the
target). Classes cut the sum only between distinct values, so with no label noise the class
is a deterministic function of the informative columns; label noise then flips a per-dataset
share of labels. For regression the target is the sum plus Gaussian noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from priors.base import Batch, Range, check_probability, check_sizes, coerce_ranges
from priors.categorical import draw_discrete
from priors.labels import flip_labels
from priors.postprocess import PostprocessConfig, finish, native_discrete

KINDS = ("parity", "majority", "any", "all", "tree")


@dataclass
class RulesConfig:
    """Hyperparameters of the rule prior (each Range drawn per dataset)."""

    max_features: int = 100
    num_features: Range = field(default_factory=lambda: Range(2, 30, log=True))
    num_informative: Range = field(default_factory=lambda: Range(2, 8))
    p_all_discrete: float = 0.3  # tables made only of discrete columns
    discrete_fraction: Range = field(default_factory=lambda: Range(0.0, 1.0))  # otherwise
    levels: Range = field(default_factory=lambda: Range(2, 8, log=True))
    num_terms: Range = field(default_factory=lambda: Range(1, 4))
    term_arity: Range = field(default_factory=lambda: Range(2, 4))
    kinds: tuple[str, ...] = KINDS
    threshold_quantile: Range = field(default_factory=lambda: Range(0.1, 0.9))
    p_label_noise: float = 0.6  # else labels are exact
    label_noise: Range = field(default_factory=lambda: Range(0.0, 0.2))  # flip rate
    noise_std: Range = field(default_factory=lambda: Range(1e-3, 0.3, log=True))  # regression
    postprocess: PostprocessConfig = field(default_factory=native_discrete)

    def __post_init__(self) -> None:
        coerce_ranges(self)
        if isinstance(self.postprocess, dict):
            self.postprocess = PostprocessConfig(**self.postprocess)
        self.kinds = tuple(self.kinds)
        if self.max_features < 1:
            raise ValueError(f"max_features must be >= 1, got {self.max_features}")
        self.num_features.check("num_features", 1, self.max_features)
        self.num_informative.check("num_informative", 1)  # capped by num_features
        check_probability("p_all_discrete", self.p_all_discrete)
        self.discrete_fraction.check("discrete_fraction", 0.0, 1.0)
        self.levels.check("levels", 2, 1000)
        self.num_terms.check("num_terms", 1, 16)
        self.term_arity.check("term_arity", 1, 8)
        if not self.kinds or any(k not in KINDS for k in self.kinds):
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {self.kinds}")
        self.threshold_quantile.check("threshold_quantile", 1e-3, 1 - 1e-3)
        check_probability("p_label_noise", self.p_label_noise)
        self.label_noise.check("label_noise", 0.0, 0.5)
        self.noise_std.check("noise_std", 0.0)


class RuleTables(NamedTuple):
    """Raw rule tables before post-processing (all (batch, ...) tensors)."""

    x: torch.Tensor  # (batch, rows, features): codes in discrete columns, N(0, 1) otherwise
    y: torch.Tensor  # (batch, rows) the rule sum
    num_features: torch.Tensor  # (batch,)
    discrete: torch.Tensor  # (batch, features) bool
    informative: torch.Tensor  # (batch, features) bool: columns the rules may read


class RulesPrior:
    """Sums of random rules over a few columns. ``sample`` returns a :class:`Batch`."""

    def __init__(self, config: RulesConfig | None = None) -> None:
        self.config = config or RulesConfig()

    def sample(
        self, batch_size: int, n_rows: int, n_train: int, generator: torch.Generator,
        task: str = "classification",
    ) -> Batch:
        check_sizes(batch_size, n_rows, n_train, task)
        c, g, b = self.config, generator, batch_size
        t = self.draw_tables(b, n_rows, g)
        y = t.y
        if task == "regression":
            spread = y.std(1, keepdim=True)
            spread = torch.where(spread > 0, spread, torch.ones_like(spread))
            y = y + c.noise_std.sample(b, g).view(b, 1) * spread * torch.randn(y.shape, generator=g)
        x, y, n_feat, n_cls, cat = finish(t.x, y, t.num_features, n_train, task, c.postprocess, g,
                                          n_columns=c.max_features, categorical=t.discrete,
                                          exact=True)
        if task == "classification":
            noisy = torch.rand(b, generator=g) < c.p_label_noise
            rate = c.label_noise.sample(b, g) * noisy.float()
            y = flip_labels(y, n_cls, rate, n_train, g)
        return Batch(x, y, n_feat, n_cls, cat, n_train, task)

    def draw_tables(self, batch_size: int, n_rows: int, g: torch.Generator) -> RuleTables:
        """The features and rule sum of ``sample`` (which starts with exactly this draw)."""
        c, b, r = self.config, batch_size, n_rows
        n_feat = c.num_features.sample_int(b, g)
        n_inf = c.num_informative.sample_int(b, g).clamp(max=n_feat)
        d = int(n_feat.max())
        col = torch.arange(d).view(1, d)
        used = col < n_feat.view(b, 1)
        discrete, levels, codes = draw_discrete(used, r, c.p_all_discrete, c.discrete_fraction,
                                                c.levels, g)
        x = torch.where(discrete.unsqueeze(1), codes.float(), torch.randn(b, r, d, generator=g))
        x = x * used.unsqueeze(1)
        # Columns 0..n_inf-1 are informative here; a shuffle below hides which they are.
        y = self._rules(x, discrete, levels, n_inf, g)
        keys = torch.rand(b, d, generator=g) + (~used).float() * 2.0
        perm = keys.argsort(1)
        x = x.gather(2, perm.unsqueeze(1).expand(b, r, d))
        informative = (col < n_inf.view(b, 1)).gather(1, perm)
        return RuleTables(x, y, n_feat, discrete.gather(1, perm), informative)

    def _rules(self, x: torch.Tensor, discrete: torch.Tensor, levels: torch.Tensor,
               n_inf: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """The weighted sum of rule terms (batch, rows) over columns 0..n_inf-1 of x."""
        c = self.config
        b, r, _ = x.shape
        n_terms = c.num_terms.sample_int(b, g)
        t_max = int(n_terms.max())
        arity = c.term_arity.sample_int(b * t_max, g).view(b, t_max)
        k_max = int(arity.max())
        s = t_max * k_max  # (term, slot) pairs, flattened
        # The slots of a term read distinct informative columns while there are enough (a
        # column read twice could cancel out, e.g. in a parity); beyond that they repeat, so
        # a tree may cut one numeric column twice (a band).
        n_cols = int(n_inf.max())
        keys = torch.rand(b, t_max, n_cols, generator=g)
        keys = keys + (torch.arange(n_cols).view(1, 1, -1) >= n_inf.view(b, 1, 1)).float() * 2.0
        order = keys.argsort(-1)  # (b, T, n_cols): informative columns first, shuffled
        slot = (torch.arange(k_max).view(1, 1, -1) % n_inf.view(b, 1, 1)).expand(b, t_max, k_max)
        feat = order.gather(2, slot.clamp(max=n_cols - 1)).view(b, s)
        vals = x.gather(2, feat.unsqueeze(1).expand(b, r, s))  # (b, r, s)
        is_disc = discrete.gather(1, feat)  # (b, s)
        # Numeric: a sharp threshold at a random quantile of the N(0, 1) column.
        q = c.threshold_quantile.sample(b * s, g).view(b, 1, s)
        num_bit = vals > (2.0**0.5) * torch.erfinv(2 * q - 1)
        # Discrete: a random subset of levels, holding at least one level and missing one.
        n_lev = levels.gather(1, feat)  # (b, s)
        l_max = int(levels.max())
        subset = torch.rand(b, s, l_max, generator=g) < 0.5
        out = (torch.rand(b, s, generator=g) * n_lev).long()
        into = (out + 1 + (torch.rand(b, s, generator=g) * (n_lev - 1)).long()) % n_lev
        subset.scatter_(2, out.unsqueeze(-1), False)
        subset.scatter_(2, into.unsqueeze(-1), True)
        code = vals.long().clamp(0, l_max - 1).transpose(1, 2)  # (b, s, r)
        disc_bit = subset.gather(2, code).transpose(1, 2)
        bit = torch.where(is_disc.unsqueeze(1), disc_bit, num_bit).view(b, r, t_max, k_max)
        slot_on = torch.arange(k_max).view(1, 1, -1) < arity.unsqueeze(-1)  # (b, T, K)
        bit = bit & slot_on.unsqueeze(1)
        count = bit.sum(-1)  # (b, r, T)
        a = arity.unsqueeze(1)
        leaf = (bit.long() * (2 ** torch.arange(k_max)).view(1, 1, 1, -1)).sum(-1)
        leaves = torch.randn(b, t_max, 2**k_max, generator=g)
        tree = leaves.gather(2, leaf.transpose(1, 2)).transpose(1, 2)
        outputs = {
            "parity": (count % 2).float(),
            "majority": (2 * count > a).float(),
            "any": (count > 0).float(),
            "all": (count == a).float(),
            "tree": tree,
        }
        kind = torch.randint(0, len(c.kinds), (b, 1, t_max), generator=g)
        term = torch.zeros(b, r, t_max)
        for i, name in enumerate(c.kinds):
            term = torch.where(kind == i, outputs[name], term)
        sign = torch.where(torch.rand(b, 1, t_max, generator=g) < 0.5, -1.0, 1.0)
        weight = sign * torch.exp(torch.empty(b, 1, t_max).uniform_(-1.0, 1.0, generator=g))
        term_on = (torch.arange(t_max).view(1, 1, -1) < n_terms.view(b, 1, 1)).float()
        y = (term * weight * term_on).sum(-1)
        # A rule that never changes (e.g. "all of" four rare levels) would leave labels to
        # chance; such a dataset falls back to one cut of its first informative column.
        first = x[:, :, 0]
        cut = torch.where(discrete[:, :1], first == first[:, :1],
                          first > first.median(1, keepdim=True).values)
        return torch.where((y.std(1) > 0).view(b, 1), y, cut.float())
