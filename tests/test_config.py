"""The training configuration: one parser, frozen validated sections, a typed prior,
model/prior size cross-checks, overrides that re-validate, and the row curriculum."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from pfn.config import (
    DataConfig,
    PriorConfig,
    TrainConfig,
    config_changes,
    config_from_dict,
    config_to_dict,
    load_config,
    model_config_from_dict,
    with_run,
)
from pfn.model import ModelConfig
from pfn.train import draw_batch, step_generator
from priors.mix import PRIORS

ROOT = Path(__file__).resolve().parents[1]
SMALL_MODEL = {"max_features": 10, "max_classes": 10, "d_model": 32, "n_layers": 2,
               "n_heads": 2, "d_ff": 64, "n_buckets": 50}


def small(**sections) -> dict:
    return {"model": dict(SMALL_MODEL), "prior": {"scm": {"max_features": 10,
                                                          "num_features": [1, 10]}}} | sections


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_round_trip(path: Path) -> None:
    cfg = load_config(path)
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert isinstance(cfg.prior, PriorConfig)
    for family in cfg.prior.families:  # typed: each family holds its config dataclass
        assert isinstance(family.config, PRIORS[family.name][1])


def test_every_registered_prior_family_parses() -> None:
    for name, (_, config_cls) in PRIORS.items():
        cfg = config_from_dict({"prior": {name: {"weight": 2}}})
        assert cfg.prior[name].weight == 2.0
        assert cfg.prior[name].config == config_cls()


def test_prior_weights_and_options_are_typed() -> None:
    cfg = config_from_dict(small(prior={"scm": {"weight": 0.7, "max_features": 10,
                                                "num_features": [1, 10]},
                                        "gp": {"weight": 0.3, "max_features": 5,
                                               "lengthscale": {"low": 0.2, "high": 0.4}}}))
    assert cfg.prior.names() == ["scm", "gp"]
    assert cfg.prior["gp"].config.lengthscale.high == 0.4
    assert type(cfg.prior.build()).__name__ == "MixturePrior"
    single = config_from_dict(small())
    assert type(single.prior.build()).__name__ == "SCMPrior"  # alone, not a mixture


def test_configs_are_frozen() -> None:
    cfg = config_from_dict(small())
    for section in (cfg, cfg.data, cfg.optim, cfg.run, cfg.prior, cfg.prior.families[0]):
        with pytest.raises(dataclasses.FrozenInstanceError):
            section.__setattr__("x", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.run.steps = 5  # type: ignore[misc]


@pytest.mark.parametrize("d, match", [
    ({"runn": {}}, r"unknown config sections \['runn'\]"),
    ({"run": {"stepz": 3}}, r"\[run\]: unknown keys \['stepz'\]"),
    ({"run": {"steps": "ten"}}, r"run.steps must be of type int, got 'ten'"),
    ({"run": {"steps": 0}}, r"run.steps must be >= 1, got 0"),
    ({"run": {"bf16": 1}}, r"run.bf16 must be of type bool"),
    ({"run": {"device": "gpu"}}, r"run.device .* got 'gpu'"),
    ({"optim": {"lr": -1.0}}, r"optim.lr must be > 0, got -1.0"),
    ({"optim": {"beta2": 1.0}}, r"optim.beta2 must be in \[0, 1\)"),
    ({"data": {"min_rows": 600}}, r"min_rows=600, max_rows=512"),
    ({"model": {"d_model": 8192, "n_heads": 4}}, r"model.d_model = 8192 is beyond .* 4096"),
    ({"prior": {"tabular_gan": {}}}, r"unknown prior 'tabular_gan'"),
    ({"prior": {}}, r"at least one family"),
    ({"prior": {"scm": {"weight": "a lot"}}}, r"prior.scm.weight must be a number"),
    ({"prior": {"scm": {"depth": 3}}}, r"\[prior.scm\]: unknown keys \['depth'\]"),
])
def test_errors_name_the_field_and_value(d: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        config_from_dict(d)


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run]\nsteps = -3\n")
    with pytest.raises(ValueError, match=f"{bad}: run.steps must be >= 1, got -3"):
        load_config(bad)


def test_model_and_prior_sizes_are_cross_checked() -> None:
    with pytest.raises(ValueError, match="prior.scm.max_features = 100 exceeds "
                                         "model.max_features = 10"):
        config_from_dict(small(prior={"scm": {}}))
    too_many_classes = {"scm": {"max_features": 10, "num_features": [1, 10],
                                "postprocess": {"max_classes": 8}}}
    with pytest.raises(ValueError, match="prior.scm.max_classes = 8 exceeds "
                                         "model.max_classes = 4"):
        config_from_dict(small(model=SMALL_MODEL | {"max_classes": 4}, prior=too_many_classes))
    # Regression only: the class count of the prior does not matter.
    config_from_dict(small(model=SMALL_MODEL | {"max_classes": 4}, prior=too_many_classes,
                           data={"p_regression": 1.0}))


def test_overrides_build_a_new_validated_config() -> None:
    cfg = config_from_dict(small())
    new = with_run(cfg, out_dir="elsewhere", steps=7, threads=None)
    assert (new.run.out_dir, new.run.steps, new.run.threads) == ("elsewhere", 7, cfg.run.threads)
    assert cfg.run.steps == 10_000 and cfg.run.out_dir == "runs/default"  # untouched
    assert with_run(cfg, steps=None) is cfg
    with pytest.raises(ValueError, match="run.steps must be >= 1, got 0"):
        with_run(cfg, steps=0)
    with pytest.raises(ValueError, match="model.max_features"):  # the whole config re-checks
        dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, max_features=5))


def test_config_changes_are_dotted_old_to_new() -> None:
    a = config_from_dict(small())
    b = dataclasses.replace(a, optim=dataclasses.replace(a.optim, lr=1e-3),
                            run=dataclasses.replace(a.run, seed=4, out_dir="x"))
    changes = config_changes(config_to_dict(a), config_to_dict(b), ignore=("run.out_dir",))
    assert changes == ["optim.lr: 0.0003 -> 0.001", "run.seed: 0 -> 4"]


def test_model_config_parser_is_shared_and_bounded() -> None:
    assert model_config_from_dict(SMALL_MODEL) == ModelConfig(**SMALL_MODEL)
    with pytest.raises(ValueError, match="model.n_layers = 65 is beyond the sane limit 64"):
        model_config_from_dict(SMALL_MODEL | {"n_layers": 65})
    with pytest.raises(ValueError, match="unknown keys"):
        model_config_from_dict(SMALL_MODEL | {"n_experts": 8})


# ----- row curriculum -------------------------------------------------------------------

def test_row_curriculum_ramps_linearly_then_holds() -> None:
    d = DataConfig(min_rows=32, max_rows=512, rows_ramp_steps=100, rows_ramp_start=64)
    assert [d.max_rows_at(s) for s in (0, 50, 99, 100, 10_000)] == [64, 288, 507, 512, 512]
    assert d.max_rows_at(None) == 512
    off = DataConfig(min_rows=32, max_rows=512)
    assert {off.max_rows_at(s) for s in (0, 5, 10_000)} == {512}


@pytest.mark.parametrize("kw, match", [
    ({"rows_ramp_steps": 10, "rows_ramp_start": 8},
     r"rows_ramp_start must be in .* = \[64, 512\], got 8"),
    ({"rows_ramp_steps": 10, "rows_ramp_start": 600}, r"rows_ramp_start must be in"),
    ({"rows_ramp_start": 100}, r"no effect with rows_ramp_steps = 0"),
    ({"rows_ramp_steps": -1}, r"rows_ramp_steps must be >= 0"),
])
def test_row_curriculum_validation(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DataConfig(**kw)


def test_rows_scale_log_draws_short_and_long_datasets_alike() -> None:
    d = DataConfig(min_rows=64, max_rows=1024, rows_scale="log")
    g = torch.Generator().manual_seed(0)
    rows = np.array([d.draw_rows(g, None) for _ in range(4000)])
    assert rows.min() >= 64 and rows.max() <= 1024 and rows.max() > 900
    # log-uniform: each doubling holds a quarter of the draws; uniform: 64-128 gets 1/15
    shares = [np.mean((rows >= a) & (rows < 2 * a)) for a in (64, 128, 256, 512)]
    assert all(abs(sh - 0.25) < 0.04 for sh in shares), shares
    uni = DataConfig(min_rows=64, max_rows=1024)
    g = torch.Generator().manual_seed(0)
    assert np.mean([uni.draw_rows(g, None) < 128 for _ in range(4000)]) < 0.1
    # the same generator state gives the same draw; the curriculum's cap holds
    a, b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert d.draw_rows(a, None) == d.draw_rows(b, None)
    ramp = DataConfig(min_rows=64, max_rows=1024, rows_scale="log", rows_ramp_steps=100,
                      rows_ramp_start=128)
    g = torch.Generator().manual_seed(1)
    assert max(ramp.draw_rows(g, 0) for _ in range(500)) <= 128


def test_rows_scale_uniform_draws_what_runs_before_it_drew() -> None:
    d = DataConfig(min_rows=32, max_rows=512)
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert [d.draw_rows(a, 7) for _ in range(20)] == \
        [int(torch.randint(32, 513, (1,), generator=b)) for _ in range(20)]


def test_rows_scale_is_validated() -> None:
    with pytest.raises(ValueError, match=r"data.rows_scale must be one of \('uniform', 'log'\), "
                       r"got 'exp'"):
        DataConfig(rows_scale="exp")


def test_row_curriculum_shapes_batches_by_step() -> None:
    cfg = config_from_dict(small(data={"min_rows": 8, "max_rows": 64, "batch_size": 2,
                                       "rows_ramp_steps": 20, "rows_ramp_start": 8}))
    prior = cfg.prior.build()
    early = {draw_batch(prior, cfg.data, step_generator(0, 0, s), s).x.shape[1]
             for s in range(3)}
    assert early <= set(range(8, 8 + 3 * 56 // 20 + 1))
    late = [draw_batch(prior, cfg.data, step_generator(0, 0, s), s).x.shape[1]
            for s in range(20, 60)]
    assert max(late) > 40  # the full range again after the ramp
    # A pure function of (seed, rank, step): drawn twice, the same batch.
    a = draw_batch(prior, cfg.data, step_generator(0, 0, 5), 5)
    b = draw_batch(prior, cfg.data, step_generator(0, 0, 5), 5)
    assert torch.equal(a.x.nan_to_num(), b.x.nan_to_num()) and torch.equal(a.y, b.y)
    # Off by default: a step changes nothing.
    off = config_from_dict(small())
    c = draw_batch(prior, off.data, step_generator(0, 0, 3), 3)
    d = draw_batch(prior, off.data, step_generator(0, 0, 3))
    assert c.x.shape == d.x.shape and torch.equal(c.y, d.y)


def test_defaults_are_consistent() -> None:
    cfg = TrainConfig()
    assert cfg.prior.names() == ["scm"]
    assert config_from_dict({}) == cfg
