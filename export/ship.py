"""``pfn ship``: make a trained model the package's default, weights and ONNX graphs together.

    pfn ship ~/runs/default/model.safetensors

writes ``pfn/weights/default.safetensors`` in float16 (half the size; the bar-distribution
borders stay float32) and re-exports ``pfn/weights/default.TASK[.fit|.predict].onnx`` from
exactly that file, so the graphs' ``source_sha256`` matches the shipped weights (a test
checks it). The ONNX graphs are exported from the float16 weights (and store them as
float16, losslessly), so both engines compute with the same numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent.parent / "pfn" / "weights"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pfn ship", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a model file (e.g. RUN_DIR/model.safetensors)")
    ap.add_argument("--out-dir", default=str(WEIGHTS), help="default: the package's weights/")
    ap.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    ap.add_argument("--int8", action="store_true", help="also write the int8 ONNX variant")
    args = ap.parse_args(argv)

    import torch

    from export.cli import main as export_main
    from pfn.checkpoint import load_model, save_model

    out = Path(args.out_dir) / "default.safetensors"
    save_model(load_model(args.model), out, dtype=getattr(torch, args.dtype))
    print(f"weights: {out} ({out.stat().st_size / 1e6:.1f} MB, {args.dtype})")
    return export_main(["--checkpoint", str(out)] + (["--int8"] if args.int8 else []))


if __name__ == "__main__":
    raise SystemExit(main())
