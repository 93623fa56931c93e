"""GP mimicry: does a PFN trained on a GP prior predict like the exact GP posterior?

The headline experiment of Müller et al. (2022), "Transformers Can Do Bayesian Inference":
a PFN pretrained only on datasets drawn from one Gaussian process (fixed kernel and
hyperparameters, configs/gp.toml) should reproduce that GP's posterior predictive. On
held-out GP datasets (seeds never used in training) we compare the mean negative
log-likelihood of the test targets under

* the PFN: bar distribution over :meth:`pfn.model.PFN.scaled_borders`, i.e. in the raw
  units of y (the bucket widths carry the Jacobian of the model's internal standardisation);
* the exact GP posterior predictive: scikit-learn's GaussianProcessRegressor with the true
  kernel ``ConstantKernel * RBF + WhiteKernel`` and no hyperparameter fitting.

The gap (PFN minus GP, nats per test point) is >= 0 in expectation, since the GP is the
Bayes-optimal predictor under this prior; 0 means perfect mimicry.

    python benchmarks/gp_mimicry.py --model benchmarks/models/gp.safetensors \
        --config configs/gp.toml --plot gp_mimicry.png
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

from pfn import bar
from pfn.bar_distribution import BarDistribution
from pfn.checkpoint import load_model
from pfn.config import load_config
from pfn.model import PFN
from priors import GPConfig, GPPrior, Range

HELDOUT_SEED = 2**40  # training seeds are (seed * 1_000_003 + rank * 7_919 + step) < 2**40
JITTER = 1e-6  # GPPrior adds this to the noise variance before its Cholesky
_NU = {"matern12": 0.5, "matern32": 1.5, "matern52": 2.5}


def fixed_gp_config(path: str | Path) -> GPConfig:
    """The GP prior of a training config; its kernel and hyperparameters must be fixed."""
    prior = load_config(path).prior
    if prior.names() != ["gp"]:
        raise ValueError(f"{path}: GP mimicry needs a config with only [prior.gp], got "
                         f"{prior.names()}")
    cfg = prior["gp"].config
    for name in ("lengthscale", "outputscale", "noise"):
        r = getattr(cfg, name)
        if r.low != r.high:
            raise ValueError(f"{path}: {name} must be fixed (low == high) for an exact GP "
                             f"reference, got [{r.low}, {r.high}]")
    if len(cfg.kernels) != 1:
        raise ValueError(f"{path}: need exactly one kernel, got {cfg.kernels}")
    return cfg


def exact_gp(cfg: GPConfig) -> GaussianProcessRegressor:
    """The true generating process as a scikit-learn GP (no hyperparameter fitting)."""
    ls = cfg.lengthscale.low
    shape = RBF(ls, "fixed") if cfg.kernels[0] == "rbf" \
        else Matern(ls, "fixed", nu=_NU[cfg.kernels[0]])
    kernel = ConstantKernel(cfg.outputscale.low, "fixed") * shape \
        + WhiteKernel(cfg.noise.low + JITTER, "fixed")
    return GaussianProcessRegressor(kernel, alpha=1e-10, optimizer=None, normalize_y=False)


def sample_dataset(cfg: GPConfig, n_train: int, n_test: int, seed: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """One GP dataset: x (n_train + n_test, d) on its used columns, y (n_train + n_test,)."""
    g = torch.Generator().manual_seed(seed)
    b = GPPrior(cfg).sample(1, n_train + n_test, n_train, g, "regression")
    d = int(b.num_features[0])
    return b.x[0, :, :d], b.y[0]


def pfn_predict(model: PFN, x: torch.Tensor, y_train: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Bar logits (T, K) for rows after the training rows, and borders (K + 1,) in y's units."""
    with torch.no_grad():
        logits = model(x.unsqueeze(0), y_train.unsqueeze(0), "regression")[0]
    return logits, model.scaled_borders(y_train.unsqueeze(0))[0]


