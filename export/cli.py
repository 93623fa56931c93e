"""``pfn export``: convert a model file to ONNX graphs (needs the train extra).

Writes ``PREFIX.TASK.onnx`` (x_train, y_train, x_test -> predictions, one call),
``PREFIX.TASK.fit.onnx`` and ``PREFIX.TASK.predict.onnx`` (training rows -> cache; cache +
test rows -> predictions), for TASK = classification and regression (see export/FORMAT.md).

    pfn export --out-prefix out/model                      # the shipped weights
    pfn export --checkpoint run/model.safetensors --out-prefix out/model
    pfn export --out-prefix out/model --int8               # also PREFIX.int8.TASK[...].onnx

The same weights always give the same bytes. It never writes into the package's weights
folder: ``pfn ship`` is the one command that replaces the shipped model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pfn.artifacts import DEFAULT_WEIGHTS, TASKS, WEIGHTS_DIR, in_weights_dir
from pfn.cli import CommandParser, UsageError, run_command, summary
from pfn.extras import require


def build_parser() -> CommandParser:
    ap = CommandParser(prog="pfn export", description=summary(__doc__),
                       epilog=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(DEFAULT_WEIGHTS),
                    help="model file (safetensors with the config in its metadata; default: "
                         "the shipped weights)")
    ap.add_argument("--out-prefix", required=True, metavar="PREFIX",
                    help="write PREFIX.TASK.onnx, PREFIX.TASK.fit.onnx and "
                         "PREFIX.TASK.predict.onnx")
    ap.add_argument("--task", choices=["classification", "regression", "both"], default="both")
    ap.add_argument("--int8", action="store_true", help="also write dynamically quantised "
                    "int8 variants as PREFIX.int8.TASK[.fit|.predict].onnx (smaller; accuracy "
                    "in the model card)")
    return ap


def write_graphs(checkpoint: str | Path, prefix: str | Path, tasks: tuple[str, ...],
                 int8: bool) -> None:
    """Export (and optionally quantise), printing one line per file on stderr."""
    from export.onnx import export_onnx, file_sha256, quantize_int8

    paths = export_onnx(checkpoint, prefix, tasks)
    if int8:
        paths.update({f"{key} int8": quantize_int8(path, f"{prefix}.int8.{key}.onnx")
                      for key, path in list(paths.items())})
    for key, path in paths.items():
        print(f"{key}: {path} ({path.stat().st_size / 1e6:.1f} MB, sha256 "
              f"{file_sha256(path)[:12]})", file=sys.stderr)


def _export(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if in_weights_dir(args.out_prefix):
        raise UsageError(f"--out-prefix {args.out_prefix} is in the package's weights folder "
                         f"{WEIGHTS_DIR}; only 'pfn ship' replaces the shipped model")
    if not Path(args.checkpoint).is_file():
        raise UsageError(f"checkpoint not found: {args.checkpoint}")
    require("torch", "onnx", "onnxscript", what="pfn export")
    write_graphs(args.checkpoint, args.out_prefix,
                 TASKS if args.task == "both" else (args.task,), args.int8)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("pfn export", _export, sys.argv[1:] if argv is None else argv,
                       user_errors=(OSError, ValueError))


if __name__ == "__main__":
    raise SystemExit(main())
