"""Behaviour of the priors: shapes, determinism, labels, categoricals, missing values, the GP
covariance, and configuration errors. Statistical tolerances are 5 standard deviations of the
statistic under the configured distribution (a false alarm about once in 3.5 million runs).
"""

from __future__ import annotations

import math

import pytest
import torch

from priors import (
    BNNConfig,
    BNNPrior,
    ChoiceConfig,
    ChoicePrior,
    GLMConfig,
    GLMPrior,
    GPConfig,
    GPPrior,
    MixturePrior,
    PostprocessConfig,
    Range,
    RulesConfig,
    RulesPrior,
    SCMConfig,
    SCMPrior,
    build_prior,
    kernel_matrix,
)
from priors.gp import KERNELS
from priors.trees import random_tree_layer

TASKS = ("classification", "regression")
MAX_FEATURES = 12  # small tables keep the file fast; the code paths are the same


def make_priors(max_features: int = MAX_FEATURES, post: PostprocessConfig | None = None
                ) -> dict[str, object]:
    """Every prior (and a mixture of them), optionally sharing one post-processing config."""
    f = {"max_features": max_features, "num_features": Range(1, max_features)}
    pp = {} if post is None else {"postprocess": post}
    priors = {
        "scm": SCMPrior(SCMConfig(**f, p_tree=0.0, **pp)),
        "scm-trees": SCMPrior(SCMConfig(**f, p_tree=1.0, **pp)),
        "bnn": BNNPrior(BNNConfig(**f, **pp)),
        "gp": GPPrior(GPConfig(**f, **pp)),
        "rules": RulesPrior(RulesConfig(**f, **pp)),
        "glm": GLMPrior(GLMConfig(**f, **pp)),
        "choice": ChoicePrior(ChoiceConfig(max_features=max_features, num_options=Range(2, 3),
                                           attributes=Range(1, 2), covariates=Range(0, 1),
                                           irrelevant=Range(0, 2), **pp)),
        # The v2 options: categorical roots, ordinal codes, wide tables.
        "scm-v2": SCMPrior(SCMConfig(**f, p_categorical_roots=0.5, p_all_categorical=0.3,
                                     postprocess=post or PostprocessConfig(
                                         p_ordinal=0.3, p_wide=0.5,
                                         wide_features=Range(6, max_features)))),
    }
    weights = [0.3, 0.2, 0.1, 0.1, 0.2, 0.1, 0.1, 0.1]
    priors["mixture"] = MixturePrior(list(priors.values()), weights)
    return priors


PRIORS = make_priors()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


# --- shapes, dtypes, layout ---------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", list(PRIORS))
def test_batch_shapes_and_dtypes(name: str, task: str) -> None:
    b, r, n = 6, 40, 25
    batch = PRIORS[name].sample(b, r, n, gen(0), task)
    assert batch.x.shape == (b, r, MAX_FEATURES) and batch.x.dtype == torch.float32
    assert batch.y.shape == (b, r) and batch.y.dtype == torch.float32
    assert batch.num_features.shape == (b,) and batch.num_features.dtype == torch.int64
    assert batch.num_classes.shape == (b,) and batch.num_classes.dtype == torch.int64
    assert batch.categorical.shape == (b, MAX_FEATURES)
    assert batch.categorical.dtype == torch.bool
    assert (batch.n_train, batch.task, batch.batch_size) == (n, task, b)
    assert ((batch.num_features >= 1) & (batch.num_features <= MAX_FEATURES)).all()
    assert torch.isfinite(batch.y).all()
    assert not torch.isinf(batch.x).any()
    # Columns beyond a dataset's num_features are exactly zero and never categorical.
    unused = torch.arange(MAX_FEATURES).view(1, -1) >= batch.num_features.view(-1, 1)
    assert (batch.x.masked_fill(~unused.unsqueeze(1), 0.0) == 0).all()
    assert not (batch.categorical & unused).any()
    if task == "regression":
        assert (batch.num_classes == 0).all()


