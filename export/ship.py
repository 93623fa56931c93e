"""``pfn ship``: make a trained model a shipped one (needs the train extra).

    pfn ship ~/runs/default/model.safetensors
    pfn ship ~/runs/v5c/model.safetensors --name classifier --task classification
    pfn ship ~/runs/v7r/model.safetensors --name regressor --task regression

The first writes ``pfn/weights/default.safetensors`` in float16 (the bar-distribution
borders stay float32) and re-exports ``pfn/weights/default.TASK[.fit|.predict].onnx`` from
exactly that file, so the graphs' ``source_sha256`` matches the shipped weights (a test
checks it). The second ships a task's specialist (``pfn.artifacts.SHIPPED_PREFIXES`` says
which prefix each estimator loads): weights and graphs of that task only; graphs of the
other task left under the prefix from earlier weights are removed, since an engine refuses
a prefix whose graphs come from different weights. The ONNX graphs are exported from the
float16 weights (and store them as float16, losslessly), so both engines compute with the
same numbers. This is the only command that writes into the package's weights folder, and
it says so on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pfn.artifacts import DEFAULT_PREFIX, KINDS, TASKS, graph_path, weights_path
from pfn.cli import CommandParser, UsageError, run_command, summary
from pfn.extras import require


def build_parser() -> CommandParser:
    ap = CommandParser(prog="pfn ship", description=summary(__doc__),
                       epilog=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a model file (e.g. RUN_DIR/model.safetensors)")
    ap.add_argument("--out-dir", default=str(DEFAULT_PREFIX.parent),
                    help="default: the package's weights folder")
    ap.add_argument("--name", default=DEFAULT_PREFIX.name,
                    help="prefix of the shipped files (default: %(default)s, the general model; "
                         "'classifier' and 'regressor' for the task specialists)")
    ap.add_argument("--task", choices=["both", *TASKS], default="both",
                    help="graphs to export (default: both tasks)")
    ap.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    ap.add_argument("--int8", action="store_true", help="also write the int8 ONNX variants")
    return ap


def _ship(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not Path(args.model).is_file():
        raise UsageError(f"model file not found: {args.model}")
    require("torch", "onnx", "onnxscript", what="pfn ship")
    import torch

    from export.cli import write_graphs
    from pfn.checkpoint import load_model, save_model

    if not args.name or Path(args.name).name != args.name or "." in args.name:
        raise UsageError(f"--name must be a plain file name without dots, got {args.name!r}")
    tasks = TASKS if args.task == "both" else (args.task,)
    prefix = Path(args.out_dir) / args.name
    weights = weights_path(prefix)
    model = load_model(args.model)  # refused before anything in the folder changes
    print(f"pfn ship: replacing the shipped model in {prefix.parent}: {weights.name} and its "
          f"ONNX graphs ({', '.join(tasks)})", file=sys.stderr)
    stale = [p for task in TASKS if task not in tasks for kind in KINDS
             for p in (graph_path(prefix, task, kind),
                       graph_path(prefix.with_name(prefix.name + ".int8"), task, kind))
             if p.is_file()]
    for path in stale:
        print(f"removed: {path} (from earlier weights)", file=sys.stderr)
        path.unlink()
    save_model(model, weights, dtype=getattr(torch, args.dtype))
    print(f"weights: {weights} ({weights.stat().st_size / 1e6:.1f} MB, {args.dtype})",
          file=sys.stderr)
    write_graphs(weights, prefix, tasks, args.int8)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("pfn ship", _ship, sys.argv[1:] if argv is None else argv,
                       user_errors=(OSError, ValueError))


if __name__ == "__main__":
    raise SystemExit(main())
