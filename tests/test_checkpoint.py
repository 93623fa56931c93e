"""Model files and training checkpoints: content hashes, format versions, checks before
allocation, optimizer restore, and which checkpoint a resume picks."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from pfn.checkpoint import (
    check_architecture,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_model,
    read_model_file,
    save_checkpoint,
    save_model,
    verify_checkpoint,
    weights_fingerprint,
)
from pfn.model import PFN, ModelConfig

ROOT = Path(__file__).resolve().parents[1]
CFG = ModelConfig(max_features=4, max_classes=3, d_model=16, n_layers=1, n_heads=2, d_ff=16,
                  n_buckets=8)


def tiny_model(seed: int = 0) -> PFN:
    torch.manual_seed(seed)
    return PFN(CFG)


def optimizer_for(model: PFN, lr: float = 1e-3, betas=(0.9, 0.99)) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=betas)


def rewrite(path: Path, meta: dict | None = None, tensors: dict | None = None) -> None:
    """Rewrite a model file with changed metadata or tensors (no new hash)."""
    with safe_open(str(path), framework="pt") as fh:
        old_meta = fh.metadata()
    save_file(tensors or load_file(str(path)), str(path), metadata=meta or old_meta)


def test_model_file_records_a_content_hash(tmp_path: Path) -> None:
    model = tiny_model()
    path = save_model(model, tmp_path / "m.safetensors")
    found = read_model_file(path)
    assert found.verified and found.config == CFG
    assert weights_fingerprint(path) == found.sha256
    # Same weights, same fingerprint; other weights, another one.
    assert weights_fingerprint(save_model(model, tmp_path / "again.safetensors")) == found.sha256
    assert weights_fingerprint(save_model(tiny_model(1), tmp_path / "b.safetensors")) \
        != found.sha256


def test_format_1_files_load_unverified(tmp_path: Path) -> None:
    """Files written before hashes (format 1, like the shipped weights) still load, and
    their fingerprint is the hash a format-2 file of the same content records."""
    path = save_model(tiny_model(), tmp_path / "v2.safetensors")
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    old = tmp_path / "v1.safetensors"
    save_file(load_file(str(path)), str(old),
              metadata={"config": meta["config"], "format": "tabpfn-lite/1"})
    found = read_model_file(old)
    assert not found.verified
    assert found.sha256 == meta["sha256"]
    assert load_model(old).cfg == CFG
    shipped = read_model_file(ROOT / "pfn" / "weights" / "default.safetensors")
    assert len(shipped.sha256) == 64


def test_format_2_without_hash_and_unknown_formats_are_refused(tmp_path: Path) -> None:
    path = save_model(tiny_model(), tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    rewrite(path, {"config": meta["config"], "format": "tabpfn-lite/2"})
    with pytest.raises(ValueError, match=f"model file {path} .*records no sha256"):
        load_model(path)
    rewrite(path, meta | {"format": "tabpfn-lite/9"})
    with pytest.raises(ValueError, match="format 'tabpfn-lite/9'"):
        load_model(path)


def test_claimed_huge_config_is_refused_before_allocating(tmp_path: Path) -> None:
    """A header claiming a 4-billion-parameter model over small tensors is refused by the
    shape check on the meta device, quickly and without allocating it."""
    path = save_model(tiny_model(), tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    huge = json.loads(meta["config"]) | {"d_model": 4096, "d_ff": 16384, "n_layers": 4}
    rewrite(path, meta | {"config": json.dumps(huge)})
    t = time.perf_counter()
    with pytest.raises(ValueError, match=f"model file {path}: tensors do not fit its model "
                                         "config {max_features: 4, .*d_model: 4096"):
        load_model(path)
    assert time.perf_counter() - t < 5
    rewrite(path, meta | {"config": json.dumps(huge | {"d_model": 100_000})})
    with pytest.raises(ValueError, match="d_model = 100000 is beyond the sane limit 4096"):
        load_model(path)
    rewrite(path, meta | {"config": "{not json"})
    with pytest.raises(ValueError, match="bad model config"):
        load_model(path)


def test_architecture_check_names_both_configs() -> None:
    other = ModelConfig(**{**CFG.__dict__, "d_model": 32})
    with pytest.raises(ValueError, match=r"checkpoint X has model config \{.*d_model: 32, .*\}, "
                                         r"the run's config has \{.*d_model: 16, .*\}"):
        check_architecture("checkpoint X", other, CFG)
    check_architecture("same shapes", ModelConfig(**{**CFG.__dict__, "dropout": 0.1}), CFG)


def test_load_checkpoint_restores_state_and_keeps_the_run_hyperparameters(tmp_path: Path
                                                                          ) -> None:
    model = tiny_model()
    opt = optimizer_for(model, lr=0.5, betas=(0.8, 0.9))
    model(torch.randn(2, 6, 3), torch.tensor([[0.0, 1, 2], [1, 0, 1]])).sum().backward()
    opt.step()
    rng = torch.get_rng_state()
    ckpt = save_checkpoint(tmp_path, 1, model, opt, {"config": {}})
    torch.manual_seed(123)
    other = tiny_model(5)
    new_opt = optimizer_for(other, lr=0.1, betas=(0.7, 0.95))
    state = load_checkpoint(ckpt, other, new_opt)
    assert state["step"] == 1 and state["format"] == 2
    for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    saved, restored = opt.state_dict()["state"], new_opt.state_dict()["state"]
    assert saved.keys() == restored.keys() and saved
    for i in saved:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(saved[i][name], restored[i][name])
    assert torch.equal(torch.get_rng_state(), rng)
    group = new_opt.param_groups[0]  # hyperparameters are the run's, not the checkpoint's
    assert (group["lr"], group["betas"]) == (0.1, (0.7, 0.95))


def test_list_checkpoints_ignores_temporary_set_aside_and_odd_folders(tmp_path: Path) -> None:
    model, root = tiny_model(), tmp_path / "checkpoints"
    opt = optimizer_for(model)
    for step in (2, 4):
        save_checkpoint(tmp_path, step, model, opt, {"config": {}})
    for name in ("step-00000006.tmp", "step-00000008.damaged", "step-x", "notes"):
        (root / name).mkdir()
    (root / "step-00000010").write_text("a file, not a folder")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000004"]


def test_rotation_keeps_the_newest(tmp_path: Path) -> None:
    model = tiny_model()
    opt = optimizer_for(model)
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, model, opt, {"config": {}}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000004", "step-00000005"]


def test_latest_checkpoint_falls_back_and_says_why(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None  # no checkpoints at all: a fresh run
    model = tiny_model()
    opt = optimizer_for(model)
    for step in (2, 4):
        save_checkpoint(tmp_path, step, model, opt, {"config": {}})
    (tmp_path / "checkpoints" / "step-00000006").mkdir()  # stray, empty
    said: list[str] = []
    assert latest_checkpoint(tmp_path, said.append).name == "step-00000004"
    assert said == [f"skipping checkpoint step-00000006: {tmp_path}/checkpoints/step-00000006"
                    ": incomplete, no manifest.json (holds nothing)"]
    for p in list_checkpoints(tmp_path)[:-1]:
        (p / "state.json").write_text("{}")
    with pytest.raises(ValueError, match=f"no intact checkpoint in {tmp_path}/checkpoints "
                                         r"\(3 damaged: .*truncated or overwritten"):
        latest_checkpoint(tmp_path, said.append)


def test_checkpoints_without_manifest(tmp_path: Path) -> None:
    """A checkpoint written before manifests (no format in state.json) loads unverified; one
    that claims a format but lost its manifest is refused."""
    model = tiny_model()
    ckpt = save_checkpoint(tmp_path, 3, model, optimizer_for(model), {"config": {}})
    (ckpt / "manifest.json").unlink()
    with pytest.raises(ValueError, match="manifest.json is missing"):
        verify_checkpoint(ckpt)
    state = json.loads((ckpt / "state.json").read_text())
    del state["format"]
    (ckpt / "state.json").write_text(json.dumps(state))
    assert verify_checkpoint(ckpt)[0]["step"] == 3
    shutil.copytree(ckpt, tmp_path / "checkpoints" / "step-00000009")
    with pytest.raises(ValueError, match="step 3 does not match the folder name"):
        verify_checkpoint(tmp_path / "checkpoints" / "step-00000009")