def test_mixture_pads_components_of_different_width() -> None:
    narrow = GPPrior(GPConfig(max_features=3, num_features=Range(1, 3)))
    wide = SCMPrior(SCMConfig(max_features=9, num_features=Range(1, 9)))
    batch = MixturePrior([narrow, wide], [1.0, 1.0]).sample(16, 30, 10, gen(1), "regression")
    assert batch.x.shape == (16, 30, 9) and batch.categorical.shape == (16, 9)


def test_mixture_draws_components_with_their_weights() -> None:
    # The components are told apart by their (fixed) feature counts.
    one = GPPrior(GPConfig(max_features=5, num_features=Range(1, 1)))
    five = BNNPrior(BNNConfig(max_features=5, num_features=Range(5, 5)))
    p, n = 0.25, 2000
    batch = MixturePrior([one, five], [1.0, 3.0]).sample(n, 8, 4, gen(2), "regression")
    count = int((batch.num_features == 1).sum())
    assert abs(count - n * p) < 5 * math.sqrt(n * p * (1 - p))
    assert set(batch.num_features.tolist()) == {1, 5}


def test_mixture_with_zero_weight_never_uses_that_prior() -> None:
    one = GPPrior(GPConfig(max_features=5, num_features=Range(1, 1)))
    five = BNNPrior(BNNConfig(max_features=5, num_features=Range(5, 5)))
    batch = MixturePrior([one, five], [0.0, 1.0]).sample(64, 8, 4, gen(3), "regression")
    assert (batch.num_features == 5).all()


def test_build_prior_from_default_config_table() -> None:
    few = {"max_features": 7, "num_features": {"low": 1, "high": 7, "log": True}}
    spec = {"scm": {"weight": 0.6, **few}, "bnn": {"weight": 0.25, **few},
            "gp": {"weight": 0.15, "max_features": 7, "num_features": {"low": 1, "high": 3}}}
    prior = build_prior(spec)
    assert isinstance(prior, MixturePrior)
    assert prior.sample(4, 20, 10, gen(0), "classification").x.shape == (4, 20, 7)
    assert isinstance(build_prior({"gp": {}}), GPPrior)


# --- determinism -------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", list(PRIORS))
def test_same_seed_same_batch_other_seed_other_batch(name: str, task: str) -> None:
    prior = PRIORS[name]
    a = prior.sample(4, 30, 15, gen(7), task)
    b = prior.sample(4, 30, 15, gen(7), task)
    c = prior.sample(4, 30, 15, gen(8), task)
    for field in ("x", "y", "num_features", "num_classes", "categorical"):
        assert_same(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.y, c.y)
    assert not torch.equal(torch.nan_to_num(a.x), torch.nan_to_num(c.x))


# --- labels ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PRIORS))
@pytest.mark.parametrize("n_rows,n_train", [(60, 30), (40, 10), (12, 2), (12, 3), (30, 25)])
def test_every_class_in_training_rows(name: str, n_rows: int, n_train: int) -> None:
    prior = PRIORS[name]
    for seed in range(8):
        batch = prior.sample(8, n_rows, n_train, gen(seed), "classification")
        k = batch.num_classes
        assert ((k >= 2) & (k <= min(10, n_train))).all(), k
        y = batch.y
        assert torch.equal(y, y.round()), "labels must be integral"
        assert ((y >= 0) & (y < k.view(-1, 1))).all()
        for i in range(batch.batch_size):
            assert set(y[i, :n_train].long().tolist()) == set(range(int(k[i]))), (seed, i)


@pytest.mark.parametrize("max_classes", [2, 4])
def test_class_count_respects_max_classes(max_classes: int) -> None:
    post = PostprocessConfig(max_classes=max_classes, p_multiclass=1.0)
    prior = SCMPrior(SCMConfig(max_features=5, num_features=Range(1, 5), postprocess=post))
    batch = prior.sample(64, 30, 20, gen(0), "classification")
    assert ((batch.num_classes >= 2) & (batch.num_classes <= max_classes)).all()
    if max_classes > 2:  # p_multiclass = 1: never binary
        assert (batch.num_classes >= 3).all()


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", list(PRIORS))
def test_targets_are_not_constant(name: str, task: str) -> None:
    for seed in range(10):
        y = PRIORS[name].sample(16, 20, 10, gen(seed), task).y
        assert (y.std(1) > 0).all(), seed
        assert (y[:, :10].std(1) > 0).all(), seed  # nor within the training rows


