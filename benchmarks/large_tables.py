"""Large tables: our estimators with every training row vs default baselines.

    PYTHONPATH=. python benchmarks/large_tables.py [--splits 1] [--max-train N]

The datasets of ``../shared/datasets/large/`` (10,000 to 60,000 rows), the protocol of
``benchmarks/real_data.py`` (same models, same preprocessing, 50/50 splits, same splits for
every model in the same run) with no cap on training rows: ours reads them in local
contexts (:mod:`pfn.contexts`) or stacked beside a booster (:mod:`pfn.stacking`), as
``context_strategy`` decides. ``--max-train`` caps them for quicker design runs. The tables
are binary; ``benchmarks/large_multiclass.py`` checks the classifier on multiclass ones.

Printed: per dataset, each model's ROC AUC or R² and fit + predict seconds; the means; the
mean time of ours and of each variant over LightGBM's (the ratio of the mean fit + predict
times over every table run: the large-table time target; per task in brackets); and the
peak resident memory of this process (all models, so an upper bound for ours) after each
dataset.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_data  # noqa: E402
from real_data import ALL_MODELS, markdown, run_dataset  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "large"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=DEFAULT)
    ap.add_argument("--splits", type=int, default=3)
    ap.add_argument("--max-train", type=int, default=10**9)
    ap.add_argument("--models", default=",".join(ALL_MODELS))
    ap.add_argument("--only", default="", help="comma list of dataset names")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None,
                    help="threads of every model (n_jobs where it has one; export "
                    "OMP_NUM_THREADS too, for HistGradientBoosting). On a shared machine 1 "
                    "keeps OpenMP's spinning threads from inflating the baselines' times")
    ap.add_argument("--candidate", help="weights for ours_candidate (torch engine): a model "
                    "being considered for shipping, on the same splits")
    args = ap.parse_args(argv)
    real_data.use_candidate(args.candidate)
    if args.threads is not None:
        make = real_data.make_model

        def make_model(name: str, task: str):
            model = make(name, task)
            if name.startswith("ours"):
                return model.set_params(n_jobs=args.threads)
            last = f"{model.steps[-1][0]}__n_jobs"  # a pipeline ending in the model
            return model.set_params(**{last: args.threads}) if last in model.get_params() \
                else model

        real_data.make_model = make_model
    models = [m for m in args.models.split(",") if m]
    lines: list[str] = []

    def emit(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    emit(f"# Large tables\n\nmodels: {', '.join(models)}; splits: {args.splits}; max train "
         f"rows: {args.max_train}; threads: {args.threads or 'default'} (OMP_NUM_THREADS="
         f"{os.environ.get('OMP_NUM_THREADS')}); load average at start: "
         f"{os.getloadavg()[0]:.2f}\n")
    summary = []
    for task, key in (("classification", "auc"), ("regression", "r2")):
        for path in sorted((args.datasets / task).glob("*.csv.gz")):
            name = path.name.removesuffix(".csv.gz")
            if args.only and name not in args.only.split(","):
                continue
            t0 = time.perf_counter()
            table = run_dataset(path, task, models, args.splits, args.max_train)
            emit(f"### {name} ({task}; {time.perf_counter() - t0:.0f} s; peak RSS so far "
                 f"{peak_rss_mb():.0f} MB)\n\n{markdown(table)}\n")
            for model, row in table.iterrows():
                summary.append({"task": task, "dataset": name, "model": model,
                                "score": row[key], "time": row["time"]})
    df = pd.DataFrame(summary)
    for task, key in (("classification", "mean ROC AUC"), ("regression", "mean R²")):
        part = df[df.task == task]
        if part.empty:
            continue
        means = part.groupby("model", sort=False)[["score", "time"]].mean()
        means.columns = [key, "mean time (s)"]
        emit(f"## {task}: means over {part.dataset.nunique()} datasets\n\n{markdown(means)}\n")
    if "lgbm" in set(df.model):  # the time target's ratio, for ours and each variant
        t = df.groupby("model", sort=False)["time"].mean()
        per_task = df.groupby(["task", "model"], sort=False)["time"].mean()
        for model in (m for m in t.index if m.startswith("ours")):
            tasks = ", ".join(f"{task} {per_task[task, model] / per_task[task, 'lgbm']:.1f}x"
                              for task in df.task.unique() if (task, model) in per_task)
            emit(f"{model} / LightGBM mean fit + predict time: {t[model] / t['lgbm']:.1f}x "
                 f"({tasks})")
    emit(f"peak RSS of the benchmark process: {peak_rss_mb():.0f} MB")
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