def evaluate(model: PFN, cfg: GPConfig, n_datasets: int, n_test: int, min_train: int,
             max_train: int) -> list[tuple[int, float, float]]:
    """(n_train, PFN NLL, GP NLL) per held-out dataset, NLLs averaged over its test points."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n_datasets):
        n = int(rng.integers(min_train, max_train + 1))
        x, y = sample_dataset(cfg, n, n_test, HELDOUT_SEED + i)
        logits, borders = pfn_predict(model, x, y[:n])
        nll_pfn = -bar.log_prob(logits, borders, y[n:]).mean().item()
        gp = exact_gp(cfg).fit(x[:n].double().numpy(), y[:n].double().numpy())
        mu, sd = gp.predict(x[n:].double().numpy(), return_std=True)
        z = (y[n:].double().numpy() - mu) / sd
        nll_gp = float(np.mean(0.5 * z**2 + np.log(sd) + 0.5 * math.log(2 * math.pi)))
        out.append((n, nll_pfn, nll_gp))
    return out


def plot(model: PFN, cfg: GPConfig, path: str, n_train: int = 8, seed: int = HELDOUT_SEED - 1
         ) -> None:
    """Both posteriors (mean and central 95% band) on the same 1-D dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    one_d = GPConfig(**{**cfg.__dict__, "num_features": Range(1, 1)})
    x, y = sample_dataset(one_d, n_train, 1, seed)
    grid = torch.linspace(0, 1, 300).unsqueeze(1)
    logits, borders = pfn_predict(model, torch.cat([x[:n_train], grid]), y[:n_train])
    dist = BarDistribution.from_logits(logits.double().numpy(), borders.double().numpy())
    p_mean = dist.mean()
    p_lo, p_hi = dist.quantile([0.025, 0.975]).T
    gp = exact_gp(one_d).fit(x[:n_train].double().numpy(), y[:n_train].double().numpy())
    g_mean, g_sd = gp.predict(grid.double().numpy(), return_std=True)
    gx = grid[:, 0].numpy()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.fill_between(gx, g_mean - 1.96 * g_sd, g_mean + 1.96 * g_sd, color="tab:blue",
                    alpha=0.2, label="exact GP 95%")
    ax.plot(gx, g_mean, color="tab:blue", label="exact GP mean")
    ax.plot(gx, p_lo, color="tab:orange", ls="--", lw=1, label="PFN 95%")
    ax.plot(gx, p_hi, color="tab:orange", ls="--", lw=1)
    ax.plot(gx, p_mean, color="tab:orange", label="PFN mean")
    ax.scatter(x[:n_train, 0].numpy(), y[:n_train].numpy(), color="k", zorder=3,
               label="training points")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"posterior predictive, {n_train} training points")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="benchmarks/models/gp.safetensors")
    p.add_argument("--config", default="configs/gp.toml", help="training config (its GP prior)")
    p.add_argument("--datasets", type=int, default=200)
    p.add_argument("--test-points", type=int, default=100, help="test points per dataset")
    p.add_argument("--min-train", type=int, default=5)
    p.add_argument("--max-train", type=int, default=50)
    p.add_argument("--plot", help="write a PNG of both posteriors on one 1-D dataset")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = fixed_gp_config(a.config)
    model = load_model(a.model)
    if model.cfg.max_features < cfg.num_features.high:
        raise ValueError(f"model takes {model.cfg.max_features} features, the prior draws "
                         f"up to {cfg.num_features.high}")
    rows = evaluate(model, cfg, a.datasets, a.test_points, a.min_train, a.max_train)
    n = np.array([r[0] for r in rows])
    pfn_nll = np.array([r[1] for r in rows])
    gp_nll = np.array([r[2] for r in rows])
    gap = pfn_nll - gp_nll
    print(f"{a.datasets} held-out GP datasets ({cfg.kernels[0]}, lengthscale "
          f"{cfg.lengthscale.low}, outputscale {cfg.outputscale.low}, noise {cfg.noise.low}), "
          f"{a.test_points} test points each; NLL in nats per test point")
    print(f"{'training points':>16} {'datasets':>9} {'PFN':>8} {'exact GP':>9} {'gap':>8}")
    edges = [a.min_train, 10, 20, 35, a.max_train + 1]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (n >= lo) & (n < hi)
        if sel.any():
            print(f"{f'{lo}-{hi - 1}':>16} {int(sel.sum()):>9} {pfn_nll[sel].mean():>8.4f} "
                  f"{gp_nll[sel].mean():>9.4f} {gap[sel].mean():>8.4f}")
    se = gap.std(ddof=1) / math.sqrt(len(gap)) if len(gap) > 1 else float("nan")
    print(f"{'all':>16} {len(gap):>9} {pfn_nll.mean():>8.4f} {gp_nll.mean():>9.4f} "
          f"{gap.mean():>8.4f}  (standard error {se:.4f})")
    if a.plot:
        plot(model, cfg, a.plot)
        print(f"wrote {a.plot}")
    print(f"NLL gap vs exact GP: {gap.mean():.4f} nats")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