def test_dead_relu_network_still_has_a_varying_target() -> None:
    # Narrow deep ReLU nets often die (every unit 0); the target must not go constant.
    cfg = BNNConfig(max_features=2, num_features=Range(1, 2), activations=("relu",),
                    hidden=Range(1, 2), num_layers=Range(4, 6))
    y = BNNPrior(cfg).sample(64, 20, 10, gen(0), "regression").y
    assert (y.std(1) > 0).all()


def test_tree_nodes_are_piecewise_constant_with_normal_leaves() -> None:
    h = torch.randn(3, 200, 6, generator=gen(0))
    width, depth = torch.tensor([6, 2, 4]), torch.tensor([1, 3, 2])
    out = random_tree_layer(h, width, depth, 50, gen(1))  # (batch, rows, trees)
    assert out.shape == (3, 200, 50)
    for i in range(3):  # an oblivious tree of depth D has at most 2**D leaves
        distinct = [len(out[i, :, j].unique()) for j in range(50)]
        assert max(distinct) <= 2 ** int(depth[i])
    leaves = torch.cat([out[i, :, j].unique() for i in range(3) for j in range(50)])
    n = leaves.numel()  # distinct leaf values: independent N(0, 1) draws
    assert abs(float(leaves.mean())) < 5 / math.sqrt(n)
    assert abs(float((leaves**2).sum()) - n) < 5 * math.sqrt(2 * n)


# --- post-processing ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["scm", "scm-trees", "bnn", "gp"])
@pytest.mark.parametrize("max_levels", [2, 5, 10])
def test_categorical_columns_are_integer_codes(name: str, max_levels: int) -> None:
    post = PostprocessConfig(p_categorical=1.0, categorical_column_fraction=Range(1.0, 1.0),
                             max_levels=max_levels, p_missing=0.0)
    prior = make_priors(post=post)[name]
    for seed in range(3):
        batch = prior.sample(8, 50, 25, gen(seed), "classification")
        used = torch.arange(MAX_FEATURES).view(1, -1) < batch.num_features.view(-1, 1)
        assert torch.equal(batch.categorical, used)  # fraction 1: every used column
        codes = batch.x.transpose(1, 2)[batch.categorical]  # (n_categorical, rows)
        assert torch.equal(codes, codes.round())
        assert ((codes >= 0) & (codes < max_levels)).all()


def test_no_categoricals_when_disabled() -> None:
    post = PostprocessConfig(p_categorical=0.0)
    batch = make_priors(post=post)["scm"].sample(16, 30, 15, gen(0), "classification")
    assert not batch.categorical.any()


@pytest.mark.parametrize("name", ["scm", "bnn", "gp", "mixture"])
@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_missing_rate_matches_config(name: str, rate: float) -> None:
    post = PostprocessConfig(p_missing=1.0, missing_rate=Range(rate, rate))
    batch = make_priors(post=post)[name].sample(32, 100, 50, gen(0), "regression")
    used = torch.arange(MAX_FEATURES).view(1, 1, -1) < batch.num_features.view(-1, 1, 1)
    used = used.expand_as(batch.x)
    nan = torch.isnan(batch.x)
    assert not (nan & ~used).any(), "only used columns may have missing values"
    cells = int(used.sum())
    assert abs(int(nan.sum()) - cells * rate) < 5 * math.sqrt(cells * rate * (1 - rate))


def test_no_missing_values_when_disabled() -> None:
    post = PostprocessConfig(p_missing=0.0)
    for name, prior in make_priors(post=post).items():
        assert not torch.isnan(prior.sample(16, 30, 15, gen(0), "classification").x).any(), name


# --- GP covariance -----------------------------------------------------------------------


