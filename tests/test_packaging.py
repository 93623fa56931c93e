"""Install tiers: prediction needs no torch; torch-only paths name the extra; the dependency
direction priors <- pfn <- export; `make demo` leaves the checkout clean.

The fresh-venv install is `slow` (about a minute of pip); the fast tests block ``import torch``
in a subprocess instead (tests/no_torch.py).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from no_torch import run_without_torch

import pfn

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "pfn" / "data" / "example_train.csv"
TEST = ROOT / "pfn" / "data" / "example_test.csv"
PACKAGES = ("priors", "pfn", "export")
EXTRA_HINT = "pip install 'tabpfn-lite[train]'"


# ----- without torch ---------------------------------------------------------------------
def test_prediction_path_runs_without_torch(tmp_path):
    proc = run_without_torch(tmp_path, """
        import sys
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("torch was not blocked")
        import numpy as np
        from pfn import PFNClassifier, PFNRegressor
        from pfn.engines.onnx_engine import OnnxEngine
        rng = np.random.default_rng(0)
        x = rng.normal(size=(1, 30, 4)).astype(np.float32)
        engine = OnnxEngine()
        p = engine.predict(engine.fit(x[:, :20], (np.arange(20) % 3)[None], "classification"),
                           x[:, 20:])["probs"]
        assert p.shape == (1, 10, engine.max_classes) and np.allclose(p.sum(-1), 1, atol=1e-5)
        X = rng.normal(size=(60, 4))
        proba = PFNClassifier().fit(X, X[:, 0] > 0).predict_proba(X)  # engine="auto"
        assert proba.shape == (60, 2) and np.allclose(proba.sum(1), 1, atol=1e-5)
        assert PFNRegressor().fit(X, X[:, 1]).predict_quantiles(X).shape == (60, 3)
        assert "torch" not in sys.modules
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")
    cli = run_without_torch(tmp_path, cli=["predict", "--train", str(TRAIN), "--test", str(TEST),
                                           "--target", "target", "--n-estimators", "1"])
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.splitlines()[0] == "proba_churned,proba_stayed,prediction"


