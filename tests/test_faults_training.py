"""Fault injection on training artifacts: damaged weights files and checkpoints are refused
with one line naming the file, a resume falls back to the newest intact checkpoint and then
ends exactly where an uninterrupted run ends, config drift is refused (or applied in full
with --allow-config-change), and log.csv never repeats a step.

(A kill while a checkpoint is written is covered by the SIGKILL test in test_train.py.)
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from test_train import assert_same_weights, weights, write_config

import pfn.train
from pfn.checkpoint import latest_checkpoint, list_checkpoints, load_model, save_model
from pfn.config import config_to_dict, load_config
from pfn.model import PFN, ModelConfig
from pfn.train import lr_factor, main
from pfn.train_log import read_log

CFG = ModelConfig(max_features=4, max_classes=3, d_model=16, n_layers=1, n_heads=2, d_ff=16,
                  n_buckets=8)
STEPS = 8  # every run below: checkpoints every 2 steps, interrupted at 6


def flip_bit(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position // 8] ^= 1 << (position % 8)
    path.write_bytes(bytes(data))


def truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def run(*args: str | Path) -> int:
    return main([str(a) for a in args] + ["--no-progress"])


def logged_steps(run_dir: Path) -> list[int]:
    """The step column of every line of log.csv (a torn or merged line fails the test)."""
    lines = (run_dir / "log.csv").read_text().splitlines()
    assert all(line.count(",") == lines[0].count(",") for line in lines)
    return [int(line.split(",")[0]) for line in lines[1:]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A config, its uninterrupted run, and the same run interrupted after step 6."""
    root = tmp_path_factory.mktemp("runs")
    cfg = write_config(root, steps=STEPS, checkpoint_every=2, val_every=4, val_batches=1)
    text = cfg.read_text().replace("keep_checkpoints = 2", "keep_checkpoints = 3")
    cfg.write_text(text)
    assert run("--config", cfg, "--out-dir", root / "straight") == 0
    assert run("--config", cfg, "--out-dir", root / "stopped", "--stop-at", 6) == 0
    assert [p.name for p in list_checkpoints(root / "stopped")] == [
        "step-00000002", "step-00000004", "step-00000006"]
    return {"config": cfg, "straight": root / "straight", "stopped": root / "stopped"}


@pytest.fixture
def stopped(runs, tmp_path: Path) -> Path:
    """A fresh copy of the interrupted run to damage."""
    return Path(shutil.copytree(runs["stopped"], tmp_path / "run"))


# ----- weights files --------------------------------------------------------------------

@pytest.fixture
def weights_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_model(PFN(CFG), tmp_path / "w.safetensors")


def test_every_sampled_bit_flip_in_a_weights_file_is_refused(weights_file: Path) -> None:
    original = weights_file.read_bytes()
    header = 8 + int.from_bytes(original[:8], "little")
    rng = random.Random(0)
    positions = rng.sample(range(8 * header), 80) + rng.sample(
        range(8 * header, 8 * len(original)), 20)
    for position in positions:
        flip_bit(weights_file, position)
        with pytest.raises(ValueError, match=str(weights_file)):
            load_model(weights_file)
        weights_file.write_bytes(original)
    load_model(weights_file)  # the restored file is fine


def test_truncated_weights_files_are_refused(weights_file: Path) -> None:
    size = weights_file.stat().st_size
    original = weights_file.read_bytes()
    for keep in (0, 5, 8, 100, size // 2, size - 1):
        truncate(weights_file, keep)
        with pytest.raises(ValueError, match=f"cannot read model file {weights_file}"):
            load_model(weights_file)
        weights_file.write_bytes(original)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path: Path, bad: float) -> None:
    """1000 NaN weights once made predict return class 0 for every row; now the file is
    refused, even though its hash matches what was saved."""
    torch.manual_seed(0)
    model = PFN(CFG)
    flat = torch.nn.utils.parameters_to_vector(model.parameters())
    flat[torch.randperm(len(flat))[:1000]] = bad
    torch.nn.utils.vector_to_parameters(flat, model.parameters())
    path = save_model(model, tmp_path / "nan.safetensors")
    with pytest.raises(ValueError, match=f"model file {path}: 1000 NaN or inf weights "
                                         r"\(\d+ in "):
        load_model(path)