def whitened_gp_targets(kernel: str, lengthscale: float, outputscale: float, noise: float,
                        model_lengthscale: float | None = None) -> torch.Tensor:
    """L^-1 y for GP draws, L the Cholesky factor of each dataset's own k(x, x) + noise I.

    Under the configured GP every entry is independent N(0, 1). ``model_lengthscale``
    whitens with another lengthscale (to check that the test notices a wrong covariance).
    """
    cfg = GPConfig(max_features=2, num_features=Range(2, 2), kernels=(kernel,),
                   lengthscale=Range(lengthscale, lengthscale),
                   outputscale=Range(outputscale, outputscale), noise=Range(noise, noise))
    batch = GPPrior(cfg).sample(200, 30, 15, gen(0), "regression")
    x, y = batch.x[:, :, :2].double(), batch.y.double()
    ls = lengthscale if model_lengthscale is None else model_lengthscale
    cov = kernel_matrix(x, x, kernel, ls, outputscale)
    cov = cov + noise * torch.eye(x.shape[1], dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    return torch.linalg.solve_triangular(chol, y.unsqueeze(-1), upper=False).squeeze(-1)


@pytest.mark.parametrize("kernel", KERNELS)
def test_gp_targets_have_the_kernel_covariance(kernel: str) -> None:
    w = whitened_gp_targets(kernel, lengthscale=0.4, outputscale=1.5, noise=0.05)
    n = w.numel()  # 6000 independent N(0, 1) draws if the covariance is right
    assert abs(float(w.mean())) < 5 / math.sqrt(n)
    # sum of squares ~ chi-square(n): mean n, std sqrt(2n)
    assert abs(float((w**2).sum()) - n) < 5 * math.sqrt(2 * n)
    # neighbouring whitened entries uncorrelated: mean of products has std 1/sqrt(count)
    prod = w[:, 1:] * w[:, :-1]
    assert abs(float(prod.mean())) < 5 / math.sqrt(prod.numel())


def test_gp_covariance_check_detects_a_wrong_lengthscale() -> None:
    w = whitened_gp_targets("rbf", lengthscale=0.4, outputscale=1.5, noise=0.05,
                            model_lengthscale=1.2)
    n = w.numel()
    assert abs(float((w**2).sum()) - n) > 5 * math.sqrt(2 * n)


def test_gp_inputs_are_uniform_on_the_unit_cube() -> None:
    batch = GPPrior(GPConfig(max_features=3, num_features=Range(3, 3))).sample(
        32, 50, 25, gen(0), "regression")
    x = batch.x.flatten()
    n = x.numel()
    assert ((x >= 0) & (x <= 1)).all()
    assert abs(float(x.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / n)


# --- configuration errors ----------------------------------------------------------------


BAD_CONFIGS = [
    (lambda: SCMConfig(max_features=0), "max_features"),
    (lambda: SCMConfig(max_features=-3), "max_features"),
    (lambda: SCMConfig(num_features=Range(-1, 5)), "num_features"),
    (lambda: SCMConfig(max_features=10, num_features=Range(1, 20)), "num_features"),
    (lambda: SCMConfig(num_layers=Range(0, 3)), "num_layers"),
    (lambda: SCMConfig(hidden=Range(-4, 8)), "hidden"),
    (lambda: SCMConfig(noise_std=Range(-0.1, 0.5)), "noise_std"),
    (lambda: SCMConfig(edge_dropout=Range(0.5, 1.5)), "edge_dropout"),
    (lambda: SCMConfig(p_tree=1.5), "p_tree"),
    (lambda: SCMConfig(tree_depth=Range(0, 3)), "tree_depth"),
    (lambda: SCMConfig(activations=("tanh", "nope")), "activations"),
    (lambda: SCMConfig(postprocess={"p_warp": -0.2}), "p_warp"),
    (lambda: BNNConfig(hidden=Range(0, 8)), "hidden"),
    (lambda: BNNConfig(weight_scale=Range(-1, 1)), "weight_scale"),
    (lambda: GPConfig(kernels=("cubic",)), "kernels"),
    (lambda: GPConfig(lengthscale=Range(0.0, 1.0)), "lengthscale"),
    (lambda: GPConfig(noise=Range(0.3, 0.1)), "noise"),
    (lambda: PostprocessConfig(max_classes=11), "max_classes"),
    (lambda: PostprocessConfig(max_classes=1), "max_classes"),
    (lambda: PostprocessConfig(max_levels=1), "max_levels"),
    (lambda: PostprocessConfig(p_missing=1.5), "p_missing"),
    (lambda: PostprocessConfig(p_categorical=-0.1), "p_categorical"),
    (lambda: PostprocessConfig(p_multiclass=2.0), "p_multiclass"),
    (lambda: PostprocessConfig(missing_rate=Range(0.5, 0.2)), "missing_rate"),
    (lambda: PostprocessConfig(missing_rate=Range(0.1, 1.0)), "missing_rate"),
    (lambda: PostprocessConfig(categorical_column_fraction=Range(0.5, 1.5)),
     "categorical_column_fraction"),
    (lambda: MixturePrior([SCMPrior()], [-1.0]), "weights"),
    (lambda: MixturePrior([SCMPrior()], [1.0, 2.0]), "weights"),
    (lambda: build_prior({"svm": {}}), "svm"),
    (lambda: build_prior({"scm": {"bogus": 1}}), "bogus"),
    (lambda: build_prior({}), "empty"),
]


@pytest.mark.parametrize("make,field", BAD_CONFIGS, ids=[f for _, f in BAD_CONFIGS])
def test_bad_config_raises_value_error_naming_the_field(make, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make()


def test_log_range_needs_positive_low() -> None:
    with pytest.raises(ValueError, match="lengthscale"):
        GPConfig(lengthscale=Range(0.0, 1.0, log=True))


BAD_SIZES = [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": -2}, "batch_size"),
    ({"n_rows": 0}, "n_rows"),
    ({"n_rows": 1, "n_train": 1}, "n_rows"),
    ({"n_train": 0}, "n_train"),
    ({"n_train": 20}, "n_train"),  # no test rows left
    ({"n_train": 1}, "n_train"),  # classification needs >= 2 training rows
    ({"task": "clustering"}, "task"),
]


@pytest.mark.parametrize("name", list(PRIORS))
@pytest.mark.parametrize("bad,field", BAD_SIZES, ids=[f for _, f in BAD_SIZES])
def test_bad_sample_arguments_raise(name: str, bad: dict, field: str) -> None:
    args = {"batch_size": 2, "n_rows": 20, "n_train": 10, "task": "classification"} | bad
    with pytest.raises(ValueError, match=field):
        PRIORS[name].sample(args["batch_size"], args["n_rows"], args["n_train"], gen(0),
                            args["task"])


@pytest.mark.parametrize("name", list(PRIORS))
def test_single_training_row_regression_is_finite(name: str) -> None:
    # One training row has no spread to standardise with; x must stay finite anyway.
    prior = make_priors(post=PostprocessConfig(p_missing=0.0))[name]
    assert torch.isfinite(prior.sample(4, 10, 1, gen(0), "regression").x).all()


# --- the picture -------------------------------------------------------------------------


def test_show_writes_a_png(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from priors.show import main

    out = tmp_path / "prior.png"
    main(["--out", str(out), "--seed", "1", "--datasets", "3", "--rows", "60"])
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def _skewness(y: torch.Tensor) -> torch.Tensor:
    z = (y - y.mean(1, keepdim=True)) / y.std(1, keepdim=True).clamp_min(1e-9)
    return (z**3).mean(1)


@pytest.mark.parametrize("name", ["scm", "glm", "choice"])
def test_warped_regression_targets_are_skewed_and_classes_untouched(name: str) -> None:
    plain = PostprocessConfig(p_missing=0.0)
    warped = PostprocessConfig(p_missing=0.0, p_warp_target=1.0)
    a = make_priors(post=plain)[name].sample(32, 200, 100, gen(7), "regression").y
    b = make_priors(post=warped)[name].sample(32, 200, 100, gen(7), "regression").y
    assert torch.isfinite(b).all()
    # exp / cube / sinh warps: clearly more asymmetric or heavier-tailed on average.
    assert _skewness(b).abs().mean() > _skewness(a).abs().mean() + 0.5
    # Classification draws the same labels whatever the target warp says.
    ca = make_priors(post=plain)[name].sample(8, 60, 30, gen(8), "classification")
    cb = make_priors(post=warped)[name].sample(8, 60, 30, gen(8), "classification")
    assert_same(ca.y, cb.y)


def test_target_warp_probability_is_validated() -> None:
    with pytest.raises(ValueError, match="p_warp_target"):
        PostprocessConfig(p_warp_target=1.5)
