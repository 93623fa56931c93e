"""``pfn export``: a model file -> ONNX graphs, per task a full graph and a fit/predict pair.

Writes ``PREFIX.TASK.onnx`` (x_train, y_train, x_test -> predictions, one call),
``PREFIX.TASK.fit.onnx`` and ``PREFIX.TASK.predict.onnx`` (training rows -> cache; cache +
test rows -> predictions), for TASK = classification and regression (see export/FORMAT.md).

    pfn export                                   # shipped weights -> pfn/weights/default.*.onnx
    pfn export --checkpoint run/model.safetensors --out-prefix out/model
    pfn export --checkpoint m.safetensors --out out/model.onnx   # same as --out-prefix out/model
    pfn export --int8        # also PREFIX.int8.TASK[.fit|.predict].onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent.parent / "pfn" / "weights"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pfn export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(WEIGHTS / "default.safetensors"),
                    help="model file (safetensors with the config in its metadata)")
    out = ap.add_mutually_exclusive_group()
    out.add_argument("--out-prefix", help="write PREFIX.TASK.onnx, PREFIX.TASK.fit.onnx "
                     "and PREFIX.TASK.predict.onnx (default: the checkpoint path without "
                     ".safetensors)")
    out.add_argument("--out", help="alternative spelling: model.onnx -> prefix 'model'")
    ap.add_argument("--task", choices=["classification", "regression", "both"], default="both")
    ap.add_argument("--int8", action="store_true", help="also write a dynamically "
                    "quantised int8 variant as PREFIX.int8.TASK.onnx (about 1/3 the size)")
    args = ap.parse_args(argv)

    # imports torch: after --help
    from export.onnx import export_onnx, file_sha256, quantize_int8
    from export.runtime import TASKS

    ckpt = Path(args.checkpoint)
    if args.out_prefix:
        prefix = args.out_prefix
    elif args.out:
        prefix = args.out[: -len(".onnx")] if args.out.endswith(".onnx") else args.out
    else:
        prefix = str(ckpt.with_suffix("")) if ckpt.suffix == ".safetensors" else str(ckpt)
    tasks = TASKS if args.task == "both" else (args.task,)
    paths = export_onnx(ckpt, prefix, tasks)
    if args.int8:
        paths.update({f"{task} int8": quantize_int8(path, f"{prefix}.int8.{task}.onnx")
                      for task, path in list(paths.items())})
    for task, path in paths.items():
        print(f"{task}: {path} ({path.stat().st_size / 1e6:.1f} MB, sha256 "
              f"{file_sha256(path)[:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
