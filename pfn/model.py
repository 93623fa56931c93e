"""The prior-fitted transformer: predicts test rows from labelled training rows in context.

One token per row enters the in-context transformer, as in TabPFN (Hollmann et al., 2022).
How a row becomes that token is the architecture choice ``ModelConfig.arch``:

- ``"row"``: one linear map of the row's (standardised) values and missing flags;
- ``"cell"``: every cell is a token and a small transformer attends across the features of
  each row before collapsing it to one vector (:class:`pfn.row_encoder.CellRowEncoder`), so
  the capacity spent on a row grows with its number of features (TabICL, Qu et al., 2025).

Training rows attend to training
rows; test rows attend only to training rows, so a test row's prediction never depends on
the other test rows, and the training rows' keys and values can be computed once and reused
for any number of later test batches (:meth:`PFN.fit_context` / :meth:`PFN.predict_context`).

Everything that depends on the training rows (standardisation with their statistics, NaN
handling, outlier squashing, target scaling) happens inside ``forward``, so an exported graph
takes raw floats and every runtime computes the same thing.

Shapes: B datasets, R rows (N training + T test), F features, E = d_model.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pfn.layers import Block
from pfn.row_encoder import CellRowEncoder, FeatureSumEncoder


@dataclass(frozen=True)
class ModelConfig:
    """Every architectural number; saved beside the weights so a checkpoint describes itself."""

    max_features: int = 100
    max_classes: int = 10
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 4
    d_ff: int = 512
    n_buckets: int = 1000  # bar-distribution buckets for regression
    dropout: float = 0.0
    # Standardise features and targets with the training rows' statistics inside the model.
    # On for real tables (any units); off only for priors with a known absolute scale, such as
    # the fixed-hyperparameter GP of the mimicry experiment, where standardising would throw
    # away what the exact posterior knows (the lengthscale and output scale in raw units).
    standardize: bool = True
    # How a row becomes a token: "row" (one linear map), "feature" (a sum of per-feature
    # non-linear embeddings) or "cell" (a transformer over the row's cells); see
    # pfn.row_encoder. cell_dim is the identity width of both, cell_ff the basis width of
    # "feature"; the other cell_* numbers only matter for "cell".
    arch: str = "row"
    cell_dim: int = 32
    cell_layers: int = 2
    cell_heads: int = 4
    cell_ff: int = 64
    cell_cls: int = 4  # [CLS] tokens per row; their outputs, concatenated, form the row

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.cell_dim % self.cell_heads:
            raise ValueError(f"cell_dim ({self.cell_dim}) must be divisible by cell_heads "
                             f"({self.cell_heads})")
        for name in ("max_features", "max_classes", "d_model", "n_layers", "n_heads", "d_ff",
                     "n_buckets", "cell_dim", "cell_layers", "cell_heads", "cell_ff",
                     "cell_cls"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads "
                             f"({self.n_heads})")
        if not 2 <= self.max_classes <= 100:
            raise ValueError(f"max_classes must be in [2, 100], got {self.max_classes}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


ARCHS = ("row", "feature", "cell")
SQUASH_AT = 4.0  # standardised values beyond this are squashed logarithmically


def _nan_stats(x: torch.Tensor, n_train: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over the training rows, ignoring NaN. x: (B, R, F) -> two (B, 1, F)."""
    xt = x[:, :n_train]
    ok = ~torch.isnan(xt)
    cnt = ok.sum(1, keepdim=True).clamp_min(1).to(x.dtype)
    xz = torch.where(ok, xt, torch.zeros_like(xt))
    mean = xz.sum(1, keepdim=True) / cnt
    dev = torch.where(ok, xt - mean, torch.zeros_like(xt))
    var = (dev * dev).sum(1, keepdim=True) / (cnt - 1).clamp_min(1)
    return mean, var.sqrt()


