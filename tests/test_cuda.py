"""The CUDA code path: estimators (one context, local contexts, stacked), pretraining (bf16,
resume) and torchrun with NCCL.

Every test here skips without a CUDA device, so the default suite (CPU-only CI) skips them
all; they run on a GPU machine with ``python -m pytest -q -m cuda tests/test_cuda.py``.
They check what CPU tests cannot: that tensors land on the GPU, that results agree with the
CPU ones, and that checkpoints written on a GPU load on a CPU-only machine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_train import subprocess_env, write_config

from pfn import PFNClassifier, PFNRegressor
from pfn.checkpoint import list_checkpoints, load_model
from pfn.train import main

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def cuda_config(tmp_path: Path, **overrides) -> Path:
    """The tiny training config of test_train, on the GPU with bf16 autocast."""
    path = write_config(tmp_path, **overrides)
    text = path.read_text().replace('device = "cpu"', 'device = "cuda"\nbf16 = true')
    path.write_text(text)
    return path


def table(n: int = 300, f: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f))
    logits = x[:, 0] - 0.5 * x[:, 1] * x[:, 2]
    return x, (logits > 0).astype(int), logits + 0.1 * rng.normal(size=n)


def test_estimators_on_cuda_agree_with_cpu() -> None:
    x, y_cls, y_reg = table()
    tr, te = slice(0, 200), slice(200, None)
    for est, y in ((PFNClassifier, y_cls), (PFNRegressor, y_reg)):
        gpu = est(engine="torch", device="cuda", n_estimators=2).fit(x[tr], y[tr])
        cpu = est(engine="torch", device="cpu", n_estimators=2).fit(x[tr], y[tr])
        engine = gpu._ready_engine()
        assert next(engine.model.parameters()).device.type == "cuda"
        if est is PFNClassifier:
            np.testing.assert_allclose(gpu.predict_proba(x[te]), cpu.predict_proba(x[te]),
                                       atol=1e-4)
        else:
            np.testing.assert_allclose(gpu.predict(x[te]), cpu.predict(x[te]), atol=1e-3,
                                       rtol=1e-4)
        # The cached training rows are reused: predicting twice gives the same result.
        first = gpu.predict(x[te])
        np.testing.assert_array_equal(gpu.predict(x[te]), first)


def test_local_contexts_on_cuda_agree_with_cpu() -> None:
    """More training rows than ``max_train_rows``: routed local contexts, and for regression
    the power-transformed targets mapped back, give the CPU's predictions on the GPU."""
    x, y_cls, y_reg = table(n=900)
    y_reg = np.exp(y_reg)  # skewed, so the target transform is not the identity
    tr, te = slice(0, 600), slice(600, None)
    for est, y in ((PFNClassifier, y_cls), (PFNRegressor, y_reg)):
        kw = dict(engine="torch", n_estimators=2, max_train_rows=200, random_state=0)
        gpu = est(device="cuda", **kw).fit(x[tr], y[tr])
        cpu = est(device="cpu", **kw).fit(x[tr], y[tr])
        if est is PFNClassifier:
            np.testing.assert_allclose(gpu.predict_proba(x[te]), cpu.predict_proba(x[te]),
                                       atol=1e-4)
        else:
            assert gpu.target_transform_.kind == "power"
            np.testing.assert_allclose(gpu.predict(x[te]), cpu.predict(x[te]), rtol=1e-3,
                                       atol=1e-3 * np.std(y_reg))
            np.testing.assert_allclose(gpu.predict_quantiles(x[te], [0.1, 0.9]),
                                       cpu.predict_quantiles(x[te], [0.1, 0.9]), rtol=1e-3,
                                       atol=1e-3 * np.std(y_reg))


def test_stacked_strategy_on_cuda_agrees_with_cpu() -> None:
    """The stacked strategy (the classifier's default from 2,000 training rows): one
    context beside the booster's column and the blend give the CPU's predictions."""
    x, y_cls, y_reg = table(n=900)
    tr, te = slice(0, 600), slice(600, None)
    for est, y in ((PFNClassifier, y_cls), (PFNRegressor, y_reg)):
        kw = dict(engine="torch", context_strategy="stacked", max_train_rows=200,
                  random_state=0)
        gpu = est(device="cuda", **kw).fit(x[tr], y[tr])
        cpu = est(device="cpu", **kw).fit(x[tr], y[tr])
        assert gpu.context_strategy_ == "stacked" == cpu.context_strategy_
        assert gpu.booster_weight_ == cpu.booster_weight_
        if est is PFNClassifier:
            np.testing.assert_allclose(gpu.predict_proba(x[te]), cpu.predict_proba(x[te]),
                                       atol=1e-4)
        else:
            np.testing.assert_allclose(gpu.predict(x[te]), cpu.predict(x[te]), rtol=1e-3,
                                       atol=1e-3 * np.std(y_reg))


def test_training_on_cuda_resumes_and_loads_on_cpu(tmp_path: Path) -> None:
    cfg = cuda_config(tmp_path)
    straight, split = tmp_path / "straight", tmp_path / "split"
    main(["--config", str(cfg), "--out-dir", str(straight), "--no-progress"])
    main(["--config", str(cfg), "--out-dir", str(split), "--stop-at", "6", "--no-progress"])
    main(["--config", str(cfg), "--out-dir", str(split), "--resume", "--no-progress"])
    assert list_checkpoints(split)[-1].name == "step-00000012"
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(split / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:  # GPU kernels need not be bitwise deterministic; the run must still resume
        torch.testing.assert_close(a[k], b[k], atol=1e-3, rtol=1e-3)
    model = load_model(straight / "model.safetensors", device="cpu")
    assert all(p.device.type == "cpu" and torch.isfinite(p).all() for p in model.parameters())


def test_torchrun_with_nccl(tmp_path: Path) -> None:
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    n = torch.cuda.device_count()  # NCCL wants one GPU per rank
    cfg = cuda_config(tmp_path, steps=6, checkpoint_every=3, val_every=3)
    out = subprocess.run(["torchrun", "--standalone", "--nproc_per_node", str(n), "-m",
                          "pfn.train", "--config", str(cfg), "--no-progress",
                          "--cpu-minutes", "30"],  # its ranks agree through an all-reduce
                         cwd=tmp_path, env={**subprocess_env(), "NCCL_DEBUG": "WARN"},
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "run"
    assert [p.name for p in list_checkpoints(run)] == ["step-00000003", "step-00000006"]
    model = load_model(run / "model.safetensors", device="cpu")
    assert all(torch.isfinite(p).all() for p in model.parameters())
