"""How far the classifier is from logistic regression where logistic regression is the right
model: GLM-prior datasets with main effects only, shaped like the real categorical-heavy
tables (few discrete columns, a few hundred training rows, graded class probabilities).

    python benchmarks/glm_gap.py --model shipped \
        --model v10c=~/runs/v10c/model.safetensors --datasets 64

On such data logistic regression on one-hot columns is well specified, so it is close to
the best any method can do; a prior-fitted network whose prior contains these datasets
(``priors/glm.py``) should match it (Müller et al. 2022: the network approximates the
posterior predictive of its prior). The gap it leaves measures what pretraining has not
yet learnt, separately from whether the prior fits the real tables (the model card,
"Where the categorical-heavy target's 0.01 would have to come from"). Every model sees the
same datasets (a fixed seed per shape); the table gives mean ROC AUC and the mean paired
difference to logistic regression with its standard error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import OneHotEncoder

from pfn import PFNClassifier
from priors.base import Range
from priors.glm import GLMConfig, GLMPrior
from priors.postprocess import PostprocessConfig

# (name, discrete columns, levels per column, rows, training rows): Rochdale-like binary
# survey answers, and multi-level codes as in smoking or soup.
SHAPES = (("7 binary, 332 train", 7, 2, 665, 332),
          ("7 x 4 levels, 500 train", 7, 4, 1000, 500))


def datasets(n_features: int, levels: int, rows: int, n_train: int, count: int, seed: int):
    """``count`` binary GLM datasets with main effects only: (x_train, y_train, x_test,
    y_test) with both classes in each half."""
    cfg = GLMConfig(num_features=Range(n_features, n_features), p_all_discrete=1.0,
                    levels=Range(levels, levels), p_interactions=0.0,
                    signal=Range(0.5, 3.0, log=True),
                    postprocess=PostprocessConfig(max_classes=2, p_multiclass=0.0,
                                                  p_categorical=0.0, p_missing=0.0,
                                                  p_warp=0.0, p_rescale=0.0))
    prior, g = GLMPrior(cfg), torch.Generator().manual_seed(seed)
    out = []
    while len(out) < count:
        b = prior.sample(16, rows, n_train, g)
        for i in range(b.batch_size):
            x = b.x[i, :, :n_features].numpy().astype(np.float64)
            y = b.y[i].numpy().astype(np.int64)
            if min(np.unique(y[:n_train]).size, np.unique(y[n_train:]).size) == 2:
                out.append((x[:n_train], y[:n_train], x[n_train:], y[n_train:]))
    return out[:count]


def score(name: str, path: str | None, data, n_features: int) -> list[float]:
    aucs = []
    for xtr, ytr, xte, yte in data:
        if name == "logreg":
            enc = OneHotEncoder(handle_unknown="ignore").fit(xtr)
            model = LogisticRegression(max_iter=2000).fit(enc.transform(xtr), ytr)
            p = model.predict_proba(enc.transform(xte))[:, 1]
        else:
            kw = {} if path is None else {"engine": "torch", "model_path": path}
            model = PFNClassifier(categorical_features=list(range(n_features)), **kw)
            p = model.fit(xtr, ytr).predict_proba(xte)[:, 1]
        aucs.append(roc_auc_score(yte, p))
    return aucs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=None, metavar="NAME[=PATH]",
                    help="'shipped' (the shipped classifier, ONNX engine) or NAME=PATH "
                    "(weights on the torch engine); repeatable")
    ap.add_argument("--datasets", type=int, default=64, help="datasets per shape")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    models = [("logreg", None)]
    for spec in a.model or ["shipped"]:
        name, _, path = spec.partition("=")
        models.append((name, str(Path(path).expanduser()) if path else None))
    print(f"datasets per shape: {a.datasets}; seed {a.seed}\n")
    print("| shape | model | ROC AUC | minus logreg (± s.e.) |")
    print("|---|---|---|---|")
    for shape, f, levels, rows, n_train in SHAPES:
        data = datasets(f, levels, rows, n_train, a.datasets, a.seed)
        base = np.array(score("logreg", None, data, f))
        print(f"| {shape} | logreg | {base.mean():.4f} | |", flush=True)
        for name, path in models[1:]:
            auc = np.array(score(name, path, data, f))
            d = auc - base
            print(f"| {shape} | {name} | {auc.mean():.4f} | {d.mean():+.4f} ± "
                  f"{d.std(ddof=1) / np.sqrt(d.size):.4f} |", flush=True)


if __name__ == "__main__":
    main()
