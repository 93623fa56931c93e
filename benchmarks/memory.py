"""Peak memory of predicting 200,000 rows: classification and regression, every method.

    PYTHONPATH=. python benchmarks/memory.py [--rows 200000] [--train 5000]
        [--context-strategy stacked]

Each (task, method) runs in its own subprocess, which fits on ``--train`` synthetic rows
(more than ``max_train_rows`` and fewer than 10,000: the default strategy stacks them for
the classifier, from 2,000 rows, and reads them in local contexts for the regressor;
``--context-strategy`` sets one for both) and predicts ``--rows`` rows with
``predict``, ``predict_proba`` (classification), ``predict_quantiles`` or
``predict_distribution`` (regression), default settings on one thread. Printed: the
subprocess's peak resident memory (``ru_maxrss``: interpreter, libraries, model, data and
results included), that peak before predicting, the result's size, and seconds. The target is a
peak under 1.5 GB for every line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = [("classification", "predict"), ("classification", "predict_proba"),
         ("regression", "predict"), ("regression", "predict_quantiles"),
         ("regression", "predict_distribution")]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(task: str, method: str, rows: int, train: int, n_estimators: str,
           context_strategy: str = "auto") -> dict:
    import numpy as np

    from pfn import PFNClassifier, PFNRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(train + rows, 8)).astype(np.float64)
    signal = x[:, 0] + np.sin(2 * x[:, 1]) + 0.3 * rng.normal(size=len(x))
    est = (PFNClassifier if task == "classification" else PFNRegressor)(
        n_estimators=n_estimators if n_estimators == "auto" else int(n_estimators), n_jobs=1,
        context_strategy=context_strategy)
    est.fit(x[:train], signal[:train] > 0 if task == "classification" else signal[:train])
    before = rss_mb()
    t0 = time.perf_counter()
    out = getattr(est, method)(x[train:])
    seconds = time.perf_counter() - t0
    size = out.nbytes if not hasattr(out, "probs") else out.probs.nbytes + out.borders.nbytes \
        + (0 if out.offset is None else out.offset.nbytes)
    return {"task": task, "method": method, "peak_mb": rss_mb(), "fitted_mb": before,
            "result_mb": size / 2**20, "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--train", type=int, default=5000)
    ap.add_argument("--n-estimators", default="auto", help="'auto' (the default) or a number")
    ap.add_argument("--context-strategy", default="auto", choices=("auto", "local", "stacked"))
    ap.add_argument("--worker", nargs=2, metavar=("TASK", "METHOD"))
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.rows, args.train, args.n_estimators,
                                args.context_strategy)))
        return
    print(f"# Prediction memory: {args.rows} rows, {args.train} training rows, "
          f"n_estimators={args.n_estimators}, context_strategy={args.context_strategy}\n")
    print("| task | method | peak RSS (MB) | before predict (MB) | result (MB) | seconds |")
    print("|---|---|---|---|---|---|")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for task, method in CASES:
        proc = subprocess.run([sys.executable, __file__, "--worker", task, method, "--rows",
                               str(args.rows), "--train", str(args.train), "--n-estimators",
                               str(args.n_estimators), "--context-strategy",
                               args.context_strategy], capture_output=True, text=True,
                              env=env)
        if proc.returncode != 0:
            print(f"| {task} | {method} | failed: {proc.stderr.strip()[-200:]} | | | |")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"| {task} | {method} | {r['peak_mb']:.0f} | {r['fitted_mb']:.0f} | "
              f"{r['result_mb']:.0f} | {r['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