def encode_features(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                    max_features: int, num_features: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """Raw features -> standardised, squashed, zero-padded values plus missing indicators.

    x: (B, R, F) raw floats with NaN for missing; mean, std: (B, 1, F) training statistics;
    num_features: (B,) used columns per dataset when x is zero-padded (pretraining batches),
    by default F. Returns (B, R, 2 * max_features). Values are scaled by
    sqrt(max_features / used features) so the
    encoder input has a similar norm whatever the number of used features (TabPFN 2022
    scales by the same ratio).
    """
    f = x.shape[-1]
    z, missing = standardize_features(x, mean, std)
    if num_features is None:
        z = z * math.sqrt(max_features / f)
    else:
        z = z * torch.sqrt(max_features / num_features.clamp_min(1).to(z.dtype)).view(-1, 1, 1)
    pad = max_features - f
    return torch.cat([F.pad(z, (0, pad)), F.pad(missing, (0, pad))], dim=-1)


def standardize_features(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (B, R, F) -> standardised values with NaN as 0, and missing flags (0/1), both
    (B, R, F). Beyond SQUASH_AT standard deviations values grow only logarithmically, so
    one outlier cannot dominate a token."""
    z = (x - mean) / (std + 1e-6)
    missing = torch.isnan(z)
    z = torch.where(missing, torch.zeros_like(z), z)
    excess = torch.log1p((z.abs() - SQUASH_AT).clamp_min(0))
    z = torch.where(z.abs() > SQUASH_AT, torch.sign(z) * (SQUASH_AT + excess), z)
    return z, missing.to(z.dtype)


def target_scale(y_train: torch.Tensor, standardize: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) (B, 1) that map training targets (B, N) to the model's target space.

    Used by the model and by the pretraining job's bucket borders, so both agree. Without
    ``standardize`` the model sees raw targets: (0, 1).
    """
    if not standardize:
        return torch.zeros_like(y_train[:, :1]), torch.ones_like(y_train[:, :1])
    y_mean = y_train.mean(1, keepdim=True)
    y_std = y_train.std(1, keepdim=True).nan_to_num(0.0).clamp_min(1e-8) \
        if y_train.shape[1] > 1 else torch.ones_like(y_mean)
    return y_mean, y_std


class PFN(nn.Module):
    """Tabular PFN with a classification head and a bar-distribution regression head."""

    def __init__(self, cfg: ModelConfig, borders: torch.Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        e = cfg.d_model
        self.encoder = {"row": lambda: nn.Linear(2 * cfg.max_features, e),
                        "feature": lambda: FeatureSumEncoder(cfg),
                        "cell": lambda: CellRowEncoder(cfg)}[cfg.arch]()
        self.class_embedding = nn.Embedding(cfg.max_classes, e)
        self.target_encoder = nn.Linear(1, e)
        self.blocks = nn.ModuleList(Block(e, cfg.n_heads, cfg.d_ff, cfg.dropout)
                                    for _ in range(cfg.n_layers))
        self.ln_out = nn.LayerNorm(e)
        self.class_head = nn.Sequential(nn.Linear(e, cfg.d_ff), nn.GELU(),
                                        nn.Linear(cfg.d_ff, cfg.max_classes))
        self.reg_head = nn.Sequential(nn.Linear(e, cfg.d_ff), nn.GELU(),
                                      nn.Linear(cfg.d_ff, cfg.n_buckets))
        if borders is None:  # placeholder until set from prior samples (pfn.bar.make_borders)
            borders = torch.linspace(-3, 3, cfg.n_buckets + 1)
        if borders.shape != (cfg.n_buckets + 1,):
            raise ValueError(f"borders must have shape ({cfg.n_buckets + 1},), "
                             f"got {tuple(borders.shape)}")
        self.register_buffer("borders", borders.float().clone())

    # ----- embedding -------------------------------------------------------------------
    def _embed(self, x: torch.Tensor, y_train: torch.Tensor, task: str, n_train: int,
               num_features: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens (B, R, E) for all rows, plus the training features' mean and std."""
        if x.shape[-1] > self.cfg.max_features:
            raise ValueError(f"x has {x.shape[-1]} features; this model takes at most "
                             f"{self.cfg.max_features}")
        if self.cfg.standardize:
            mean, std = _nan_stats(x, n_train)
        else:  # raw values (NaN handling and squashing still apply)
            mean = torch.zeros_like(x[:, :1])
            std = torch.ones_like(mean)
        h = self._rows(x, mean, std, num_features)
        if task == "classification":
            lab = self.class_embedding(y_train.long().clamp(0, self.cfg.max_classes - 1))
        else:
            y_mean, y_std = self.target_scale(y_train)
            yz = ((y_train - y_mean) / y_std).clamp(-100, 100)
            lab = self.target_encoder(yz.unsqueeze(-1))
        h = torch.cat([h[:, :n_train] + lab, h[:, n_train:]], dim=1)
        return h, mean, std

    def _rows(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              num_features: torch.Tensor | None) -> torch.Tensor:
        """Raw rows (B, R, F) -> row tokens (B, R, E), by the configured architecture."""
        if self.cfg.arch == "row":
            return self.encoder(encode_features(x, mean, std, self.cfg.max_features,
                                                num_features))
        z, missing = standardize_features(x, mean, std)
        return self.encoder(z, missing, num_features)

    def _head(self, h: torch.Tensor, task: str, num_classes: torch.Tensor | None) -> torch.Tensor:
        h = self.ln_out(h)
        if task == "regression":
            return self.reg_head(h)
        logits = self.class_head(h)
        if num_classes is not None:  # classes the dataset does not have get no probability
            unused = torch.arange(self.cfg.max_classes, device=h.device) >= num_classes.view(-1, 1)
            logits = logits.masked_fill(unused.unsqueeze(1), float("-inf"))
        return logits

    # ----- full pass -------------------------------------------------------------------
    def forward(self, x: torch.Tensor, y_train: torch.Tensor, task: str = "classification",
                num_classes: torch.Tensor | None = None,
                num_features: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the rows after the training rows.

        x: (B, R, F) raw features of N training rows followed by T test rows (NaN = missing);
        y_train: (B, N) class indices (classification) or raw targets (regression).
        num_classes: (B,) classes per dataset; by default 1 + the largest training label.
        num_features: (B,) used columns of zero-padded pretraining batches; by default F.
        Returns (B, T, max_classes) logits, or (B, T, n_buckets) bar logits over
        :meth:`scaled_borders` (regression, in the standardised target space).
        """
        n = y_train.shape[1]
        if task == "classification" and num_classes is None:
            num_classes = y_train.amax(1).long() + 1
        h, _, _ = self._embed(x, y_train, task, n, num_features)
        for block in self.blocks:
            k, v = block.keys_values(h[:, :n])
            h = block.attend(h, k, v)
        return self._head(h[:, n:], task, num_classes)

    def target_scale(self, y_train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the training targets, each (B, 1), as used inside the model."""
        return target_scale(y_train, self.cfg.standardize)

    def scaled_borders(self, y_train: torch.Tensor) -> torch.Tensor:
        """Bucket borders in the units of ``y_train``: (B, n_buckets + 1)."""
        mean, std = self.target_scale(y_train)
        return self.borders.unsqueeze(0) * std + mean

    # ----- fit once, predict many ------------------------------------------------------
    @torch.no_grad()
    def fit_context(self, x_train: torch.Tensor, y_train: torch.Tensor,
                    task: str = "classification",
                    num_features: torch.Tensor | None = None) -> dict:
        """Encode training rows once: per-layer keys/values plus the statistics they used.

        The cache holds the training features' mean and std, because test rows are
        standardised with them; results equal :meth:`forward` (tested). ``num_features`` as
        in :meth:`forward` (the ONNX export passes it as a tensor).
        """
        n = x_train.shape[1]
        h, mean, std = self._embed(x_train, y_train, task, n, num_features)
        kvs = []
        for block in self.blocks:
            k, v = block.keys_values(h)
            kvs.append((k, v))
            h = block.attend(h, k, v)
        num_classes = y_train.amax(1).long() + 1 if task == "classification" else None
        return {"kv": kvs, "mean": mean, "std": std, "task": task, "num_classes": num_classes,
                "n_features": x_train.shape[-1]}

    @torch.no_grad()
    def predict_context(self, ctx: dict, x_test: torch.Tensor,
                        num_features: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for test rows (B, T, F) given a cache from :meth:`fit_context`."""
        if x_test.shape[-1] != ctx["n_features"]:
            raise ValueError(f"x_test has {x_test.shape[-1]} features, the context "
                             f"{ctx['n_features']}")
        h = self._rows(x_test, ctx["mean"], ctx["std"], num_features)
        for block, (k, v) in zip(self.blocks, ctx["kv"], strict=True):
            h = block.attend(h, k, v)
        return self._head(h, ctx["task"], ctx["num_classes"])
