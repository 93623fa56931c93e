"""Fit + predict latency and peak memory of the torch and ONNX Runtime engines.

    PYTHONPATH=. python benchmarks/engine_latency.py [--runs 5]

1000 training rows x 100 features, 1000 test rows, 3 classes; ``PFNClassifier(engine=...)``
with default settings when ``pfn.estimators`` exists, else the bare engines (one dataset).
Both engines use their default threads (all cores). Each engine runs in its own subprocess,
in ``--rounds`` alternating rounds (torch, onnx, torch, ...: the machine is shared, and a
busy neighbour should slow both engines alike), each with
one warm-up then ``--runs`` timed fit+predict calls, then ``--runs`` timed
``predict_proba`` calls on the last fitted estimator ("predict again": what a second call
costs once the training rows are encoded); the table shows medians. Peak memory is the
subprocess's ``ru_maxrss`` (peak resident
set): tracemalloc sees only Python allocations, not the tensors and buffers that torch and
ONNX Runtime allocate natively, which are most of the memory here. It includes the
interpreter and the imported libraries (torch alone is a few hundred MB), which is part of
what choosing an engine costs. Last line: ``onnx/torch latency ratio: R``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N_TRAIN, N_TEST, N_FEATURES, N_CLASSES = 1000, 1000, 100, 3


def make_data(seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_TRAIN + N_TEST, N_FEATURES)).astype(np.float32)
    w = rng.normal(size=(N_FEATURES, N_CLASSES))
    y = (x @ w + rng.normal(size=(len(x), N_CLASSES))).argmax(1)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:]


def worker(engine_name: str, runs: int) -> dict:
    """Time fit+predict in this process; returns timings and peak RSS."""
    x_train, y_train, x_test = make_data()
    try:
        from pfn.estimators import PFNClassifier
    except ImportError:
        PFNClassifier = None
    if PFNClassifier is not None:
        how = "PFNClassifier(engine=...), default settings"

        def once():
            model = PFNClassifier(engine=engine_name).fit(x_train, y_train)
            model.predict_proba(x_test)
            return lambda: model.predict_proba(x_test)
    else:
        from pfn.engines import get_engine

        how = "bare engine, one dataset"
        engine = get_engine(engine_name)

        def once():
            ctx = engine.fit(x_train[None], y_train[None].astype("float32"), "classification")
            engine.predict(ctx, x_test[None])
            return lambda: engine.predict(ctx, x_test[None])

    once()  # warm-up: loads the model / creates the session
    times, again = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        predict_again = once()
        times.append(time.perf_counter() - t0)
    for _ in range(runs):
        t0 = time.perf_counter()
        predict_again()
        again.append(time.perf_counter() - t0)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"engine": engine_name, "how": how, "times": times,
            "median_s": statistics.median(times), "again_s": statistics.median(again),
            "peak_rss_mb": peak_kb / 1024}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternate the engines' subprocesses this many times (torch, onnx, "
                         "torch, ...): a noisy neighbour then hits both engines alike")
    ap.add_argument("--worker", choices=["torch", "onnx"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.runs)))
        return 0

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    rounds: dict[str, list[dict]] = {"torch": [], "onnx": []}
    for _ in range(args.rounds):
        for name in rounds:
            cmd = [sys.executable, __file__, "--worker", name, "--runs", str(args.runs)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            rounds[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    results = {}
    for name, rs in rounds.items():
        times = [t for r in rs for t in r["times"]]
        results[name] = {"how": rs[0]["how"], "times": times,
                         "median_s": statistics.median(times),
                         "again_s": statistics.median(r["again_s"] for r in rs),
                         "peak_rss_mb": max(r["peak_rss_mb"] for r in rs)}
    per_round = [o["median_s"] / t["median_s"]
                 for t, o in zip(rounds["torch"], rounds["onnx"], strict=True)]

    print(f"fit+predict, {N_TRAIN} train x {N_FEATURES} features, {N_TEST} test rows; "
          f"{results['torch']['how']}; {os.cpu_count()} cores; median of "
          f"{args.rounds} rounds x {args.runs} runs")
    print(f"{'engine':<8}{'median s':>10}{'min s':>9}{'max s':>9}{'predict again s':>17}"
          f"{'peak RSS MB':>13}")
    for name, r in results.items():
        print(f"{name:<8}{r['median_s']:>10.3f}{min(r['times']):>9.3f}{max(r['times']):>9.3f}"
              f"{r['again_s']:>17.3f}{r['peak_rss_mb']:>13.0f}")
    print("ratio per round: " + ", ".join(f"{r:.2f}" for r in per_round))
    ratio = results["onnx"]["median_s"] / results["torch"]["median_s"]
    print(f"onnx/torch latency ratio: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