def test_onnx_path_does_not_load_installed_torch():
    """With torch installed, the ONNX path still never imports it (import time, memory)."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from pfn.estimators import PFNClassifier, PFNRegressor
        X = np.random.default_rng(0).normal(size=(40, 3))
        PFNClassifier(engine="onnx").fit(X, X[:, 0] > 0).predict_proba(X)
        PFNRegressor(engine="onnx").fit(X, X[:, 1]).predict(X)
        print("torch" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_torch_engine_and_devices_name_the_extra_without_torch(tmp_path):
    proc = run_without_torch(tmp_path, """
        import numpy as np
        from pfn import PFNRegressor
        from pfn.extras import MissingDependencyError
        X = np.random.default_rng(0).normal(size=(20, 2))
        for kwargs in ({"engine": "torch"}, {"device": "cuda"}):
            try:
                PFNRegressor(**kwargs).fit(X, X[:, 0])
            except MissingDependencyError as err:
                print(err)
            else:
                raise SystemExit(f"{kwargs} did not fail")
    """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and all(EXTRA_HINT in line for line in lines)
    assert "engine='torch' needs torch" in lines[0] and "device='cuda' needs torch" in lines[1]


@pytest.mark.parametrize("argv", [
    ["train", "--config", str(ROOT / "configs" / "default.toml")],
    ["export", "--out-prefix", "out/m"],
    ["ship", str(ROOT / "pfn" / "weights" / "default.safetensors"), "--out-dir", "out"],
    ["predict", "--train", str(TRAIN), "--test", str(TEST), "--target", "target",
     "--engine", "torch"],
])
def test_torch_commands_fail_in_one_line_without_torch(tmp_path, argv):
    proc = run_without_torch(tmp_path, cli=argv)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"pfn {argv[0]}: error: ") and EXTRA_HINT in proc.stderr
    assert not (tmp_path / "out").exists()


# ----- declared dependencies -------------------------------------------------------------
def _requirement_name(req: str) -> str:
    return re.split(r"[<>=!~\[;\s]", req, maxsplit=1)[0].lower().replace("_", "-")


def _third_party_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - set(PACKAGES) - {"__future__"}


def test_every_import_is_declared_and_prediction_needs_only_the_plain_install():
    project = pfn.pyproject()["project"]
    core = {_requirement_name(r) for r in project["dependencies"]}
    extras = {_requirement_name(r) for reqs in project["optional-dependencies"].values()
              for r in reqs}
    dist_of = {m: {d.lower() for d in ds} for m, ds in packages_distributions().items()}
    prediction = ["pfn/__init__.py", "pfn/artifacts.py", "pfn/extras.py", "pfn/cli.py",
                  "pfn/predict_cli.py", "pfn/estimators.py", "pfn/estimator_base.py",
                  "pfn/contexts.py", "pfn/routing.py", "pfn/routing_trial.py",
                  "pfn/stacking.py", "pfn/boosting.py", "pfn/preprocessing.py",
                  "pfn/bar_distribution.py", "pfn/table_spec.py", "pfn/engines/__init__.py",
                  "pfn/engines/base.py", "pfn/engines/onnx_engine.py"]
    for path in sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        allowed = core if rel in prediction else core | extras
        for module in _third_party_imports(path):
            dists = dist_of.get(module, {module})
            assert dists & allowed, f"{rel} imports {module} ({dists}), not declared " \
                f"{'in the plain install' if rel in prediction else 'anywhere'}"
    assert "torch" not in core and "torch" in extras


def test_no_import_goes_up_the_layers():
    """priors <- pfn <- export: no import, static or by string, the other way."""
    above = {"priors": ("pfn", "export"), "pfn": ("export",)}
    for pkg, forbidden in above.items():
        names = "|".join(forbidden)
        pattern = re.compile(rf"^\s*(from|import)\s+({names})\b|[\"']({names})(\.\w+)+"
                             rf"(:\w+)?[\"']|import_module\(\s*[\"']({names})\b", re.M)
        for path in (ROOT / pkg).rglob("*.py"):
            hits = [m.group(0).strip() for m in pattern.finditer(path.read_text())]
            assert not hits, f"{path.relative_to(ROOT)} reaches up to {hits}"


# ----- a fresh machine -------------------------------------------------------------------
def test_make_demo_prints_predictions_and_leaves_no_files():
    make = shutil.which("make")
    if make is None or shutil.which("git") is None:
        pytest.skip("make or git is not installed")
    status = ["git", "status", "--porcelain", "--untracked-files=all"]
    before = subprocess.run(status, cwd=ROOT, capture_output=True, text=True).stdout
    proc = subprocess.run([make, "-o", "install", "demo", f"PYTHON={sys.executable}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # -o: skip pip install
    assert proc.returncode == 0, proc.stderr
    assert "proba_churned,proba_stayed,prediction" in proc.stdout
    assert subprocess.run(status, cwd=ROOT, capture_output=True, text=True).stdout == before


@pytest.mark.slow
def test_plain_install_in_a_fresh_venv_predicts_without_torch(tmp_path):
    """`pip install <checkout>` into an empty venv (deps from pip's configured index).

    The sources are copied first: pip builds in the source tree and would leave build
    folders in the checkout.
    """
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    bin_dir = tmp_path / "venv" / "bin"
    pip = subprocess.run([bin_dir / "pip", "install", "-q", str(src)], capture_output=True,
                         text=True, timeout=900)
    if pip.returncode != 0:
        pytest.skip(f"pip install failed (package index unreachable?): {pip.stderr[-300:]}")
    python = str(bin_dir / "python")
    has_torch = subprocess.run([python, "-c", "import importlib.util as u; "
                                "print(u.find_spec('torch') is not None)"],
                               capture_output=True, text=True, cwd=tmp_path)
    assert has_torch.stdout.strip() == "False"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = lambda *argv: subprocess.run([bin_dir / "pfn", *argv], capture_output=True,  # noqa: E731
                                       text=True, cwd=tmp_path, env=env, timeout=300)
    pred = run("predict", "--train", str(TRAIN), "--test", str(TEST), "--target", "target")
    assert pred.returncode == 0, pred.stderr
    assert len(pred.stdout.splitlines()) == 61
    assert run("--version").stdout.strip() == f"pfn {pfn.__version__}"
    export = run("export", "--out-prefix", "m")
    assert export.returncode == 2 and EXTRA_HINT in export.stderr
