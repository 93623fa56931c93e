"""Prior sampling throughput, measured against the cost of one training step.

Pretraining draws a fresh batch from the prior every step in the same process, so sampling
time adds to step time. This script times ``prior.sample`` for each prior (SCM, SCM with
tree edges forced on, SCM with every feature a categorical root, BNN, GP, the rule prior,
every prior with wide tables forced on, and the mixtures of the ``--config`` files:
configs/default.toml and configs/prior_v2.toml by default) at 512 and 1024 rows, 100
features, batch 16, one thread, median over repeats with different seeds; then one training
step of the plain reference transformer (:mod:`benchmarks.reference`, d_model 256, 6 layers,
batch 16 x 512 rows, AdamW). It prints a markdown table and, as its last line,
``sampling/step time ratio: R`` for the first config's mixture at 512 rows (target R < 0.10).

    PYTHONPATH=. python benchmarks/prior_throughput.py [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
import tomllib
from pathlib import Path

import torch

from priors import (
    BNNConfig,
    BNNPrior,
    GPConfig,
    GPPrior,
    PostprocessConfig,
    RulesConfig,
    RulesPrior,
    SCMConfig,
    SCMPrior,
    build_prior,
)

try:
    from benchmarks.reference import reference_step_seconds
except ModuleNotFoundError:  # run as a script without the repository root on the path
    from reference import reference_step_seconds

ROOT = Path(__file__).resolve().parent.parent


def make_priors(configs: list[Path], n_features: int) -> dict[str, object]:
    f = {"max_features": n_features}
    wide = {"postprocess": PostprocessConfig(p_wide=1.0)}
    priors = {
        "scm": SCMPrior(SCMConfig(**f)),
        "scm (trees, p_tree=1)": SCMPrior(SCMConfig(**f, p_tree=1.0)),
        "scm (all categorical roots)": SCMPrior(SCMConfig(**f, p_all_categorical=1.0)),
        "scm (wide, p_wide=1)": SCMPrior(SCMConfig(**f, **wide)),
        "bnn": BNNPrior(BNNConfig(**f)),
        "bnn (wide, p_wide=1)": BNNPrior(BNNConfig(**f, **wide)),
        "gp": GPPrior(GPConfig(**f)),
        "rules": RulesPrior(RulesConfig(**f)),
        "rules (wide, p_wide=1)": RulesPrior(RulesConfig(
            **f, postprocess=PostprocessConfig(p_categorical=0.0, p_wide=1.0))),
    }
    for config in configs:
        priors[f"mixture ({config.name})"] = build_prior(tomllib.loads(config.read_text())["prior"])
    return priors


def sample_seconds(prior, batch_size: int, n_rows: int, repeats: int, task: str) -> float:
    """Median seconds per ``sample`` call; repeat i uses seed i (one untimed warm-up)."""
    prior.sample(batch_size, n_rows, n_rows // 2, torch.Generator().manual_seed(10**6), task)
    times = []
    for seed in range(repeats):
        g = torch.Generator().manual_seed(seed)
        t0 = time.perf_counter()
        prior.sample(batch_size, n_rows, n_rows // 2, g, task)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, nargs="+",
                   default=[ROOT / "configs" / "default.toml", ROOT / "configs" / "prior_v2.toml"])
    p.add_argument("--rows", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--features", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--step-repeats", type=int, default=3)
    p.add_argument("--task", default="classification", choices=["classification", "regression"])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    priors = make_priors(args.config, args.features)
    mixture = f"mixture ({args.config[0].name})"
    rows = [
        (name, n_rows, sample_seconds(prior, args.batch_size, n_rows, args.repeats, args.task))
        for name, prior in priors.items() for n_rows in args.rows
    ]
    step = reference_step_seconds(args.step_repeats, args.batch_size, 512, args.features)

    print(f"{args.task}, batch {args.batch_size}, {args.features} features, "
          f"{args.threads} thread(s), median of {args.repeats} seeds\n")
    print("| prior | rows | ms / batch | datasets / s | rows / s | x step |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n_rows, t in rows:
        print(f"| {name} | {n_rows} | {1e3 * t:.1f} | {args.batch_size / t:.1f} | "
              f"{args.batch_size * n_rows / t:,.0f} | {t / step:.3f} |")
    print(f"\nreference step (d_model 256, 6 layers, {args.batch_size} x 512 rows, AdamW): "
          f"{1e3 * step:.0f} ms")
    at_512 = [t for name, n_rows, t in rows if name == mixture and n_rows == 512]
    ratio = at_512[0] / step if at_512 else float("nan")
    print(f"sampling/step time ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
