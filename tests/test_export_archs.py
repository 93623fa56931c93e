"""Every row-encoder architecture exports to the fit/predict/full ONNX graphs with dynamic
rows and features, and the ONNX Runtime engine agrees with torch within 1e-4."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx_cases import assert_agree, random_problem

from export.cli import main as export_main
from pfn.checkpoint import load_model, save_model
from pfn.engines.onnx_engine import OnnxEngine
from pfn.model import PFN, ModelConfig


@pytest.mark.slow  # six graph exports per architecture: minutes on 2 cores
@pytest.mark.parametrize("arch", ["feature", "cell"])
def test_arch_exports_and_agrees(arch: str, tmp_path) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(max_features=12, max_classes=5, d_model=32, n_layers=2, n_heads=2,
                      d_ff=48, n_buckets=30, arch=arch, cell_dim=8, cell_heads=2, cell_ff=16,
                      cell_cls=2)
    model = PFN(cfg, borders=torch.linspace(-4, 4, 31) ** 3).eval()
    for p in model.parameters():  # random output layers: every output depends on inputs
        p.data.add_(0.1 * torch.randn_like(p))
    ckpt = save_model(model, tmp_path / "m.safetensors")
    assert export_main(["--checkpoint", str(ckpt), "--out-prefix", str(tmp_path / "m")]) == 0
    engine, loaded = OnnxEngine(tmp_path / "m"), load_model(ckpt)
    rng = np.random.default_rng(0)
    for f in (1, 5, 12):  # one graph, any number of features
        x_train, x_test, y_cls, y_reg = random_problem(rng, 2, 30, 9, f)
        assert_agree(engine, loaded, x_train, y_cls, x_test, "classification")
        assert_agree(engine, loaded, x_train, y_reg, x_test, "regression")
