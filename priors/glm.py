"""Generalised linear models: noisy, mostly additive targets, the home ground of logistic
regression.

Surveys, contingency tables and many observational tables have a target that depends on
each feature a little and on everything else a lot: the best a model can do is estimate
graded class probabilities that move additively with the features on the logit scale. On
such tables logistic regression is the strongest default baseline, and a prior-fitted
network matches it only where its prior puts mass on such functions (a Bayesian predictor
is as good as its prior's fit to the data; Müller et al. 2022, Sec. 3). The SCM, BNN and
rule priors draw mostly sharp or strongly non-linear targets with little label noise, so
this family draws the complement:

- a linear predictor over the features: a slope per numeric column, a random effect per
  level of a discrete column (nominal levels independent, ordinal ones monotone in the
  code, :func:`priors.categorical.level_effects`), a sparse set of informative columns
  with heavy-tailed importances, optionally a few pairwise products (interactions);
- numeric inputs independent or correlated (a random linear mixing);
- a signal strength per dataset (the standard deviation of the predictor) from nearly
  pure noise to nearly separable, so graded probabilities are the rule, not the exception;
- labels sampled, not cut: binary and ordinal targets from the predictor plus logistic
  noise cut at quantiles (ordered logit), nominal multi-class ones from one predictor per
  class (multinomial logit, argmax with Gumbel noise); regression targets are the predictor
  plus unit Gaussian noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from priors.base import Batch, Range, check_probability, check_sizes, coerce_ranges
from priors.categorical import draw_discrete, embed_codes, level_effects
from priors.labels import classes_present, sample_num_classes, to_classes
from priors.postprocess import PostprocessConfig, finish, native_discrete


@dataclass
class GLMConfig:
    """Hyperparameters of the GLM prior (each Range drawn per dataset)."""

    max_features: int = 100
    num_features: Range = field(default_factory=lambda: Range(1, 40, log=True))
    informative_fraction: Range = field(default_factory=lambda: Range(0.1, 1.0))
    p_all_discrete: float = 0.3  # tables made only of discrete columns
    discrete_fraction: Range = field(default_factory=lambda: Range(0.0, 1.0))  # otherwise
    levels: Range = field(default_factory=lambda: Range(2, 10, log=True))
    p_ordinal: float = 0.3  # per discrete column: its effect is monotone in the code
    p_correlated: float = 0.5  # numeric inputs mixed by a random matrix
    p_interactions: float = 0.3
    num_interactions: Range = field(default_factory=lambda: Range(1, 4))
    # Standard deviation of the predictor: against logistic noise for classes, against
    # unit Gaussian noise for regression (R² = s² / (1 + s²) on the raw features).
    signal: Range = field(default_factory=lambda: Range(0.3, 8.0, log=True))
    regression_signal: Range = field(default_factory=lambda: Range(0.3, 10.0, log=True))
    p_nominal: float = 0.5  # multi-class targets: multinomial logit, else ordered logit
    postprocess: PostprocessConfig = field(default_factory=native_discrete)

    def __post_init__(self) -> None:
        coerce_ranges(self)
        if isinstance(self.postprocess, dict):
            self.postprocess = PostprocessConfig(**self.postprocess)
        if self.max_features < 1:
            raise ValueError(f"max_features must be >= 1, got {self.max_features}")
        self.num_features.check("num_features", 1, self.max_features)
        self.informative_fraction.check("informative_fraction", 0.0, 1.0)
        self.discrete_fraction.check("discrete_fraction", 0.0, 1.0)
        self.levels.check("levels", 2, 1000)
        self.num_interactions.check("num_interactions", 0, 64)
        self.signal.check("signal", 0.0)
        self.regression_signal.check("regression_signal", 0.0)
        for name in ("p_all_discrete", "p_ordinal", "p_correlated", "p_interactions",
                     "p_nominal"):
            check_probability(name, getattr(self, name))


class GLMPrior:
    """Noisy (generalised) linear targets. ``sample`` returns a :class:`Batch`."""

    def __init__(self, config: GLMConfig | None = None) -> None:
        self.config = config or GLMConfig()

    def sample(
        self, batch_size: int, n_rows: int, n_train: int, generator: torch.Generator,
        task: str = "classification",
    ) -> Batch:
        check_sizes(batch_size, n_rows, n_train, task)
        c, g, b = self.config, generator, batch_size
        x, discrete, n_feat, eta = self.draw_predictors(b, n_rows, n_predictors=1 if
                                                        task == "regression" else
                                                        c.postprocess.max_classes, g=g)
        signal = (c.regression_signal if task == "regression" else c.signal).sample(b, g)
        signal = signal.view(b, 1)
        if task == "regression":
            y = signal * eta[:, :, 0] + torch.randn(b, n_rows, generator=g)
            n_cls = None
        else:
            n_cls = sample_num_classes(b, c.postprocess, g).clamp(max=n_train)
            y = self._labels(eta * signal.unsqueeze(-1), n_cls, n_train, g)
        x, y, n_feat, n_cls, cat = finish(x, y, n_feat, n_train, task, c.postprocess, g,
                                          n_columns=c.max_features, categorical=discrete,
                                          num_classes=n_cls)
        return Batch(x, y, n_feat, n_cls, cat, n_train, task)

    def draw_predictors(self, batch_size: int, n_rows: int, n_predictors: int,
                        g: torch.Generator
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw features (b, rows, d), the discrete mask (b, d), num_features (b,) and
        ``n_predictors`` standardised linear predictors (b, rows, n_predictors) over the same
        informative columns (one per class of a multinomial logit)."""
        c, b, r, p = self.config, batch_size, n_rows, n_predictors
        n_feat = c.num_features.sample_int(b, g)
        d = int(n_feat.max())
        used = torch.arange(d).view(1, d) < n_feat.view(b, 1)
        discrete, levels, codes = draw_discrete(used, r, c.p_all_discrete, c.discrete_fraction,
                                                c.levels, g)
        z = torch.randn(b, r, d, generator=g)
        mixed = torch.rand(b, 1, 1, generator=g) < c.p_correlated
        mixing = torch.randn(b, d, d, generator=g) / d**0.5 + torch.eye(d)
        z = torch.where(mixed, torch.bmm(z, mixing), z)
        z = (z - z.mean(1, keepdim=True)) / z.std(1, keepdim=True).clamp_min(1e-6)
        numeric = used & ~discrete
        x = torch.where(discrete.unsqueeze(1), codes.float(), z) * used.unsqueeze(1)

        keys = torch.rand(b, d, generator=g).masked_fill(~used, 2.0)
        n_inf = (c.informative_fraction.sample(b, g) * n_feat).ceil().long().clamp(1)
        informative = keys.argsort(1).argsort(1) < n_inf.view(b, 1)  # n_inf used columns
        importance = torch.exp(0.7 * torch.randn(b, d, generator=g)) * informative
        slopes = torch.randn(b, d, p, generator=g) * (importance * numeric).unsqueeze(-1)
        eta = torch.bmm(z * numeric.unsqueeze(1), slopes)
        ordinal = torch.rand(b, d, generator=g) < c.p_ordinal
        effects = level_effects(levels, ordinal, p, g) * importance.view(b, d, 1, 1)
        eta = eta + embed_codes(codes, effects, discrete & informative)

        inter = torch.rand(b, generator=g) < c.p_interactions
        if bool(inter.any()) and c.num_interactions.high >= 1:
            eta = eta + self._interactions(z, codes, levels, discrete, informative,
                                           inter, p, g)
        eta = (eta - eta.mean(1, keepdim=True)) / eta.std(1, keepdim=True).clamp_min(1e-6)
        return x, discrete, n_feat, eta

    def _interactions(self, z: torch.Tensor, codes: torch.Tensor, levels: torch.Tensor,
                      discrete: torch.Tensor, informative: torch.Tensor, on: torch.Tensor,
                      p: int, g: torch.Generator) -> torch.Tensor:
        """Products of pairs of informative columns (b, rows, p), zero where ``on`` is off.

        A discrete column enters through a random scalar per level (nominal), a numeric
        one through its standardised value; a pair may repeat a column (a square)."""
        b, r, d = z.shape
        scalar = level_effects(levels, torch.zeros_like(discrete), 1, g)[..., 0]  # (b, d, L)
        level_value = scalar.gather(2, codes.transpose(1, 2)).transpose(1, 2)  # (b, r, d)
        u = torch.where(discrete.unsqueeze(1), level_value, z)
        n_pairs = self.config.num_interactions.sample_int(b, g)
        k_max = int(n_pairs.max())
        weights = informative.float() + 1e-12
        first = torch.multinomial(weights, k_max, replacement=True, generator=g)
        second = torch.multinomial(weights, k_max, replacement=True, generator=g)
        prod = u.gather(2, first.unsqueeze(1).expand(b, r, k_max)) * \
            u.gather(2, second.unsqueeze(1).expand(b, r, k_max))
        active = (torch.arange(k_max).view(1, k_max) < n_pairs.view(b, 1)) & on.view(b, 1)
        coef = torch.randn(b, k_max, p, generator=g) * active.unsqueeze(-1)
        return torch.bmm(prod, coef)

    def _labels(self, logits: torch.Tensor, n_cls: torch.Tensor, n_train: int,
                g: torch.Generator) -> torch.Tensor:
        """Class labels (b, rows) sampled from the predictors (b, rows, max_classes)."""
        c = self.config
        b, r, k_max = logits.shape
        # Ordered logit: the first predictor plus logistic noise, cut at class quantiles.
        u = torch.rand(b, r, generator=g).clamp(1e-6, 1 - 1e-6)
        latent = logits[:, :, 0] + torch.log(u) - torch.log1p(-u)
        ordered = to_classes(latent, n_train, n_cls, c.postprocess, g)
        # Multinomial logit: one predictor per class, class sizes by a random bias.
        spread = c.postprocess.class_imbalance.sample(b, g).view(b, 1, 1)
        bias = spread * torch.randn(b, 1, k_max, generator=g)
        gumbel = -torch.log(-torch.log(torch.rand(b, r, k_max, generator=g).clamp(1e-9, 1)))
        active = torch.arange(k_max).view(1, 1, k_max) < n_cls.view(b, 1, 1)
        scores = (logits + bias + gumbel).masked_fill(~active, -float("inf"))
        nominal = scores.argmax(-1)
        use = (torch.rand(b, generator=g) < c.p_nominal) & (n_cls > 2)
        use = use & classes_present(nominal[:, :n_train], n_cls)
        return torch.where(use.view(b, 1), nominal.float(), ordered)
