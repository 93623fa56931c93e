"""The transformer's contract: caching equals a full pass, test rows are independent,
class masking, validation, and save/load round trips."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pfn.checkpoint import load_model, save_model
from pfn.model import ARCHS, PFN, ModelConfig

CFG = ModelConfig(max_features=6, max_classes=5, d_model=32, n_layers=2, n_heads=4, d_ff=48,
                  n_buckets=20)
N_TRAIN, N_TEST, N_FEAT = 12, 7, 4


def arch_config(arch: str) -> ModelConfig:
    return replace(CFG, arch=arch, cell_dim=8, cell_heads=2, cell_ff=16, cell_cls=2)


@pytest.fixture(params=ARCHS)
def model(request) -> PFN:
    """A small random model of each architecture (every contract below holds for all)."""
    torch.manual_seed(0)
    cfg = arch_config(request.param)
    m = PFN(cfg, torch.linspace(-3, 3, cfg.n_buckets + 1) ** 3 / 9).eval()
    # Random (not default) output layers, so every output depends on its inputs.
    for p in m.parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    return m


def make_data(task: str, seed: int = 0, nan: bool = True, batch: int = 3
              ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, N_TRAIN + N_TEST, N_FEAT, generator=g) * 3 + 1
    if nan:
        x[torch.rand(x.shape, generator=g) < 0.15] = float("nan")
    if task == "classification":
        y = torch.randint(0, 4, (batch, N_TRAIN), generator=g).float()
    else:
        y = torch.randn(batch, N_TRAIN, generator=g) * 5 + 2
    return x, y


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_fit_predict_context_equals_forward(model: PFN, task: str) -> None:
    x, y = make_data(task)
    with torch.no_grad():
        full = model(x, y, task)
    ctx = model.fit_context(x[:, :N_TRAIN], y, task)
    cached = model.predict_context(ctx, x[:, N_TRAIN:])
    torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)
    # The cache is reusable: a second, different test batch also matches a full pass.
    x2 = torch.cat([x[:, :N_TRAIN], x[:, N_TRAIN:].flip(1)[:, :3] * 2], dim=1)
    with torch.no_grad():
        full2 = model(x2, y, task)
    torch.testing.assert_close(model.predict_context(ctx, x2[:, N_TRAIN:]), full2,
                               rtol=1e-5, atol=1e-5)
    assert torch.isfinite(full[full > float("-inf")]).all()


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_test_rows_do_not_affect_each_other(model: PFN, task: str) -> None:
    x, y = make_data(task)
    changed = x.clone()
    changed[:, N_TRAIN + 2:N_TRAIN + 5] = torch.tensor([1e6, float("nan"), -3.0, 0.0])
    with torch.no_grad():
        a, b = model(x, y, task), model(changed, y, task)
    keep = [0, 1, 5, 6]
    torch.testing.assert_close(b[:, keep], a[:, keep], rtol=0, atol=1e-6)
    assert not torch.allclose(b[:, 2:5], a[:, 2:5])  # the changed rows did change
    # Fewer test rows: the remaining rows' outputs are unchanged too.
    with torch.no_grad():
        c = model(x[:, :N_TRAIN + 2], y, task)
    torch.testing.assert_close(c, a[:, :2], rtol=0, atol=1e-6)


def test_training_rows_are_unaffected_by_test_rows(model: PFN) -> None:
    """Every layer's keys and values (the training rows' states) ignore the test rows."""
    x, y = make_data("regression")
    seen: list[torch.Tensor] = []
    hooks = [b.kv.register_forward_hook(lambda mod, inp, out: seen.append(out.clone()))
             for b in model.blocks]
    with torch.no_grad():
        model(x, y, "regression")
        first = list(seen)
        seen.clear()
        other = torch.cat([x[:, :N_TRAIN], 1e3 * torch.randn(3, 11, N_FEAT)], dim=1)
        model(other, y, "regression")
    for h in hooks:
        h.remove()
    assert len(first) == len(seen) == CFG.n_layers
    for a, b in zip(first, seen, strict=True):
        torch.testing.assert_close(b[:, :N_TRAIN], a[:, :N_TRAIN], rtol=0, atol=0)
    # The training rows predicted as test rows get the same outputs whatever else is queried.
    with torch.no_grad():
        alone = model(torch.cat([x[:, :N_TRAIN], x[:, :N_TRAIN]], 1), y, "regression")
        mixed = model(torch.cat([x[:, :N_TRAIN], x[:, :N_TRAIN], other[:, N_TRAIN:]], 1), y,
                      "regression")
    torch.testing.assert_close(mixed[:, :N_TRAIN], alone, rtol=0, atol=1e-6)


def test_num_classes_masking(model: PFN) -> None:
    x, y = make_data("classification")
    y[:, 0] = 2  # highest label 2 in every dataset -> 3 classes by default
    y[:, 1:] = y[:, 1:].clamp(max=2)
    with torch.no_grad():
        logits = model(x, y, "classification")
        explicit = model(x, y, "classification", num_classes=torch.tensor([3, 2, 5]))
    assert logits.shape == (3, N_TEST, model.cfg.max_classes)
    assert torch.isneginf(logits[..., 3:]).all()
    assert torch.isfinite(logits[..., :3]).all()
    p = logits.softmax(-1)
    torch.testing.assert_close(p.sum(-1), torch.ones(3, N_TEST))
    assert (p[..., 3:] == 0).all()
    assert torch.isneginf(explicit[1, :, 2:]).all() and torch.isfinite(explicit[1, :, :2]).all()
    assert torch.isfinite(explicit[2]).all()
    ctx = model.fit_context(x[:, :N_TRAIN], y, "classification")
    assert torch.isneginf(model.predict_context(ctx, x[:, N_TRAIN:])[..., 3:]).all()


def test_too_many_features_raises(model: PFN) -> None:
    x = torch.randn(1, 10, CFG.max_features + 1)
    y = torch.zeros(1, 6)
    with pytest.raises(ValueError, match="features"):
        model(x, y, "classification")
    with pytest.raises(ValueError, match="features"):
        model.fit_context(x[:, :6], y, "classification")
    ctx = model.fit_context(x[:, :6, :3], y, "classification")
    with pytest.raises(ValueError, match="features"):
        model.predict_context(ctx, x[:, 6:, :4])


@pytest.mark.parametrize("kwargs, match", [
    ({"d_model": 30, "n_heads": 4}, "divisible"),
    ({"n_layers": 0}, "n_layers"),
    ({"max_features": 0}, "max_features"),
    ({"n_buckets": 0}, "n_buckets"),
    ({"max_classes": 1}, "max_classes"),
    ({"max_classes": 101}, "max_classes"),
    ({"arch": "tree"}, "arch"),
    ({"cell_dim": 10, "cell_heads": 4}, "cell_dim"),
    ({"cell_layers": 0}, "cell_layers"),
])
def test_model_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


def test_borders_shape_validated() -> None:
    with pytest.raises(ValueError, match="borders"):
        PFN(CFG, torch.linspace(-1, 1, CFG.n_buckets))


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 0.0), (torch.float16, 2e-2)])
def test_save_load_round_trip(model: PFN, tmp_path, dtype: torch.dtype, tol: float) -> None:
    path = save_model(model, tmp_path / "m.safetensors", dtype=dtype)
    loaded = load_model(path)
    assert loaded.cfg == model.cfg
    assert not loaded.training
    torch.testing.assert_close(loaded.borders, model.borders, rtol=0, atol=0)
    for task in ("classification", "regression"):
        x, y = make_data(task, seed=3)
        with torch.no_grad():
            want, got = model(x, y, task), loaded(x, y, task)
        finite = torch.isfinite(want)
        assert torch.equal(finite, torch.isfinite(got))
        torch.testing.assert_close(got[finite], want[finite], rtol=tol, atol=tol)
    if dtype == torch.float16:  # half the bytes of the fp32 file (borders stay fp32)
        fp32 = save_model(model, tmp_path / "m32.safetensors")
        assert path.stat().st_size < 0.6 * fp32.stat().st_size


def test_load_model_errors(model: PFN, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00not a safetensors file" * 10)
    with pytest.raises(ValueError, match="cannot read"):
        load_model(junk)
    good = save_model(model, tmp_path / "good.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="cannot read"):
        load_model(truncated)
    from safetensors.torch import save_file

    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))
    with pytest.raises(ValueError, match="config"):
        load_model(bare)


def test_standardize_switch() -> None:
    """Standardised models ignore the units of x and y; raw (GP-mimicry) models do not."""
    x, y = make_data("regression", nan=False)
    outs = {}
    for standardize in (True, False):
        torch.manual_seed(0)
        m = PFN(ModelConfig(**{**CFG.__dict__, "standardize": standardize})).eval()
        with torch.no_grad():
            a = m(x, y, "regression")
            b = m(x * 10 + 3, y, "regression")
            outs[standardize] = (a, b, m.scaled_borders(y), m.scaled_borders(y * 2))
    a, b, borders, borders2 = outs[True]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(borders, borders2)  # borders follow the targets' units
    a, b, borders, borders2 = outs[False]
    assert not torch.allclose(a, b, atol=1e-3)
    torch.testing.assert_close(borders, borders2)  # raw targets: borders stay put
    torch.testing.assert_close(borders[0], PFN(CFG).borders)


@pytest.mark.parametrize("arch", ["feature", "cell"])
def test_feature_encoders_tell_columns_apart(arch: str) -> None:
    """Features are exchangeable for attention, so swapping two columns' values must still
    change a row's token (the random identities tell them apart) — while a row token
    never depends on other rows."""
    torch.manual_seed(0)
    m = PFN(arch_config(arch)).eval()
    x, _ = make_data("classification", nan=False)
    mean, std = x[:, :N_TRAIN].mean(1, keepdim=True), x[:, :N_TRAIN].std(1, keepdim=True)
    with torch.no_grad():
        a = m._rows(x, mean, std, None)
        b = m._rows(x[..., [1, 0, 2, 3]], mean[..., [1, 0, 2, 3]], std[..., [1, 0, 2, 3]], None)
        c = m._rows(x[:, :5], mean, std, None)
    assert not torch.allclose(a, b, atol=1e-4)
    torch.testing.assert_close(c, a[:, :5])


@pytest.mark.parametrize("arch", ["feature", "cell"])
def test_zero_padded_columns_are_ignored_in_training(arch: str) -> None:
    """Pretraining batches pad narrow datasets with zero columns; with ``num_features`` the
    padding must not change the output (same identity draw: same RNG state)."""
    m = PFN(arch_config(arch)).train()
    x, y = make_data("classification", nan=False)
    padded = torch.cat([x, torch.zeros(*x.shape[:2], 2)], dim=-1)
    nf = torch.full((x.shape[0],), N_FEAT)
    torch.manual_seed(1)
    want = m(x, y, "classification", num_features=nf)
    torch.manual_seed(1)
    got = m(padded, y, "classification", num_features=nf)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