def test_init_from_a_damaged_file_is_one_line_error(runs, tmp_path: Path, capsys) -> None:
    damaged = Path(shutil.copy(runs["straight"] / "model.safetensors", tmp_path / "w.st"))
    flip_bit(damaged, 8 * (damaged.stat().st_size - 3))
    assert run("--config", runs["config"], "--out-dir", tmp_path / "new",
               "--init-from", damaged) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"pfn train: error: model file {damaged}")
    assert not (tmp_path / "new" / "checkpoints").exists()


# ----- checkpoints ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["model.safetensors", "optim.safetensors", "state.json",
                                  "manifest.json"])
@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_any_damaged_checkpoint_file_makes_resume_fall_back(stopped: Path, name: str,
                                                            damage: str) -> None:
    path = stopped / "checkpoints" / "step-00000006" / name
    if damage == "flip":
        flip_bit(path, random.Random(name).randrange(8 * path.stat().st_size))
    elif damage == "truncate":
        truncate(path, path.stat().st_size // 2)
    else:
        path.unlink()
    said: list[str] = []
    assert latest_checkpoint(stopped, said.append).name == "step-00000004"
    assert len(said) == 1 and said[0].startswith("skipping checkpoint step-00000006: ")


def test_sampled_bit_flips_in_a_manifest_are_all_caught(stopped: Path) -> None:
    """The manifest is parsed, not hashed: every field of it must still be checked."""
    path = stopped / "checkpoints" / "step-00000006" / "manifest.json"
    original = path.read_bytes()
    for position in random.Random(1).sample(range(8 * len(original)), 120):
        flip_bit(path, position)
        assert latest_checkpoint(stopped, lambda _: None).name == "step-00000004", position
        path.write_bytes(original)


@pytest.mark.parametrize("fault", ["flip model", "empty newest", "stray newer"])
def test_resume_after_fallback_ends_like_an_uninterrupted_run(runs, stopped: Path, fault: str,
                                                              capsys) -> None:
    ckpts = stopped / "checkpoints"
    if fault == "flip model":
        flip_bit(ckpts / "step-00000006" / "model.safetensors", 8 * 2000 + 3)
    elif fault == "empty newest":
        shutil.rmtree(ckpts / "step-00000006")
        (ckpts / "step-00000006").mkdir()
    else:
        (ckpts / "step-00000099").mkdir()
    (stopped / "log.csv").write_text((stopped / "log.csv").read_text() + "8,0.0001,1.2")  # torn
    assert run("--config", runs["config"], "--out-dir", stopped, "--resume") == 0
    err = capsys.readouterr().err
    skipped = "step-00000099" if fault == "stray newer" else "step-00000006"
    resumed = "step-00000006" if fault == "stray newer" else "step-00000004"
    assert f"skipping checkpoint {skipped}: {ckpts / skipped}" in err
    assert f"resumed from {ckpts / resumed} at step {int(resumed[-1])}" in err
    assert f"set aside damaged checkpoint {ckpts / skipped} as {skipped}.damaged" in err
    assert_same_weights(weights(stopped), weights(runs["straight"]))
    # The log was cut back to the resumed step: every step once, the torn row gone, and the
    # rows recomputed after the resume equal the uninterrupted run's.
    assert logged_steps(stopped) == [2, 4, 6, 8]
    assert [r.get("loss_classification") for r in read_log(stopped / "log.csv")] == [
        r.get("loss_classification") for r in read_log(runs["straight"] / "log.csv")]
    assert latest_checkpoint(stopped).name == "step-00000008"


def test_no_intact_checkpoint_is_a_one_line_error(runs, stopped: Path, capsys) -> None:
    for ckpt in list_checkpoints(stopped):
        truncate(ckpt / "optim.safetensors", 10)
    assert run("--config", runs["config"], "--out-dir", stopped, "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"pfn train: error: no intact checkpoint in {stopped}/checkpoints")
    assert list_checkpoints(stopped)  # nothing deleted or renamed


def test_fresh_start_in_a_folder_with_checkpoints_is_refused(runs, stopped: Path,
                                                             capsys) -> None:
    assert run("--config", runs["config"], "--out-dir", stopped) == 2
    assert "already holds checkpoints: pass --resume" in capsys.readouterr().err


# ----- config drift on resume -----------------------------------------------------------

def drifted(runs, tmp_path: Path, **changes: str) -> Path:
    """The run's config file with ``key = value`` lines replaced (or added to [optim]),
    and run.seed 3."""
    text = runs["config"].read_text()
    for key, value in changes.items():
        old = [line for line in text.splitlines() if line.startswith(f"{key} =")]
        text = text.replace(old[0], f"{key} = {value}") if old else text.replace(
            "[optim]", f"[optim]\n{key} = {value}")
    path = tmp_path / "drifted.toml"
    path.write_text(text.replace("[run]", "[run]\nseed = 3"))
    return path


def test_config_drift_is_refused_with_the_fields(runs, stopped: Path, tmp_path: Path,
                                                 capsys) -> None:
    cfg = drifted(runs, tmp_path, lr="5e-4")
    assert run("--config", cfg, "--out-dir", stopped, "--resume", "--threads", 2) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(f"pfn train: error: checkpoint {stopped}/checkpoints/step-00000006 "
                          "was trained with another config: optim.lr: 0.001 -> 0.0005; "
                          "run.seed: 0 -> 3. Resume with the same config, or pass "
                          "--allow-config-change")
    assert latest_checkpoint(stopped).name == "step-00000006"  # nothing written


def test_another_architecture_is_refused_even_with_the_flag(runs, stopped: Path,
                                                            tmp_path: Path, capsys) -> None:
    cfg = drifted(runs, tmp_path, d_model="64")
    assert run("--config", cfg, "--out-dir", stopped, "--resume",
               "--allow-config-change") == 2
    err = capsys.readouterr().err
    assert (f"checkpoint {stopped}/checkpoints/step-00000006 has model config {{max_features: "
            "10, max_classes: 10, d_model: 32,") in err
    assert "the run's config has {max_features: 10, max_classes: 10, d_model: 64," in err


def test_allowed_config_change_applies_every_field(runs, stopped: Path, tmp_path: Path,
                                                   monkeypatch, capsys) -> None:
    cfg_path = drifted(runs, tmp_path, lr="5e-4", steps="10", warmup_steps="2",
                       weight_decay="0.5")
    seeds: list[tuple[int, int]] = []
    real = pfn.train.step_generator

    def spy(seed: int, rank: int, step: int) -> torch.Generator:
        seeds.append((seed, step))
        return real(seed, rank, step)

    monkeypatch.setattr(pfn.train, "step_generator", spy)
    copy = Path(shutil.copytree(stopped, tmp_path / "copy"))
    assert run("--config", cfg_path, "--out-dir", stopped, "--resume",
               "--allow-config-change") == 0
    assert "config changed: optim.lr: 0.001 -> 0.0005; optim.warmup_steps: 5 -> 2; " \
           "optim.weight_decay: 0.01 -> 0.5; run.seed: 0 -> 3; run.steps: 8 -> 10" \
        in capsys.readouterr().err
    # The batches of steps 6..9 come from the new seed; the lr follows the new schedule.
    assert [s for s in seeds if s[1] >= 6 and s[0] in (0, 3)] == [(3, 6), (3, 7), (3, 8), (3, 9)]
    new = load_config(cfg_path)
    rows = [r for r in read_log(stopped / "log.csv") if r["step"] > 6 and "lr" in r]
    assert [r["lr"] for r in rows] == [new.optim.lr * lr_factor(s - 1, new.optim, 10)
                                       for s in (8, 10)]
    state = json.loads((list_checkpoints(stopped)[-1] / "state.json").read_text())
    assert state["config"]["optim"] == config_to_dict(new)["optim"]
    assert state["config_changes"][0]["step"] == 6
    # The new config is now the run's: a later resume with it needs no flag, and an
    # interruption changes nothing (the decay and betas came from the config both times).
    assert run("--config", cfg_path, "--out-dir", copy, "--resume", "--allow-config-change",
               "--stop-at", 8) == 0
    assert run("--config", cfg_path, "--out-dir", copy, "--resume") == 0
    assert_same_weights(weights(copy), weights(stopped))
    assert logged_steps(copy) == logged_steps(stopped) == [2, 4, 6, 8, 10]
