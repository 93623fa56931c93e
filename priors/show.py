"""Look at the priors: a PNG grid of sampled datasets.

Top rows: 2-feature classification datasets from the SCM, SCM-with-trees, BNN and GP priors,
the SCM with categorical root causes, the rule prior on numeric and on discrete columns, and
the GLM prior (noisy linear targets, sampled labels) and the choice prior (two alternatives):
one row per prior, scatter of the two features coloured by class; integer codes are jittered
so the points of one level pair show as a blob. Bottom row: 1-D regression draws from the
GP, BNN, SCM, rule and GLM priors, several per panel, sorted by x.

    python -m priors.show --out prior.png [--seed 0] [--datasets 4] [--rows 200]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from priors.base import Batch, Range
from priors.bnn import BNNConfig, BNNPrior
from priors.choice import ChoiceConfig, ChoicePrior
from priors.glm import GLMConfig, GLMPrior
from priors.gp import GPConfig, GPPrior
from priors.postprocess import PostprocessConfig
from priors.rules import RulesConfig, RulesPrior
from priors.scm import SCMConfig, SCMPrior


def classification_priors() -> dict[str, object]:
    """The priors of the scatter rows: exactly 2 features, no missing values."""
    two = {"max_features": 2, "num_features": Range(2, 2)}
    post = PostprocessConfig(p_missing=0.0)
    gp_post = GPConfig().postprocess  # GP keeps its raw inputs (no warps, no categoricals)
    rules_post = PostprocessConfig(p_categorical=0.0, p_missing=0.0)
    return {
        "SCM (MLP edges)": SCMPrior(SCMConfig(**two, p_tree=0.0, postprocess=post)),
        "SCM (tree edges)": SCMPrior(SCMConfig(**two, p_tree=1.0, postprocess=post)),
        "BNN": BNNPrior(BNNConfig(**two, postprocess=post)),
        "GP": GPPrior(GPConfig(**two, postprocess=gp_post)),
        "SCM (categorical roots)": SCMPrior(SCMConfig(**two, p_all_categorical=1.0,
                                                      root_levels=Range(2, 5), postprocess=post)),
        "Rules (numeric)": RulesPrior(RulesConfig(**two, discrete_fraction=Range(0.0, 0.0),
                                                  p_all_discrete=0.0, p_label_noise=0.0,
                                                  postprocess=rules_post)),
        "Rules (discrete)": RulesPrior(RulesConfig(**two, p_all_discrete=1.0,
                                                   levels=Range(2, 5), p_label_noise=0.0,
                                                   postprocess=rules_post)),
        "GLM (noisy linear)": GLMPrior(GLMConfig(**two, p_all_discrete=0.0,
                                                 discrete_fraction=Range(0.0, 0.0),
                                                 postprocess=rules_post)),
        "Choice (2 options)": ChoicePrior(ChoiceConfig(
            max_features=2, num_options=Range(2, 2), attributes=Range(1, 1),
            covariates=Range(0, 0), irrelevant=Range(0, 0), p_copy=0.0,
            postprocess=PostprocessConfig(p_categorical=0.0, p_missing=0.0, p_warp=0.0,
                                          p_rescale=0.0))),
    }


def regression_priors() -> dict[str, object]:
    """The priors of the 1-D regression panels; x is left unwarped so shapes stay visible."""
    one = {"max_features": 1, "num_features": Range(1, 1)}
    plain = PostprocessConfig(p_missing=0.0, p_categorical=0.0, p_warp=0.0, p_rescale=0.0)
    return {
        "GP": GPPrior(GPConfig(**one)),
        "BNN": BNNPrior(BNNConfig(**one, postprocess=plain)),
        "SCM": SCMPrior(SCMConfig(**one, postprocess=plain)),
        "Rules": RulesPrior(RulesConfig(**one, num_informative=Range(1, 1),
                                        discrete_fraction=Range(0.0, 0.0), p_all_discrete=0.0,
                                        postprocess=plain)),
        "GLM": GLMPrior(GLMConfig(**one, p_all_discrete=0.0, discrete_fraction=Range(0.0, 0.0),
                                  postprocess=plain)),
    }


def draw(prior: object, n: int, rows: int, task: str, seed: int) -> Batch:
    return prior.sample(n, rows, rows // 2, torch.Generator().manual_seed(seed), task)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Plot datasets sampled from the priors.")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--datasets", type=int, default=4, help="classification datasets per prior")
    p.add_argument("--rows", type=int, default=200, help="rows per dataset")
    args = p.parse_args(argv)
    if args.datasets < 1 or args.rows < 4:
        p.error(f"need --datasets >= 1 and --rows >= 4, got {args.datasets}, {args.rows}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise SystemExit("priors.show needs matplotlib: pip install matplotlib "
                         "(or the package's 'plot' extra)") from err

    cls, reg = classification_priors(), regression_priors()
    n_cols = max(args.datasets, len(reg))
    fig, axes = plt.subplots(len(cls) + 1, n_cols, figsize=(2.6 * n_cols, 2.5 * (len(cls) + 1)),
                             squeeze=False)
    for i, (name, prior) in enumerate(cls.items()):
        b = draw(prior, args.datasets, args.rows, "classification", args.seed + i)
        for j in range(n_cols):
            ax = axes[i, j]
            if j >= args.datasets:
                ax.axis("off")
                continue
            x, y = b.x[j].clone(), b.y[j].numpy()
            jitter = 0.15 * torch.randn(x.shape, generator=torch.Generator().manual_seed(j))
            x = torch.where(b.categorical[j], x + jitter, x).numpy()
            ax.scatter(x[:, 0], x[:, 1], c=y, cmap="tab10", vmin=0, vmax=9, s=6)
            cat = "".join("c" if c else "n" for c in b.categorical[j].tolist())
            ax.set_title(f"{name}\n{int(b.num_classes[j])} classes, cols {cat}", fontsize=7)
            ax.tick_params(labelsize=6)
    for j in range(n_cols):
        ax = axes[-1, j]
        if j >= len(reg):
            ax.axis("off")
            continue
        name, prior = list(reg.items())[j]
        b = draw(prior, 4, args.rows, "regression", args.seed + 100 + j)
        for x, y in zip(b.x[:, :, 0], b.y, strict=True):
            order = x.argsort()
            style = {"marker": ".", "linestyle": "none", "markersize": 3} \
                if name in ("SCM", "Rules", "GLM") else {"linewidth": 1}
            ax.plot(x[order].numpy(), y[order].numpy(), **style)
        ax.set_title(f"{name} regression, 1-D", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(f"Datasets from the priors (seed {args.seed}); n = numeric, c = categorical",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    plt.close(fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
