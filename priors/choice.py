"""Choice tables: the class is the option with the highest utility among a few alternatives.

Stated- and revealed-choice data (travel mode, heating system, fishing site, a product
among brands) have one group of columns per alternative (its price, time, quality) and a
target naming the chosen alternative. The decision compares columns with each other (the
cheapest option wins, unless another is much faster), which neither smooth random networks
nor rules on single columns express; and such tables often also store the chosen option's
own attributes, so the class can be read off by finding which alternative's price equals
the "price paid" column. This family draws exactly that (McFadden's random-utility model):

- k alternatives (2..max_classes) with m attributes each, in k x m columns; attribute a of
  alternative j enters its utility with a weight shared by all alternatives (price is
  price) plus an alternative-specific constant;
- optional individual covariates (income) that shift the weight of one attribute per row
  (taste heterogeneity) or favour one alternative;
- Gumbel noise of a per-dataset scale, from a deterministic choice to a noisy one;
- with probability ``p_copy``, columns holding the chosen alternative's attributes;
- attributes Gaussian or log-normal (prices), in the same units across alternatives, so
  post-processing warps no column on its own;
- irrelevant columns up to the drawn width, and a shuffled column order.

Regression tables take the best utility plus noise as target (the value of the choice set).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from priors.base import Batch, Range, check_probability, check_sizes, coerce_ranges
from priors.labels import classes_present, to_classes
from priors.postprocess import PostprocessConfig, finish


def _same_units() -> PostprocessConfig:
    # The alternatives' columns of one attribute share their units (a price is a price), and
    # a copied column equals its source: no per-column warps or rescaling, which would break
    # both (skewed attributes are drawn here, per attribute); no cutting into codes.
    return PostprocessConfig(p_categorical=0.0, p_warp=0.0, p_rescale=0.0)


@dataclass
class ChoiceConfig:
    """Hyperparameters of the choice prior (each Range drawn per dataset)."""

    max_features: int = 100
    num_options: Range = field(default_factory=lambda: Range(2, 6))
    attributes: Range = field(default_factory=lambda: Range(1, 3))
    covariates: Range = field(default_factory=lambda: Range(0, 3))
    irrelevant: Range = field(default_factory=lambda: Range(0, 6))
    p_copy: float = 0.5  # columns with the chosen alternative's attributes
    p_skewed: float = 0.5  # per attribute: log-normal values (prices, times)
    noise: Range = field(default_factory=lambda: Range(0.02, 2.0, log=True))  # Gumbel scale
    constant_scale: Range = field(default_factory=lambda: Range(0.0, 1.0))
    postprocess: PostprocessConfig = field(default_factory=_same_units)

    def __post_init__(self) -> None:
        coerce_ranges(self)
        if isinstance(self.postprocess, dict):
            self.postprocess = PostprocessConfig(**self.postprocess)
        self.num_options.check("num_options", 2, self.postprocess.max_classes)
        self.attributes.check("attributes", 1, 16)
        self.covariates.check("covariates", 0, 16)
        self.irrelevant.check("irrelevant", 0, 100)
        check_probability("p_copy", self.p_copy)
        check_probability("p_skewed", self.p_skewed)
        self.noise.check("noise", 0.0)
        self.constant_scale.check("constant_scale", 0.0)
        copies = 1 if self.p_copy > 0 else 0
        widest = (self.num_options.high + copies) * self.attributes.high \
            + self.covariates.high + self.irrelevant.high
        if widest > self.max_features:
            raise ValueError(f"max_features={self.max_features} is below the widest table "
                             f"these ranges draw ({widest:.0f} columns)")


class ChoicePrior:
    """Random-utility choices among alternatives. ``sample`` returns a :class:`Batch`."""

    def __init__(self, config: ChoiceConfig | None = None) -> None:
        self.config = config or ChoiceConfig()

    def sample(
        self, batch_size: int, n_rows: int, n_train: int, generator: torch.Generator,
        task: str = "classification",
    ) -> Batch:
        check_sizes(batch_size, n_rows, n_train, task)
        c, g, b, r = self.config, generator, batch_size, n_rows
        k = c.num_options.sample_int(b, g)
        if task == "classification":
            k = k.clamp(max=n_train)
        m = c.attributes.sample_int(b, g)
        n_cov = c.covariates.sample_int(b, g)
        n_irr = c.irrelevant.sample_int(b, g)
        copy = torch.rand(b, generator=g) < c.p_copy
        k_max, m_max = int(k.max()), int(m.max())
        opt_on = torch.arange(k_max).view(1, k_max) < k.view(b, 1)  # (b, K)
        att_on = torch.arange(m_max).view(1, m_max) < m.view(b, 1)  # (b, M)
        attrs = torch.randn(b, r, k_max, m_max, generator=g)
        # Some attributes positive and right-skewed (prices, times): log-normal, per attribute.
        skewed = torch.rand(b, 1, 1, m_max, generator=g) < c.p_skewed
        attrs = torch.where(skewed, torch.exp(0.6 * attrs), attrs)
        cov_max = max(int(n_cov.max()), 1)
        cov = torch.randn(b, r, cov_max, generator=g)
        cov_on = torch.arange(cov_max).view(1, cov_max) < n_cov.view(b, 1)
        cov = cov * cov_on.unsqueeze(1)

        # Utility: shared attribute weights, shifted per row by a covariate (taste), plus
        # alternative-specific constants and covariate effects per alternative.
        weight = torch.randn(b, 1, 1, m_max, generator=g) * att_on.view(b, 1, 1, m_max)
        taste = torch.randn(b, cov_max, m_max, generator=g) * 0.5
        weight = weight + torch.einsum("brc,bcm->brm", cov, taste).unsqueeze(2) * \
            att_on.view(b, 1, 1, m_max)
        utility = (attrs * weight).sum(-1)  # (b, r, K)
        scale = c.constant_scale.sample(b, g).view(b, 1, 1)
        utility = utility + scale * torch.randn(b, 1, k_max, generator=g)
        utility = utility + torch.einsum("brc,bck->brk", cov,
                                         0.5 * torch.randn(b, cov_max, k_max, generator=g))
        spread = utility.std(dim=(1, 2), keepdim=True).clamp_min(1e-6)
        gumbel = -torch.log(-torch.log(torch.rand(b, r, k_max, generator=g).clamp(1e-9, 1)))
        noisy = utility / spread + c.noise.sample(b, g).view(b, 1, 1) * gumbel
        noisy = noisy.masked_fill(~opt_on.unsqueeze(1), -float("inf"))
        choice = noisy.argmax(-1)  # (b, r)

        chosen = attrs.gather(2, choice.view(b, r, 1, 1).expand(b, r, 1, m_max)).squeeze(2)
        x, num_features = self._columns(attrs, opt_on, att_on, cov, cov_on, chosen, copy,
                                        n_irr, g)
        if task == "regression":
            y = noisy.max(-1).values
            n_cls = None
        else:
            y, n_cls = self._labels(choice, k, noisy, n_train, g)
        x, y, num_features, n_cls, cat = finish(x, y, num_features, n_train, task,
                                                c.postprocess, g, n_columns=c.max_features,
                                                num_classes=n_cls)
        return Batch(x, y, num_features, n_cls, cat, n_train, task)

    def _columns(self, attrs, opt_on, att_on, cov, cov_on, chosen, copy, n_irr, g):
        """The table (b, rows, width) in shuffled column order, and its widths (b,)."""
        b, r, k_max, m_max = attrs.shape
        on = (opt_on.unsqueeze(-1) & att_on.unsqueeze(1)).view(b, k_max * m_max)
        irr_max = max(int(n_irr.max()), 1)
        irr_on = torch.arange(irr_max).view(1, irr_max) < n_irr.view(b, 1)
        parts = [attrs.view(b, r, k_max * m_max), cov, chosen,
                 torch.randn(b, r, irr_max, generator=g)]
        masks = [on, cov_on, att_on & copy.view(b, 1), irr_on]
        x, used = torch.cat(parts, 2), torch.cat(masks, 1)
        # Used columns first, in random order; the rest are padding.
        keys = torch.rand(used.shape, generator=g) + (~used).float() * 2.0
        perm = keys.argsort(1)
        x = x.gather(2, perm.unsqueeze(1).expand(b, r, perm.shape[1]))
        num_features = used.sum(1)
        return x * (torch.arange(x.shape[2]).view(1, 1, -1) < num_features.view(b, 1, 1)), \
            num_features

    def _labels(self, choice, k, noisy, n_train, g):
        """Labels (the chosen alternative) and the number of classes; a dataset whose
        training rows miss an alternative falls back to classes cut from the utility of
        its first alternative against the best other one."""
        ok = classes_present(choice[:, :n_train], k)
        if bool(ok.all()):
            return choice.float(), k
        margin = noisy[:, :, 0] - noisy[:, :, 1:].max(-1).values
        margin = torch.nan_to_num(margin, neginf=-1e6, posinf=1e6)
        cut = to_classes(margin, n_train, k, self.config.postprocess, g)
        return torch.where(ok.view(-1, 1), choice.float(), cut), k
