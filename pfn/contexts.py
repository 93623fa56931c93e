"""Large tables: every training row in some context, bounded memory, honest warnings.

The network was pretrained on datasets of at most a few hundred rows and attends from every
row to every training row, so a context of ``max_train_rows`` rows is what it can use well
and what memory allows (attention scores grow with the square of the context). A larger
training set is split into **local contexts** (MixturePFN, Xu et al. 2024; LoCalPFN, Thomas
et al. 2024): each ensemble member grows a :class:`pfn.routing.RowRouter`, a binary tree
over the features, until every leaf holds at most ``max_train_rows`` rows (and about that
many). Each leaf is one context; a test row is predicted by the leaf it falls into, once
per member, and the members are averaged. So every training row is in
exactly one context per member (but the member reused from choosing the routing, below,
which lacks the rows held out for that choice), fitting costs O(N x context) instead of
O(N^2), and predicting costs the same per test row as with one context.

Why this design, in short (the measurements, on ``shared/datasets/large/`` with
``benchmarks/large_tables.py``, are in the model card, ``pfn/weights/MODEL_CARD.md``,
"Local contexts: design measurements"):

- local contexts beat a random subsample per member (bagging) on average, and more so with
  more rows: a local context shows the network a test row's neighbourhood at a resolution
  a global subsample cannot (a rare class can still be better served by a global sample);
- how the routers split is :mod:`pfn.routing`'s subject: random quantile splits on
  features drawn by importance, or on a combination of discrete columns ("cells"); which
  routing a fit uses is decided on held-out rows (:mod:`pfn.routing_trial`), since no
  fixed rule served every table;
- one member per router and as many routers as members beat one shared router with all
  members in every leaf: a test row near a split of one router is inside a leaf of another;
- the context's size trades attention cost (quadratic) against what the network sees;
  halving it does not halve the time, since per-row work outside attention stays. The
  classifier's default is longer than the regressor's because its network was pretrained
  on longer datasets (the estimators' ``max_train_rows``).

Where gradient boosting still won is tables whose signal lies in sharp interactions or many
small effects that need many rows at once (a context is the network's whole view of a
neighbourhood); larger contexts would help there, at quadratic cost. What the estimators do
instead is give every context a booster's out-of-fold prediction as one more feature,
chosen by the same held-out trial (:mod:`pfn.boosting`).

Regression members see different targets, so their bar distributions have different
borders; every leaf's distribution is rebinned to the borders a single context over all
training rows would have (:func:`pfn.bar_distribution.rebin_matrix`, a sparse map).
With local contexts the regressor's targets are first power-transformed
(:mod:`pfn.target_transform`): leaves standardise their own targets, and a skewed target
gives leaves in its tail scales far from the bulk's.

Memory per training row: the engine keeps each context's keys and values (per member,
2 x n_layers x d_model float32 numbers per row). Per test row: the chunk's features and,
for regression, one float64 probability per bucket while the chunk is processed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pfn.bar_distribution import (
    BarDistribution,
    clip_outer_borders,
    rebin_matrix,
    softmax,
    tail_bounds,
)
from pfn.preprocessing import EnsemblePlan, draw_feature_sets
from pfn.routing import RowRouter, grow_router, split_weights

if TYPE_CHECKING:
    from pfn.routing_trial import RoutingTrial

# Attention scores one network call may hold (bytes). A context of N rows needs
# 4 x n_heads x N^2 bytes in fit and 4 x n_heads x N x test rows in predict; beyond this
# budget ``fit`` refuses the parameters instead of exhausting the machine's memory.
MEMORY_BUDGET = 2 << 30
ROUTED_ROWS = 4096  # test rows routed at once with local contexts (bounds the chunk's memory)

@dataclass
class LocalContexts:
    """Per member, a router and one single-member :class:`EnsemblePlan` per leaf.

    ``x`` (n, F) and ``y`` (n,) are the encoded training rows and the network's targets
    (class indices, or standardised targets), kept so that contexts can be re-encoded
    (after unpickling or loading); both are None in an estimator saved without its
    training rows, which keeps the engine's cache instead. Regression: ``grid`` holds the
    common borders (K + 1,) every leaf's distribution is rebinned to, and ``clip`` the
    (low, high) to which a leaf's outer borders are pulled in first. The engine's contexts
    live in the estimator, one per leaf and group of members: :meth:`encode`.
    """

    routers: list[RowRouter]
    plans: list[list[EnsemblePlan]]
    leaf_rows: list[list[np.ndarray]]
    x: np.ndarray | None
    y: np.ndarray | None
    task: str
    n_classes: int = 0
    grid: np.ndarray | None = None
    clip: tuple[float, float] | None = None

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, y_idx: np.ndarray | None,
            n_levels: np.ndarray, *, n_estimators: int, max_features: int, max_classes: int,
            context_rows: int, transforms: tuple[str, ...], encodings: tuple[str, ...],
            seed: int, weights: np.ndarray | None = None,
            first_member: int = 0) -> LocalContexts:
        """Draw the members' columns, grow one router per member and plan every leaf.

        Member i uses ``transforms[i % len(transforms)]`` and ``encodings[i %
        len(encodings)]`` in every one of its leaves, as a member of one context does
        (i counted from ``first_member``, for members joining a reused one).
        Routers split on features drawn with probabilities ``weights`` (F,)
        (:func:`pfn.routing.routing_candidates`), by default
        :func:`pfn.routing.split_weights`.
        """
        rng = np.random.default_rng(seed)
        feature_sets = draw_feature_sets(x.shape[1], max_features, n_estimators, rng)
        n_classes = int(y_idx.max()) + 1 if y_idx is not None else 0
        if weights is None:
            weights = split_weights(x, y if y_idx is None else y_idx, y_idx is not None, rng)
        routers, plans, leaf_rows = [], [], []
        for i, feats in enumerate(feature_sets):
            router, leaves = grow_router(x, context_rows, rng, weights)
            seeds = rng.integers(2**31 - 1, size=len(leaves))
            routers.append(router)
            leaf_rows.append(leaves)
            plans.append([EnsemblePlan.fit(
                x[rows], None if y_idx is None else y_idx[rows], n_levels,
                n_estimators=1, max_features=max_features, max_classes=max_classes,
                max_train_rows=context_rows,
                transforms=(transforms[(first_member + i) % len(transforms)],),
                encodings=(encodings[(first_member + i) % len(encodings)],), seed=int(s),
                feature_sets=[feats], n_classes=n_classes or None)
                for rows, s in zip(leaves, seeds, strict=True)])
        largest = max(r.size for leaves in leaf_rows for r in leaves)
        if largest > context_rows:  # once per fit, whatever the number of members
            warnings.warn(f"a context of {largest} training rows could not be split (too "
                          "many rows share their feature values) and exceeds max_train_rows="
                          f"{context_rows}: its member sees a random subset of "
                          f"{context_rows} of them. Raise max_train_rows to use them all.",
                          UserWarning, stacklevel=4)
        clip = None
        if y_idx is None:  # to half a target span beyond the training targets (clip_tails)
            clip = tail_bounds(float(y.min()), float(y.max()), float(y.std()))
        return cls(routers, plans, leaf_rows, x, y, "classification" if y_idx is not None
                   else "regression", n_classes, clip=clip)

    def prepend(self, trial: RoutingTrial) -> LocalContexts:
        """These contexts with ``trial``'s member first: its leaves' rows mapped from the
        rows it was fitted on (all but the held-out ones) to these training rows."""
        rows = [trial.keep[r] for r in trial.local.leaf_rows[0]]
        return dataclasses.replace(self, routers=trial.local.routers + self.routers,
                                   plans=trial.local.plans + self.plans,
                                   leaf_rows=[rows] + self.leaf_rows, grid=None)

    @property
    def n_contexts(self) -> int:
        return sum(len(p) for p in self.plans)

    def chunk_rows(self, batch: int) -> int:
        """Test rows routed at once: up to ``batch`` x leaves (at most ROUTED_ROWS), so
        that each context gets a useful batch."""
        leaves = max(len(p) for p in self.plans)
        return max(batch, min(batch * leaves, ROUTED_ROWS))

    def encode(self, engine, progress=None, encoded: list | None = None) -> list[list[list]]:
        """The engine's contexts of every leaf's training rows, [member][leaf][group]; the
        first encoding also sets ``grid`` (regression). ``encoded``: those of the first
        members, already encoded (a reused trial member's)."""
        if self.x is None:
            raise ValueError("these local contexts were saved without their training rows: "
                             "load the engine's cache saved with them")
        contexts = list(encoded or [])
        for plans, leaves in zip(self.plans[len(contexts):], self.leaf_rows[len(contexts):],
                                 strict=True):
            row = []
            for plan, rows in zip(plans, leaves, strict=True):
                row.append([engine.fit(xg, yg, self.task) for xg, yg in
                            plan.train_inputs(self.x[rows], self.y[rows])])
                if progress is not None:
                    progress.update(1)
            contexts.append(row)
        if self.task == "regression" and self.grid is None:
            self.grid = self._common_borders(engine, contexts)
        return contexts

    def _common_borders(self, engine, contexts: list) -> np.ndarray:
        """Common borders (K + 1,) for the mixture of every context's distribution.

        Every context's borders are the model's borders scaled by its targets' mean and
        unbiased std (export/FORMAT.md). The common ones are the model's borders scaled so
        that their inner buckets span every context's inner buckets: then only mass that a
        context itself puts in its outer (half-normal) buckets lands in the common outer
        buckets, whose tails would otherwise stretch it far out.
        """
        plan, rows = self.plans[0][0], self.leaf_rows[0][0]
        probe = plan.test_inputs(self.x[rows[:1]])[0]
        borders = engine.predict(contexts[0][0][0], probe)["borders"][0]
        stats = [self._target_scale(self.y[rows[plan.members[0].rows]])]
        raw = (np.asarray(borders, np.float64) - stats[0][0]) / stats[0][1]
        stats += [self._target_scale(self.y)]
        stats += [self._target_scale(self.y[leaf[m.rows]]) for plans, leaves in
                  zip(self.plans, self.leaf_rows, strict=True) for p, leaf in
                  zip(plans, leaves, strict=True) for m in p.members]
        mean, std = np.array(stats).T
        lo, hi = (raw[1] * std + mean).min(), (raw[-2] * std + mean).max()
        scale = (hi - lo) / (raw[-2] - raw[1])
        return raw * scale + (lo - raw[1] * scale)

    @staticmethod
    def _target_scale(y: np.ndarray) -> tuple[float, float]:
        """(mean, unbiased std) of a context's targets, as the model computes them."""
        return float(y.mean()), max(float(y.std(ddof=1)), 1e-8) if len(y) > 1 else 1.0

    def predict(self, engine, contexts: list, x: np.ndarray, temperature: float = 1.0):
        """Combined predictions for test rows x (T, F), given :meth:`encode`'s contexts:
        class probabilities (T, n_classes), members' logits divided by ``temperature``
        as in :meth:`EnsemblePlan.combine_probs`; or a :class:`BarDistribution` over
        ``grid`` (standardised units)."""
        classify = self.task == "classification"
        total = np.zeros((len(x), self.n_classes if classify else len(self.grid) - 1))
        for r, router in enumerate(self.routers):
            leaf = router.route(x)
            for j in np.unique(leaf):
                at = np.flatnonzero(leaf == j)
                plan = self.plans[r][j]
                out = plan.network_outputs(engine, contexts[r][j], x[at])
                if classify:
                    total[at] += plan.combine_probs(out["probs"], temperature)
                else:  # one member per leaf
                    total[at] += np.asarray(softmax(out["logits"][0])
                                            @ self._rebin(out["borders"][0]))
        total /= len(self.routers)
        return total if classify else BarDistribution(total, self.grid)

    def _rebin(self, borders: np.ndarray):
        """The sparse map from a context's buckets to the common ones (K, K).

        The context's outer borders are first pulled in to ``clip`` as ``clip_tails`` does
        for the whole ensemble: rebinned unclipped, the far tails of a context with a
        narrow target range would put mass at extreme values of the common buckets, out of
        reach of the final clipping.
        """
        lo, hi = self.clip
        return rebin_matrix(clip_outer_borders(np.asarray(borders, np.float64), lo, hi),
                            clip_outer_borders(self.grid, lo, hi))


def check_memory(engine, context_rows: int, test_batch_size: int) -> None:
    """Raise ValueError naming the parameter whose attention scores exceed MEMORY_BUDGET."""
    heads = engine.n_heads
    for name, value, other in (("max_train_rows", context_rows, context_rows),
                               ("test_batch_size", test_batch_size, context_rows)):
        need = 4 * heads * value * other
        if need > MEMORY_BUDGET:
            limit = MEMORY_BUDGET // (4 * heads * (other if name != "max_train_rows" else 1))
            limit = int(limit ** 0.5) if name == "max_train_rows" else limit
            raise ValueError(
                f"{name}={value} needs about {need / 1e9:.1f} GB of attention scores per "
                f"network call ({heads} heads x {value} x {other} float32), over the "
                f"{MEMORY_BUDGET / 1e9:.1f} GB budget: use {name} <= {limit} (larger "
                "training sets are split into local contexts, so every row is still used)")


@contextlib.contextmanager
def progress(enabled: bool, total: int, desc: str):
    """A tqdm bar when ``enabled`` (else None), closed on exit."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="chunk" if "predict" in desc else "context") as bar:
        yield bar


__all__ = ["LocalContexts", "check_memory", "progress", "MEMORY_BUDGET"]
