"""``pfn export``: a model file -> ``<prefix>.classification.onnx`` + ``<prefix>.regression.onnx``.

    pfn export                                   # shipped weights -> pfn/weights/default.*.onnx
    pfn export --checkpoint run/model.safetensors --out-prefix out/model
    pfn export --checkpoint m.safetensors --out out/model.onnx   # same as --out-prefix out/model
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
    out.add_argument("--out-prefix", help="write PREFIX.classification.onnx and "
                     "PREFIX.regression.onnx (default: the checkpoint path without .safetensors)")
    out.add_argument("--out", help="alternative spelling: model.onnx -> prefix 'model'")
    ap.add_argument("--task", choices=["classification", "regression", "both"], default="both")
    args = ap.parse_args(argv)

    from export.onnx import TASKS, export_onnx, file_sha256  # imports torch: after --help

    ckpt = Path(args.checkpoint)
    if args.out_prefix:
        prefix = args.out_prefix
    elif args.out:
        prefix = args.out[: -len(".onnx")] if args.out.endswith(".onnx") else args.out
    else:
        prefix = str(ckpt.with_suffix("")) if ckpt.suffix == ".safetensors" else str(ckpt)
    tasks = TASKS if args.task == "both" else (args.task,)
    paths = export_onnx(ckpt, prefix, tasks)
    for task, path in paths.items():
        print(f"{task}: {path} ({path.stat().st_size / 1e6:.1f} MB, sha256 "
              f"{file_sha256(path)[:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
