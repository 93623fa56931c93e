"""The ``pfn`` command: help that lists the commands, the version, one-line usage errors."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

import pfn
from pfn.cli import main, plugin_commands

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("train", "predict", "export", "ship")


def pfn_cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("PFN_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "pfn.cli", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_help_lists_every_command_with_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        lines = [line for line in out.splitlines() if line.strip().startswith(name + " ")]
        assert len(lines) == 1, f"{name!r} not listed once in:\n{out}"
        assert len(lines[0].split(None, 1)[1]) > 15  # a description, not just the name
    assert "export" in plugin_commands() and "ship" in plugin_commands()


def test_version_comes_from_the_package_metadata(capsys):
    try:
        want = version("tabpfn-lite")
    except PackageNotFoundError:
        want = pfn.pyproject()["project"]["version"]
    assert pfn.__version__ == want and want[0].isdigit()
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"pfn {want}"


@pytest.mark.parametrize("argv, message", [
    ([], "a command is required"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["--bogus"], "unrecognized arguments"),
    (["predict", "--train", "x.csv"], "required"),
    (["predict", "--train", "a", "--test", "b", "--target", "t", "--sep", "ab"], "--sep"),
    (["export"], "--out-prefix"),
    (["export", "--out-prefix", "pfn/weights/mine"], "only 'pfn ship'"),
    (["export", "--out-prefix", "o", "--checkpoint", "absent.safetensors"], "not found"),
    (["ship", "absent.safetensors"], "not found"),
    (["train"], "--config"),
    (["train", "--config", "absent.toml"], "absent.toml"),
])
def test_user_errors_are_one_line_with_status_2(argv, message):
    proc = pfn_cli(*argv)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("name", ["predict", "export", "ship"])
def test_each_command_has_its_own_help(name):
    proc = pfn_cli(name, "--help")
    assert proc.returncode == 0 and proc.stdout.startswith(f"usage: pfn {name}")
