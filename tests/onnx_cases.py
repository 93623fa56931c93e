"""Shared by the ONNX tests: a tiny exported model (session fixture), random problems, and
the comparison of an engine's outputs with the torch model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from export.cli import main as export_main
from pfn.checkpoint import load_model, save_model
from pfn.engines.onnx_engine import OnnxEngine
from pfn.model import PFN, ModelConfig

ATOL = 1e-4


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> tuple[PFN, Path, Path]:
    """(torch model, safetensors path, ONNX prefix) of a small random model, exported once."""
    torch.manual_seed(0)
    cfg = ModelConfig(max_features=12, max_classes=5, d_model=32, n_layers=2, n_heads=2,
                      d_ff=48, n_buckets=30)
    model = PFN(cfg, borders=torch.linspace(-4, 4, 31) ** 3).eval()
    d = tmp_path_factory.mktemp("tiny")
    ckpt = save_model(model, d / "tiny.safetensors")
    assert export_main(["--checkpoint", str(ckpt), "--out-prefix", str(d / "tiny")]) == 0
    return load_model(ckpt), ckpt, d / "tiny"


def torch_outputs(model: PFN, x_train, y_train, x_test, task: str) -> dict[str, np.ndarray]:
    x = torch.cat([torch.tensor(x_train), torch.tensor(x_test)], 1)
    y = torch.tensor(y_train)
    with torch.no_grad():
        if task == "classification":
            return {"probs": model(x, y).softmax(-1).numpy()}
        return {"logits": model(x, y, "regression").numpy(),
                "borders": model.scaled_borders(y).numpy()}


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def assert_agree(engine: OnnxEngine, model: PFN, x_train, y_train, x_test, task) -> float:
    """Engine vs torch on one problem; returns the largest probability difference."""
    got = engine.predict(engine.fit(x_train, y_train, task), x_test)
    want = torch_outputs(model, x_train, y_train, x_test, task)
    if task == "classification":
        assert got["probs"].shape == want["probs"].shape
        diff = np.abs(got["probs"] - want["probs"]).max()
    else:
        assert got["logits"].shape == want["logits"].shape
        diff = np.abs(softmax(got["logits"]) - softmax(want["logits"])).max()
        scale = np.abs(want["borders"]).max() + 1.0
        np.testing.assert_allclose(got["borders"], want["borders"], rtol=1e-5,
                                   atol=1e-5 * scale)
    assert diff <= ATOL, f"{task}: max |onnx - torch| = {diff:.2e}"
    return float(diff)


def random_problem(rng, b, n, t, f, n_classes=3, nan_frac=0.1):
    x_train = rng.normal(size=(b, n, f)).astype(np.float32) * 3 + 1
    x_test = rng.normal(size=(b, t, f)).astype(np.float32) * 3 + 1
    x_train[rng.random(x_train.shape) < nan_frac] = np.nan
    x_test[rng.random(x_test.shape) < nan_frac] = np.nan
    y_cls = rng.integers(0, n_classes, (b, n)).astype(np.float32)
    y_reg = (rng.normal(size=(b, n)) * 50 + 10).astype(np.float32)
    return x_train, x_test, y_cls, y_reg


